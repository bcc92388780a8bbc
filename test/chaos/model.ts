// The model the campaign judges every client run against. Per name it keeps every upload attempt
// (content, start, end, outcome). A content "may be current" for a reader while some attempt that
// uploaded it could have committed and has not provably been overwritten:
//
// - an attempt that exited 0 committed before its end; a failed or killed one may have committed
//   before its end plus LATE_COMMIT_SLACK_MS (its last request may still be on its way, or waiting
//   in the socket of a paused master: exit 1 does not promise that nothing was committed);
// - an attempt U is overwritten for a read starting at t when some upload V of other content exited
//   0 before t and started after U's last possible commit: V's commit then follows U's.
//
// A download that exits 0 must return a content some attempt of that name had started uploading
// before the download ended, and that is not overwritten at the download's start. Anything else is
// bytes nobody uploaded, a mix of versions (matched chunk by chunk to say which), or an old content.

export const LATE_COMMIT_SLACK_MS = 5000

/**
 * The "content" of a name that does not exist: what `chunky rm` uploads, in effect. Every name starts
 * with a virtual attempt of it (before the run began, exited 0), so "may not exist" is one more content.
 */
export const ABSENT = 'absent'

export interface Content {
  sha256: string
  size: number
  path: string
  /** SHA-256 of each chunk, for telling a mix of two contents from random bytes. */
  chunkShas: string[]
}

export type Outcome = 'running' | 'ok' | 'failed' | 'killed'

export interface Attempt {
  id: number
  name: string
  sha256: string
  start: number
  end: number
  outcome: Outcome
}

export class Model {
  readonly contents = new Map<string, Content>()
  private readonly attempts = new Map<string, Attempt[]>()
  private nextId = 1

  addContent(content: Content): void {
    this.contents.set(content.sha256, content)
  }

  begin(name: string, sha256: string, start: number): Attempt {
    const attempt: Attempt = {id: this.nextId++, name, sha256, start, end: Infinity, outcome: 'running'}
    const list = this.attempts.get(name) ?? [{id: 0, name, sha256: ABSENT, start: -Infinity, end: -Infinity, outcome: 'ok'}]
    list.push(attempt)
    this.attempts.set(name, list)
    return attempt
  }

  finish(attempt: Attempt, outcome: Exclude<Outcome, 'running'>, end: number): void {
    attempt.outcome = outcome
    attempt.end = end
  }

  names(): string[] {
    return [...this.attempts.keys()].sort()
  }

  attemptsOf(name: string): readonly Attempt[] {
    return this.attempts.get(name) ?? []
  }

  /** True when the name must exist for a read starting at `t` (nothing that may be current removed it). */
  mustExist(name: string, t: number): boolean {
    return this.attemptsOf(name).length > 0 && !this.mayBeCurrent(name, t).has(ABSENT)
  }

  /** The latest moment `a` could have committed. */
  private commitBound(a: Attempt): number {
    if (a.outcome === 'running') return Infinity
    return a.outcome === 'ok' ? a.end : a.end + LATE_COMMIT_SLACK_MS
  }

  private overwrittenAt(a: Attempt, t: number): Attempt | undefined {
    const bound = this.commitBound(a)
    return this.attemptsOf(a.name).find((v) => v.outcome === 'ok' && v.sha256 !== a.sha256 && v.end < t && v.start > bound)
  }

  /** The contents a read of `name` starting at `t` may return. */
  mayBeCurrent(name: string, t: number, readEnd = t): Set<string> {
    const result = new Set<string>()
    for (const a of this.attemptsOf(name)) {
      if (a.start < readEnd && !this.overwrittenAt(a, t)) result.add(a.sha256)
    }
    return result
  }

  /** Undefined when a download of `name` over [start, end] returning `sha256` is allowed, else why not. */
  judgeDownload(name: string, sha256: string, start: number, end: number, chunkShas: string[]): string | undefined {
    const mine = this.attemptsOf(name).filter((a) => a.sha256 === sha256 && a.start < end)
    if (mine.length > 0) {
      const overwritten = mine.map((a) => [a, this.overwrittenAt(a, start)] as const)
      if (overwritten.some(([, by]) => by === undefined)) return undefined
      const [a, by] = overwritten[overwritten.length - 1]!
      return `returned an overwritten content ${short(sha256)} (attempt #${a.id}, ${a.outcome}, ended ${fmt(a.end)}): ` +
        `attempt #${by!.id} uploaded ${short(by!.sha256)} from ${fmt(by!.start)} and exited 0 at ${fmt(by!.end)}, before the read began at ${fmt(start)}`
    }
    const allowed = [...this.mayBeCurrent(name, start, end)].map(short).join(', ') || 'none'
    if (this.contents.has(sha256)) {
      const other = [...this.attempts.values()].flat().find((a) => a.sha256 === sha256)
      return `returned ${short(sha256)}, a content ${other ? `uploaded as ${other.name}` : 'generated'} but not uploaded under this name before the read ended (allowed: ${allowed})`
    }
    return `returned bytes nobody uploaded (${short(sha256)}, ${describeMix(chunkShas, this.contents)}; allowed: ${allowed})`
  }
}

/** Says, chunk by chunk, which known contents the downloaded chunks come from. */
function describeMix(chunkShas: string[], contents: Map<string, Content>): string {
  const sources = chunkShas.map((sha, i) => {
    for (const c of contents.values()) if (c.chunkShas[i] === sha) return short(c.sha256)
    return '?'
  })
  const distinct = new Set(sources)
  if (distinct.size > 1 || !distinct.has('?')) return `a mix: chunk sources ${sources.join(' ')}`
  return 'no chunk matches any content'
}

export function short(sha: string): string {
  return sha.slice(0, 10)
}

let epoch = Date.now()
export function setEpoch(t: number): void {
  epoch = t
}
/** A time as seconds since the run began, for messages. */
export function fmt(t: number): string {
  return Number.isFinite(t) ? `t+${((t - epoch) / 1000).toFixed(2)}s` : 'still running'
}
