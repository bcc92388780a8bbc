import {setImmediate as yieldToEventLoop} from 'node:timers/promises'
import type {Db} from './db.js'
import {REPLICA_STATE_SQL} from './replica-state.js'

export type ChunkCounts = {underReplicated: number; stale: number; corrupt: number}

/** Up to this many committed chunks are counted by one query on the spot (a few ms). */
const COUNT_AT_ONCE_LIMIT = 20_000
/** Chunks per step of a pass: a few ms of the event loop each. */
const PASS_STEP = 2_500
/** A pass may spend at most 1/20 of the time since the last one began: counting must not become the master's work. */
const PASS_SHARE = 20

/**
 * Under-replicated, stale and corrupt counts over every committed chunk by the one rule
 * (replica-state.ts), for the times the repair loop's kept counts are not current (a scan after a
 * start or a death). A small cluster is counted by one query on the spot. A large one would block the
 * master for that query (a million chunks take a second), so it is counted in passes over the chunk
 * table in chunk-id order, a step per event-loop turn, and readers get what the last pass found; nodes
 * that died since then add their copies to its under-replicated count (at most that many chunks lost
 * a copy), and before the first pass every chunk counts as under-replicated: not yet known to be at R.
 */
export class ChunkCountPasses {
  private readonly q
  private last: {key: string; alive: Set<string>; value: ChunkCounts} | undefined
  private passing = false
  private lastPassStartedMs = -Infinity
  private lastPassBusyMs = 0

  constructor(
    private readonly db: Db,
    private readonly countAtOnceLimit = COUNT_AT_ONCE_LIMIT,
    private readonly passStep = PASS_STEP,
  ) {
    const perChunk = (chunks: string) => `SELECT count(*) AS chunks, max(chunk_id) AS last, sum(fresh < @R) AS underReplicated,
        sum(stale) AS stale, sum(corrupt) AS corrupt
      FROM (
        SELECT chunk_id, total(state = 'fresh' AND node_id IN (SELECT value FROM json_each(@alive))) AS fresh,
          total(state = 'stale') AS stale, total(state = 'corrupt') AS corrupt
        FROM (SELECT c.chunk_id, r.node_id, ${REPLICA_STATE_SQL} AS state
          FROM ${chunks} LEFT JOIN replicas r ON r.chunk_id = c.chunk_id
            LEFT JOIN planned p ON p.chunk_id = r.chunk_id AND p.version = r.version)
        GROUP BY chunk_id)`
    this.q = {
      totalChanges: db.prepare('SELECT total_changes()').pluck(),
      all: db.prepare(perChunk('(SELECT * FROM chunks WHERE committed_version > 0) c')),
      step: db.prepare(
        perChunk(`(SELECT * FROM chunks WHERE committed_version > 0 AND chunk_id > @after ORDER BY chunk_id LIMIT @limit) c`),
      ),
      copiesOfNode: db.prepare('SELECT count(*) FROM replicas WHERE node_id = ?').pluck(),
    }
  }

  /** The counts by one query now: exact, and as slow as the chunk table is large. */
  exact(alive: string[], R: number): ChunkCounts & {chunks: number} {
    const key = this.key(alive, R)
    const row = this.q.all.get({alive: JSON.stringify(alive), R}) as Record<keyof ChunkCounts | 'chunks', number | null>
    const value = {underReplicated: row.underReplicated ?? 0, stale: row.stale ?? 0, corrupt: row.corrupt ?? 0}
    this.last = {key, alive: new Set(alive), value}
    return {...value, chunks: row.chunks ?? 0}
  }

  /** The counts for these alive nodes, R and number of committed chunks (see the class comment). */
  get(alive: string[], R: number, chunks: number): ChunkCounts {
    const key = this.key(alive, R)
    if (this.last?.key === key) return this.last.value
    if (chunks <= this.countAtOnceLimit) return this.exact(alive, R)
    this.startPass(alive, R, key)
    if (!this.last) return {underReplicated: chunks, stale: 0, corrupt: 0}
    const {value, alive: countedAlive} = this.last
    const now = new Set(alive)
    let lostCopies = 0
    for (const nodeId of countedAlive) if (!now.has(nodeId)) lostCopies += this.q.copiesOfNode.get(nodeId) as number
    return {...value, underReplicated: Math.min(chunks, value.underReplicated + lostCopies)}
  }

  /** Counts stay good until the database changes (every write of the master goes through this connection) or who is alive does. */
  private key(alive: string[], R: number): string {
    return `${this.q.totalChanges.get() as number} ${R} ${alive.join(',')}`
  }

  private startPass(alive: string[], R: number, key: string): void {
    const nowMs = performance.now()
    if (this.passing || nowMs - this.lastPassStartedMs < PASS_SHARE * this.lastPassBusyMs) return
    this.passing = true
    this.lastPassStartedMs = nowMs
    // A pass that fails (the database closed as the master stops) leaves the last counts as they were.
    this.pass(alive, R, key)
      .catch(() => undefined)
      .finally(() => (this.passing = false))
  }

  private async pass(alive: string[], R: number, key: string): Promise<void> {
    const params = {alive: JSON.stringify(alive), R, after: '', limit: this.passStep}
    const sum: ChunkCounts = {underReplicated: 0, stale: 0, corrupt: 0}
    let busyMs = 0
    for (;;) {
      const started = performance.now()
      const row = this.q.step.get(params) as Record<keyof ChunkCounts, number | null> & {chunks: number; last: string | null}
      busyMs += performance.now() - started
      sum.underReplicated += row.underReplicated ?? 0
      sum.stale += row.stale ?? 0
      sum.corrupt += row.corrupt ?? 0
      if (row.chunks < this.passStep || row.last === null) break
      params.after = row.last
      await yieldToEventLoop()
      if (!this.db.open) return
    }
    this.lastPassBusyMs = busyMs
    this.last = {key, alive: new Set(alive), value: sum}
  }
}
