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
  /** Nodes to count again after a change, and how far through them. */
  private queue: string[] = []
  private next = 0
  private readonly doneThisRound = new Set<string>()
  /** Something changed since the current round began: another round follows. */
  private stale = true

  constructor(db: Database.Database, private readonly rowsPerStep = ROWS_PER_STEP) {
    const fresh = `SUM(CASE WHEN s.state = 'fresh' THEN c.size END)`
    this.q = {
      // Rows of one chunk at two versions on one node may straddle a page and one be missed: a few bytes
      // off until the next count, which does not matter for balance.
      page: db.prepare(`
        SELECT COUNT(*) AS n, MAX(chunk_id) AS last, COALESCE(SUM(CASE WHEN state = 'fresh' THEN size END), 0) AS bytes
        FROM (
          SELECT s.chunk_id, s.state, c.size FROM replica_states s LEFT JOIN chunks c ON c.chunk_id = s.chunk_id
          WHERE s.node_id = ? AND s.chunk_id > ? ORDER BY s.chunk_id LIMIT ?
        )`),
      smallTable: db.prepare('SELECT COUNT(*) FROM (SELECT 1 FROM replicas LIMIT ?)').pluck(),
      allNodes: db.prepare(`SELECT s.node_id, COALESCE(${fresh}, 0) AS bytes FROM replica_states s LEFT JOIN chunks c ON c.chunk_id = s.chunk_id GROUP BY s.node_id`),
    }
  }

  /** The replica records, the committed versions or the set of nodes changed: every node is counted again. */
  changed(): void {
    this.stale = true
  }

  /** The last complete count of a node, or undefined before its first one ends. */
  of(nodeId: string): number | undefined {
    return this.counted.get(nodeId)
  }

  /**
   * Counts on for up to rowsPerStep rows. A round counts every node once, begun when something changed
   * since the last one began; nodes never counted go first, also in the middle of a round.
   */
  step(nodeList: () => readonly string[]): void {
    if (!this.stale && this.pass === undefined && !this.roundLeft()) return // the usual case: no list built
    const nodeIds = nodeList()
    const wanted = new Set(nodeIds)
    for (const id of this.counted.keys()) if (!wanted.has(id)) this.counted.delete(id)
    if (this.countAllAtOnce(nodeIds)) return
    if (this.pass === undefined && !this.roundLeft()) {
      this.queue = nodeIds.filter((id) => !this.counted.has(id)).concat(nodeIds.filter((id) => this.counted.has(id)))
      this.next = 0
      this.doneThisRound.clear()
      this.stale = false
    }
    const never = nodeIds.filter((id) => !this.counted.has(id) && id !== this.pass?.nodeId)
    let nextNever = 0
    let budget = this.rowsPerStep
    while (budget > 0) {
      if (!this.pass || !wanted.has(this.pass.nodeId)) {
        const next = nextNever < never.length ? never[nextNever++] : this.nextQueued(wanted)
        if (next === undefined) return
        this.pass = {nodeId: next, after: '', bytes: 0}
      }
      const pass = this.pass
      const page = this.q.page.get(pass.nodeId, pass.after, budget) as {n: number; last: string | null; bytes: number}
      pass.bytes += page.bytes
      if (page.n < budget || page.last === null) {
        this.counted.set(pass.nodeId, pass.bytes)
        this.doneThisRound.add(pass.nodeId)
        this.pass = undefined
      } else {
        pass.after = page.last
      }
      budget -= Math.max(Math.min(ROWS_PER_QUERY_MIN, this.rowsPerStep), page.n)
    }
  }

  /** A small table (one step's worth of rows) is counted for every node by one query. */
  private countAllAtOnce(nodeIds: readonly string[]): boolean {
    if ((this.q.smallTable.get(this.rowsPerStep + 1) as number) > this.rowsPerStep) return false
    const bytes = new Map((this.q.allNodes.all() as {node_id: string; bytes: number}[]).map((row) => [row.node_id, row.bytes]))
    for (const id of nodeIds) this.counted.set(id, bytes.get(id) ?? 0)
    this.pass = undefined
    this.queue = []
    this.next = 0
    this.stale = false
    return true
  }

  /** True while nodes of this round are left to count (skips those counted already). */
  private roundLeft(): boolean {
    while (this.next < this.queue.length && this.doneThisRound.has(this.queue[this.next]!)) this.next++
    return this.next < this.queue.length
  }

  /** The next node of this round still wanted and not counted in it yet. */
  private nextQueued(wanted: ReadonlySet<string>): string | undefined {
    while (this.next < this.queue.length) {
      const id = this.queue[this.next++]!
      if (wanted.has(id) && !this.doneThisRound.has(id)) return id
    }
    return undefined
  }
}
