import {setTimeout as sleep} from 'node:timers/promises'

/** Polls `check` until it returns a truthy value; fails with `what` after the deadline. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  for (let delay = 50; Date.now() < deadline; delay = Math.min(delay * 2, 500)) {
    try {
      const value = await check()
      if (value) return value
    } catch (err) {
      lastError = err
    }
    await sleep(delay)
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`)
}
