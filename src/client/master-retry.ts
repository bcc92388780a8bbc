import {ChunkyError} from '../protocol/index.js'
import {withRetry} from '../util/retry.js'
import {InterruptedError} from './errors.js'
import type {TransferView} from './view.js'

// A master that gives no answer (restarting, a network blip) is worth a few more tries with backoff
// before the upload gives up; an answer, even an error, is final.

export const MASTER_TRIES = 4
/** With several masters, a failover (a standby takes over within --node-timeout and a few seconds) is waited out: about 30 s. */
export const FAILOVER_TRIES = 9

export interface MasterRetryOptions {
  signal?: AbortSignal
  view: TransferView
  /** What was being done, for the note on each retry ("planning"). */
  what: string
  tries?: number
  baseDelayMs?: number
  /** How many masters the call may go to: with several, NOT_LEADER (all standing by) is retried too, and longer. */
  masters?: number
}

export async function withMasterRetry<T>(call: () => Promise<T>, opts: MasterRetryOptions): Promise<T> {
  try {
    return await withRetry(call, {
      tries: opts.tries ?? ((opts.masters ?? 1) > 1 ? FAILOVER_TRIES : MASTER_TRIES),
      baseDelayMs: opts.baseDelayMs ?? 500,
      maxDelayMs: 4_000,
      signal: opts.signal,
      retryable: (err) => err instanceof ChunkyError && (err.code === 'MASTER_UNREACHABLE' || err.code === 'NOT_LEADER'),
      onRetry: (err, attempt, delayMs) =>
        opts.view.note(`${opts.what}: ${(err as Error).message.replace(/: is `chunky master`.*$/, '')}; try ${attempt + 1} in ${(delayMs / 1000).toFixed(1)}s`),
    })
  } catch (err) {
    if (opts.signal?.aborted) throw new InterruptedError()
    throw err
  }
}
