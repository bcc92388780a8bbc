import {ChunkyError} from '../protocol/index.js'
import {withRetry} from '../util/retry.js'
import {InterruptedError} from './errors.js'
import type {TransferView} from './view.js'

// A master that gives no answer (restarting, a network blip) is worth a few more tries with backoff
// before the upload gives up; an answer, even an error, is final.

export const MASTER_TRIES = 4
/** With several masters, a failover (a standby takes over within --node-timeout and a few seconds) is waited out: about 30 s. */
export const FAILOVER_TRIES = 9

/**
 * Whether an error code says the master side is changing hands or restarting rather than that the
 * request or a node is wrong: no master answered, a standby answered, a node holds a grant from a
 * master that no longer leads or cannot reach the master itself. With several masters, NO_NODES too:
 * a master that has just taken over knows no node until the nodes link to it again.
 */
export function masterChanging(code: string | undefined, masters: number): boolean {
  if (code === 'MASTER_UNREACHABLE' || code === 'NOT_LEADER' || code === 'STALE_LEADER') return true
  return code === 'NO_NODES' && masters > 1
}

/** Tries of a call through a master change: a failover is waited out with several masters, a restart's blip with one. */
export function masterTries(masters: number): number {
  return masters > 1 ? FAILOVER_TRIES : MASTER_TRIES
}

export interface MasterRetryOptions {
  signal?: AbortSignal
  view: TransferView
  /** What was being done, for the note on each retry ("planning"). */
  what: string
  tries?: number
  baseDelayMs?: number
  /** How many masters the call may go to: with several, a failover is waited out (masterChanging), longer. */
  masters?: number
  /** Codes retried besides those of a master change (masterChanging). */
  alsoRetried?: readonly string[]
}

export async function withMasterRetry<T>(call: () => Promise<T>, opts: MasterRetryOptions): Promise<T> {
  try {
    return await withRetry(call, {
      tries: opts.tries ?? masterTries(opts.masters ?? 1),
      baseDelayMs: opts.baseDelayMs ?? 500,
      maxDelayMs: 4_000,
      signal: opts.signal,
      retryable: (err) => err instanceof ChunkyError && (masterChanging(err.code, opts.masters ?? 1) || (opts.alsoRetried ?? []).includes(err.code)),
      onRetry: (err, attempt, delayMs) =>
        opts.view.note(`${opts.what}: ${(err as Error).message.replace(/: is `chunky master`.*$/, '')}; try ${attempt + 1} in ${(delayMs / 1000).toFixed(1)}s`),
    })
  } catch (err) {
    if (opts.signal?.aborted) throw new InterruptedError()
    throw err
  }
}
