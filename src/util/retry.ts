import {setTimeout as sleep} from 'node:timers/promises'

export interface RetryOptions {
  /** Attempts in all, the first included. */
  tries: number
  /** Delay before the second attempt; doubles each time, capped at maxDelayMs. */
  baseDelayMs?: number
  maxDelayMs?: number
  signal?: AbortSignal
  retryable?: (err: unknown) => boolean
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void
}

export async function withRetry<T>(attempt: (n: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  const base = opts.baseDelayMs ?? 200
  const max = opts.maxDelayMs ?? 5000
  for (let n = 1; ; n++) {
    try {
      return await attempt(n)
    } catch (err) {
      if (n >= opts.tries || opts.signal?.aborted || (opts.retryable && !opts.retryable(err))) throw err
      const delay = Math.min(max, base * 2 ** (n - 1)) * (0.75 + Math.random() * 0.5) // jitter
      opts.onRetry?.(err, n, delay)
      await sleep(delay, undefined, {signal: opts.signal})
    }
  }
}
