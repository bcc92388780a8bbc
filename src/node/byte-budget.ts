/**
 * A node-wide allowance of bytes held in memory, shared by every tus upload: a PATCH reserves its
 * write batches before it reads its body and gives them back once it is done, and while there is no
 * room it does not read (TCP backpressure to the client). Reservations are granted in
 * the order asked, so a large one is not starved by small ones.
 */
export class ByteBudget {
  private used = 0
  private highest = 0
  private readonly waiting: {bytes: number; grant: () => void}[] = []

  constructor(readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity <= 0) throw new Error(`a byte budget is a positive whole number of bytes, not ${capacity}`)
  }

  /** Bytes reserved now. */
  get held(): number {
    return this.used
  }

  /** The most ever reserved at once (never above capacity). */
  get peak(): number {
    return this.highest
  }

  /** Resolves once `bytes` (at most the capacity) are reserved for the caller; give them back with release(). */
  acquire(bytes: number): Promise<void> {
    if (bytes > this.capacity) throw new Error(`cannot reserve ${bytes} bytes of a ${this.capacity}-byte budget`)
    if (this.waiting.length === 0 && this.used + bytes <= this.capacity) {
      this.take(bytes)
      return Promise.resolve()
    }
    return new Promise((grant) => this.waiting.push({bytes, grant}))
  }

  release(bytes: number): void {
    if (bytes > this.used) throw new Error(`released ${bytes} bytes with only ${this.used} reserved`)
    this.used -= bytes
    while (this.waiting[0] && this.used + this.waiting[0].bytes <= this.capacity) {
      const next = this.waiting.shift()!
      this.take(next.bytes)
      next.grant()
    }
  }

  private take(bytes: number): void {
    this.used += bytes
    this.highest = Math.max(this.highest, this.used)
  }
}
