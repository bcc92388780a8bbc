/** Background work a turn of the event loop may run before the rest waits for the next turn. */
const TURN_BUDGET_MS = 10

/**
 * Hands out turns of the event loop to the master's background work: the links' messages (but
 * heartbeats), report batches, count passes and committed-bytes steps all take their slices from here,
 * one after another, until a turn has spent TURN_BUDGET_MS; the rest wait for the next turn, after the
 * poll phase has read the sockets (heartbeats first). Each kept its own setImmediate or timer before,
 * and Node runs every immediate queued before a turn in that turn: a repair slice, a report slice and
 * a count step, each bounded, added up to 50–80 ms turns at 256 links and a million chunks. The repair
 * loop keeps its own immediate, a slice a turn (repair-loop.ts).
 *
 * Each slice must be bounded itself: a turn runs at least one, however long it takes.
 */
export class Turns {
  private readonly waiting: (() => void)[] = []
  private scheduled = false
  private turnStartedMs = 0

  constructor(private readonly budgetMs = TURN_BUDGET_MS) {}

  /** Resolves when the caller may run one bounded slice (synchronously, before its next await). */
  next(): Promise<void> {
    return new Promise((resolve) => this.run(resolve))
  }

  /** Runs `slice` in a turn with budget left. */
  run(slice: () => void): void {
    this.waiting.push(slice)
    this.schedule()
  }

  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      this.turnStartedMs = performance.now()
      this.runOne()
    })
  }

  private runOne(): void {
    const slice = this.waiting.shift()
    if (!slice) return
    try {
      slice()
    } finally {
      // A caller of next() runs its slice in the microtasks its resolve queued, ahead of this check.
      queueMicrotask(() => {
        if (this.waiting.length === 0) return
        if (performance.now() - this.turnStartedMs < this.budgetMs) this.runOne()
        else this.schedule()
      })
    }
  }
}
