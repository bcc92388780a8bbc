import {MultiBar, Presets, type SingleBar} from 'cli-progress'
import ora, {type Ora} from 'ora'
import type {TransferView} from '../client/index.js'
import {formatBytes} from '../util/parse.js'

// Progress on a terminal: an ora spinner for the short phases, a cli-progress MultiBar for the long
// ones (an overall bar with rate and ETA, and one bar per chunk in flight). Everything goes to
// standard error; on anything but a terminal, plain lines now and then; with --json, nothing.

export interface ViewOptions {
  /** True when standard error is a terminal and --json is off. */
  interactive: boolean
  /** True when --json is on: then standard error carries errors only (no progress lines, no notes). */
  quiet?: boolean
  stream?: NodeJS.WriteStream
  /** Least time between two plain progress lines (not a terminal). */
  lineIntervalMs?: number
  /** Milliseconds now (tests). */
  now?: () => number
}

export const PLAIN_LINE_INTERVAL_MS = 3_000

export function transferView(opts: ViewOptions): TransferView {
  const stream = opts.stream ?? process.stderr
  if (opts.quiet) return quietView
  if (!opts.interactive) return new PlainView(stream, opts.lineIntervalMs ?? PLAIN_LINE_INTERVAL_MS, opts.now ?? Date.now)
  return new TerminalView(stream)
}

/** --json: standard error is for errors only. */
const quietView: TransferView = {step: () => {}, start: () => {}, overall: () => {}, chunk: () => {}, chunkDone: () => {}, note: () => {}, stop: () => {}}

/**
 * Not a terminal (a log file, CI, a pipe): no bars or spinners, but a plain line now and then for a
 * long phase, `uploading  45%  540 MiB / 1.2 GiB  120.0 MiB/s  ETA 3s`, at most one per interval, and a
 * closing line for a phase that printed any. Notes (retries, failed replicas) as they happen.
 */
export class PlainView implements TransferView {
  private phase: {label: string; total: number; started: number; base: number | undefined; done: number; lastLine: number; lines: number} | undefined

  constructor(
    private readonly stream: NodeJS.WritableStream,
    private readonly intervalMs: number,
    private readonly now: () => number,
  ) {}

  step(_text: string): void {
    this.endPhase() // a short phase: nothing to say on a log
  }

  start(label: string, totalBytes: number): void {
    this.endPhase()
    const now = this.now()
    this.phase = {label, total: totalBytes, started: now, base: undefined, done: 0, lastLine: now, lines: 0}
  }

  overall(doneBytes: number): void {
    const phase = this.phase
    if (!phase) return
    phase.base ??= doneBytes // a resumed upload starts part way: the rate counts only what moves now
    phase.done = doneBytes
    const now = this.now()
    if (now - phase.lastLine < this.intervalMs) return
    phase.lastLine = now
    phase.lines++
    this.stream.write(`${this.line(now)}\n`)
  }

  chunk(): void {}
  chunkDone(): void {}

  note(message: string): void {
    this.stream.write(`chunky: ${message}\n`)
  }

  stop(): void {
    this.endPhase()
  }

  private endPhase(): void {
    const phase = this.phase
    this.phase = undefined
    if (!phase || phase.lines === 0) return
    const seconds = (this.now() - phase.started) / 1000
    this.stream.write(`${phase.label} ${percent(phase.done, phase.total)}  ${formatBytes(phase.done)} / ${formatBytes(phase.total)} in ${seconds.toFixed(1)}s\n`)
  }

  private line(now: number): string {
    const phase = this.phase!
    const seconds = (now - phase.started) / 1000
    const moved = phase.done - (phase.base ?? 0)
    const rate = seconds > 0 ? moved / seconds : 0
    const parts = [`${phase.label} ${percent(phase.done, phase.total)}`, `${formatBytes(phase.done)} / ${formatBytes(phase.total)}`]
    if (rate > 0) {
      parts.push(`${(rate / 1024 / 1024).toFixed(1)} MiB/s`)
      parts.push(`ETA ${Math.ceil(Math.max(0, phase.total - phase.done) / rate)}s`)
    }
    return parts.join('  ')
  }
}

function percent(done: number, total: number): string {
  return `${String(total > 0 ? Math.floor((Math.min(done, total) / total) * 100) : 100).padStart(3)}%`
}

const noColor = () => 'NO_COLOR' in process.env && process.env.NO_COLOR !== ''

class TerminalView implements TransferView {
  private spinner: Ora | undefined
  private bars: MultiBar | undefined
  private overallBar: SingleBar | undefined
  private readonly chunkBars = new Map<number, SingleBar>()
  private phase = {label: '', total: 0, started: 0}

  constructor(private readonly stream: NodeJS.WriteStream) {}

  step(text: string): void {
    this.stopBars(true)
    if (!this.spinner) {
      this.spinner = ora({stream: this.stream, color: noColor() ? false : 'cyan', discardStdin: false, text})
    }
    this.spinner.start(text)
  }

  start(label: string, totalBytes: number): void {
    this.spinner?.stop()
    this.stopBars(true)
    this.phase = {label, total: totalBytes, started: Date.now()}
    this.bars = new MultiBar(
      {
        stream: this.stream,
        hideCursor: true,
        clearOnComplete: false,
        fps: 10,
        barsize: 30,
        etaBuffer: 50,
        format: (options, params, payload: {text: string; detail?: string}) => {
          const size = options.barsize ?? 30
          const done = Math.round(params.progress * size)
          const bar = '█'.repeat(done) + '░'.repeat(Math.max(0, size - done))
          return `${payload.text.padEnd(14)} ${bar} ${String(Math.floor(params.progress * 100)).padStart(3)}% ${payload.detail ?? ''}`
        },
      },
      Presets.shades_classic,
    )
    this.overallBar = this.bars.create(Math.max(totalBytes, 1), 0, {text: label, detail: this.detail(0)})
  }

  overall(doneBytes: number): void {
    this.overallBar?.update(Math.min(doneBytes, Math.max(this.phase.total, 1)), {text: this.phase.label, detail: this.detail(doneBytes)})
  }

  chunk(index: number, doneBytes: number, totalBytes: number): void {
    if (!this.bars) return
    let bar = this.chunkBars.get(index)
    if (!bar) {
      bar = this.bars.create(Math.max(totalBytes, 1), 0, {text: `  chunk ${index}`, detail: formatBytes(totalBytes)})
      this.chunkBars.set(index, bar)
    }
    bar.update(doneBytes, {text: `  chunk ${index}`, detail: formatBytes(totalBytes)})
  }

  chunkDone(index: number): void {
    const bar = this.chunkBars.get(index)
    if (bar && this.bars) this.bars.remove(bar)
    this.chunkBars.delete(index)
  }

  note(message: string): void {
    if (this.bars) {
      this.bars.log(`! ${message}\n`)
    } else if (this.spinner?.isSpinning) {
      const text = this.spinner.text
      this.spinner.stopAndPersist({symbol: '!', text: message})
      this.spinner.start(text)
    } else {
      this.stream.write(`! ${message}\n`)
    }
  }

  stop(): void {
    this.spinner?.stop()
    this.stopBars(false)
  }

  /** "12.5 MiB / 30.0 MiB  41.7 MiB/s  ETA 1s" */
  private detail(doneBytes: number): string {
    const seconds = (Date.now() - this.phase.started) / 1000
    const rate = seconds > 0.2 ? doneBytes / seconds : 0
    const eta = rate > 0 ? Math.ceil((this.phase.total - doneBytes) / rate) : undefined
    const parts = [`${formatBytes(doneBytes)} / ${formatBytes(this.phase.total)}`]
    if (rate > 0) parts.push(`${(rate / 1024 / 1024).toFixed(1)} MiB/s`)
    if (eta !== undefined && doneBytes < this.phase.total) parts.push(`ETA ${eta}s`)
    return parts.join('  ')
  }

  /** Ends the long phase; `completed` draws its bar full (the phase finished, it did not fail). */
  private stopBars(completed: boolean): void {
    if (!this.bars) return
    for (const bar of this.chunkBars.values()) this.bars.remove(bar)
    this.chunkBars.clear()
    if (completed) this.overall(this.phase.total)
    this.bars.stop()
    this.bars = undefined
    this.overallBar = undefined
  }
}
