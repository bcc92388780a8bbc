import type Database from 'better-sqlite3'

/** Replica rows read per step (about ten milliseconds), so counting never holds up the master. */
const ROWS_PER_STEP = 20_000
/** Each query counts as at least this many rows: thousands of nearly empty nodes are not counted in one step either. */
const ROWS_PER_QUERY_MIN = 100

/**
 * Bytes of the fresh copies the master records on each node: what the rebalancer evens out. A node's
 * reported used bytes also hold copies nothing can move (uploads in flight, versions kept for a resume
 * until the upload expires), so balancing on them could leave a node out of band forever.
 *
 * Counted a page of a node's replica rows at a time, every node again after the records changed, and
 * nothing while they stay as they are. A count mixes moments a few steps apart: good enough to steer
 * moves, which recount before the next one.
 */
export class CommittedBytes {
  private readonly counted = new Map<string, number>()
  private readonly q
  private pass: {nodeId: string; after: string; bytes: number} | undefined
  private queue: string[] = []
  private stale = true

  constructor(db: Database.Database) {
    // Rows of one chunk at two versions on one node may straddle a page and one be missed: a few bytes
    // off until the next count, which does not matter for balance.
    this.q = db.prepare(`
      SELECT COUNT(*) AS n, MAX(chunk_id) AS last, COALESCE(SUM(CASE WHEN state = 'fresh' THEN size END), 0) AS bytes
      FROM (
        SELECT s.chunk_id, s.state, c.size FROM replica_states s LEFT JOIN chunks c ON c.chunk_id = s.chunk_id
        WHERE s.node_id = ? AND s.chunk_id > ? ORDER BY s.chunk_id LIMIT ?
      )`)
  }

  /** The replica records, the committed versions or the set of nodes changed: every node is counted again. */
  changed(): void {
    this.stale = true
  }

  /** The last complete count of a node, or undefined before its first one ends. */
  of(nodeId: string): number | undefined {
    return this.counted.get(nodeId)
  }

  /** Counts on for up to ROWS_PER_STEP rows: nodes never counted first, then every node again after a change. */
  step(nodeList: () => readonly string[]): void {
    if (!this.stale && this.pass === undefined && this.queue.length === 0) return // the usual case: no list built
    const nodeIds = nodeList()
    const wanted = new Set(nodeIds)
    for (const id of this.counted.keys()) if (!wanted.has(id)) this.counted.delete(id)
    let budget = ROWS_PER_STEP
    while (budget > 0) {
      if (!this.pass || !wanted.has(this.pass.nodeId)) {
        const next = this.nextNode(nodeIds, wanted)
        if (next === undefined) return
        this.pass = {nodeId: next, after: '', bytes: 0}
      }
      const pass = this.pass
      const page = this.q.get(pass.nodeId, pass.after, budget) as {n: number; last: string | null; bytes: number}
      pass.bytes += page.bytes
      if (page.n < budget || page.last === null) {
        this.counted.set(pass.nodeId, pass.bytes)
        this.pass = undefined
      } else {
        pass.after = page.last
      }
      budget -= Math.max(ROWS_PER_QUERY_MIN, page.n)
    }
  }

  private nextNode(nodeIds: readonly string[], wanted: ReadonlySet<string>): string | undefined {
    const never = nodeIds.find((id) => !this.counted.has(id))
    if (never !== undefined) return never
    if (this.queue.length === 0 && this.stale) {
      this.queue = [...nodeIds]
      this.stale = false
    }
    while (this.queue.length > 0) {
      const id = this.queue.shift()!
      if (wanted.has(id)) return id
    }
    return undefined
  }
}
