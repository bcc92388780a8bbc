import {InterruptedError} from './errors.js'

/**
 * Runs `work` on every item, `concurrency` at a time. On the first failure it stops handing out
 * items, aborts the ones in flight (through the signal given to `work`), waits for them to settle,
 * and throws that first failure: no request outlives the call.
 */
export async function runPool<T>(
  items: T[],
  concurrency: number,
  work: (item: T, signal: AbortSignal) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  const stop = new AbortController()
  const combined = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal
  let next = 0
  let failure: {error: unknown} | undefined
  const worker = async () => {
    while (!failure && !combined.aborted && next < items.length) {
      const item = items[next++]!
      try {
        await work(item, combined)
      } catch (error) {
        failure ??= {error}
        stop.abort()
      }
    }
  }
  await Promise.all(Array.from({length: Math.max(1, Math.min(concurrency, items.length))}, worker))
  if (signal?.aborted) throw new InterruptedError()
  if (failure) throw failure.error
}
