import {MultiBar, Presets, type SingleBar} from 'cli-progress'
import ora, {type Ora} from 'ora'
import type {TransferView} from '../client/index.js'
import {formatBytes} from '../util/parse.js'

// Spinners and bars on a terminal (see transfer-view.ts). In its own module so that only a command
// that draws on a terminal loads ora and cli-progress.

const noColor = () => 'NO_COLOR' in process.env && process.env.NO_COLOR !== ''

export class TerminalView implements TransferView {
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
