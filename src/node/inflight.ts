/**
 * Work a node has in hand (chunk writes, repair pulls) so close() can wait for it to end, or cut it
 * short: each piece registers how to abort itself, and removes itself when done.
 */
export class InflightWork {
  private readonly work = new Map<symbol, {abort: () => void; done: Promise<unknown>}>()

  get size(): number {
    return this.work.size
  }

  /** Runs `task` tracked; `abort` must make it finish soon (and clean up after itself). */
  run<T>(abort: () => void, task: () => Promise<T>): Promise<T> {
    const key = Symbol('work')
    const done = task().finally(() => this.work.delete(key))
    this.work.set(key, {abort, done: done.catch(() => {})})
    return done
  }

  /** Waits up to graceMs for the work in hand to end, aborts the rest, and waits for it to clean up. */
  async drain(graceMs: number): Promise<void> {
    if (this.work.size === 0) return
    let timer: NodeJS.Timeout | undefined
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))
    await Promise.race([Promise.all([...this.work.values()].map((w) => w.done)), grace])
    clearTimeout(timer)
    for (const w of this.work.values()) w.abort()
    await Promise.all([...this.work.values()].map((w) => w.done))
  }
}
