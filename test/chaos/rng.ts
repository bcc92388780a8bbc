import {createCipheriv, createHash} from 'node:crypto'

// Seeded randomness for the campaign: every decision (faults, workload, file contents) comes from a
// stream forked off the run's seed by a label, so one actor's choices never depend on another's timing.

/** Deterministic 32-bit generator (mulberry32) with helpers; `fork(label)` gives an independent stream. */
export class Rng {
  private state: number

  constructor(readonly seed: number) {
    this.state = seed >>> 0
  }

  /** A new stream derived from this one's seed and `label` (not from how far this one has advanced). */
  fork(label: string): Rng {
    const digest = createHash('sha256').update(`${this.seed}:${label}`).digest()
    return new Rng(digest.readUInt32BE(0))
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0
    let t = this.state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.next() / 4294967296
  }

  /** Uniform integer in [lo, hi] (both included). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1))
  }

  chance(p: number): boolean {
    return this.float() < p
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list')
    return items[Math.floor(this.float() * items.length)]!
  }

  /** Picks a key with probability proportional to its weight. */
  weighted<K extends string>(weights: Readonly<Record<K, number>>): K {
    const entries = Object.entries(weights) as [K, number][]
    const total = entries.reduce((sum, [, w]) => sum + w, 0)
    let x = this.float() * total
    for (const [key, w] of entries) {
      if ((x -= w) < 0) return key
    }
    return entries[entries.length - 1]![0]
  }
}

/** `size` pseudo-random bytes that depend only on `key` (AES-256-CTR over zeros: fast and reproducible). */
export function bytesFor(key: string, size: number): Buffer {
  if (size === 0) return Buffer.alloc(0)
  const cipher = createCipheriv('aes-256-ctr', createHash('sha256').update(key).digest(), Buffer.alloc(16))
  return Buffer.concat([cipher.update(Buffer.alloc(size)), cipher.final()])
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}
