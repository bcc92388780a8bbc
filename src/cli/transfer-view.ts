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
  return new LazyTerminalView(stream)
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

type ViewCall = {[K in keyof TransferView]: [K, ...Parameters<TransferView[K]>]}[keyof TransferView]

/**
 * The terminal view, loaded on first use (ora and cli-progress take a noticeable part of start-up,
 * and --json or a log never needs them). Calls made while it loads are replayed in order; once
 * stopped before it loaded, it draws nothing at all.
 */
class LazyTerminalView implements TransferView {
  private view: TransferView | undefined
  private pending: ViewCall[] | undefined = []

  constructor(stream: NodeJS.WriteStream) {
    import('./terminal-view.js').then(
      ({TerminalView}) => {
        const calls = this.pending
        if (!calls) return
        this.pending = undefined
        const view = new TerminalView(stream)
        for (const [method, ...args] of calls) (view[method] as (...a: unknown[]) => void)(...args)
        this.view = view
      },
      () => {
        this.pending = undefined // no bars then; the command's own output still says how it went
      },
    )
  }

  private call(...call: ViewCall): void {
    if (this.view) (this.view[call[0]] as (...a: unknown[]) => void)(...call.slice(1))
    else if (this.pending) {
      // Bytes done only matter as the latest figure: keep the queue short while the module loads.
      const last = this.pending.at(-1)
      if (call[0] === 'overall' && last?.[0] === 'overall') this.pending.pop()
      else if (call[0] === 'chunk' && last?.[0] === 'chunk' && last[1] === call[1]) this.pending.pop()
      else if ((call[0] === 'overall' || call[0] === 'chunk') && this.pending.length >= 1_000) return
      this.pending.push(call)
    }
  }

  step(text: string): void {
    this.call('step', text)
  }
  start(label: string, totalBytes: number): void {
    this.call('start', label, totalBytes)
  }
  overall(doneBytes: number): void {
    this.call('overall', doneBytes)
  }
  chunk(index: number, doneBytes: number, totalBytes: number): void {
    this.call('chunk', index, doneBytes, totalBytes)
  }
  chunkDone(index: number): void {
    this.call('chunkDone', index)
  }
  note(message: string): void {
    this.call('note', message)
  }
  stop(): void {
    if (this.view) this.view.stop()
    else this.pending = undefined // stopped before it loaded: nothing was drawn, nothing to draw
  }
}
