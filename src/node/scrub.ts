import {setTimeout as sleep} from 'node:timers/promises'
import type {ReplicaInfo} from '../protocol/index.js'
import type {ChunkStore} from '../storage/index.js'
import type {NodeMetrics} from '../telemetry/metrics.js'
import type {Logger} from '../util/log.js'

export interface ScrubberOptions {
  store: ChunkStore
  /** Pause between passes; 0 = never scrub on a timer. */
  intervalMs: number
  /** Upper bound on re-hashing speed, so scrubbing does not starve uploads of disk bandwidth. */
  bytesPerSecond?: number
  log: Logger
  /** Scrub progress (optional: tests run a scrubber alone). */
  metrics?: NodeMetrics
  onCorrupt(replica: ReplicaInfo): Promise<void>
}

export interface ScrubResult {
  checked: number
  corrupt: ReplicaInfo[]
}

export const DEFAULT_SCRUB_RATE = 50 * 1000 * 1000

/**
 * Re-hashes every replica the store holds, one at a time at a bounded rate, and reports those whose
 * bytes no longer match their recorded SHA-256 (invariant 5: rot is found without a reader).
 */
export class Scrubber {
  private readonly stopping = new AbortController()
  private loop: Promise<void> | undefined
  private pass: Promise<ScrubResult> | undefined

  constructor(private readonly opts: ScrubberOptions) {}

  start(): void {
    if (this.opts.intervalMs > 0) this.loop ??= this.runLoop()
  }

  /** One full pass now (or joins the pass already running). */
  scrubOnce(): Promise<ScrubResult> {
    this.pass ??= this.runPass().finally(() => (this.pass = undefined))
    return this.pass
  }

  async stop(): Promise<void> {
    this.stopping.abort()
    await this.loop
    await this.pass?.catch(() => {})
  }

  private async runLoop(): Promise<void> {
    const signal = this.stopping.signal
    while (!signal.aborted) {
      try {
        await sleep(this.opts.intervalMs, undefined, {signal})
        await this.scrubOnce()
      } catch (err) {
        if (signal.aborted) return
        this.opts.log.error({event: 'scrub.failed', error: (err as Error).message}, `scrub pass failed: ${(err as Error).message}`)
      }
    }
  }

  private async runPass(): Promise<ScrubResult> {
    const signal = this.stopping.signal
    const rate = this.opts.bytesPerSecond ?? DEFAULT_SCRUB_RATE
    const result: ScrubResult = {checked: 0, corrupt: []}
    for await (const replica of this.opts.store.list()) {
      if (signal.aborted) break
      const started = Date.now()
      let sound: boolean
      try {
        sound = await this.opts.store.verify(replica.chunkId, replica.version)
      } catch (err) {
        if ((err as {code?: string}).code === 'CHUNK_NOT_FOUND') continue // deleted since the pass began
        throw err
      }
      result.checked++
      this.opts.metrics?.scrubbedChunks.inc()
      this.opts.metrics?.scrubbedBytes.inc(replica.size)
      if (!sound) {
        result.corrupt.push(replica)
        this.opts.metrics?.scrubCorrupt.inc()
        this.opts.log.warn(
          {event: 'scrub.corrupt', chunkId: replica.chunkId, version: replica.version},
          `scrub: chunk ${replica.chunkId} v${replica.version} is corrupt (bytes no longer match its SHA-256)`,
        )
        await this.opts.onCorrupt(replica).catch((err: Error) =>
          this.opts.log.warn({event: 'scrub.report_failed', chunkId: replica.chunkId, version: replica.version, error: err.message}, `could not report corrupt chunk: ${err.message}`),
        )
      }
      const due = (replica.size / rate) * 1000 - (Date.now() - started) // stay under the rate
      if (due > 0) await sleep(due, undefined, {signal}).catch(() => {})
    }
    if (!signal.aborted) {
      this.opts.metrics?.scrubPasses.inc()
      this.opts.metrics?.scrubLastPass.set(Date.now() / 1000)
      this.opts.log.info({event: 'scrub.finished', checked: result.checked, corrupt: result.corrupt.length}, `scrub pass finished: ${result.checked} checked, ${result.corrupt.length} corrupt`)
    }
    return result
  }
}
