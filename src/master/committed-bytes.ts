import type Database from 'better-sqlite3'

/** Chunks looked at per step: about 10 ms at a million chunks (a replica row and its chunk row cost 1–3 µs), so counting never holds up the master. */
const CHUNKS_PER_STEP = 2500

/**
 * Bytes of the fresh copies the master records on each node: what the rebalancer evens out. A node's
 * reported used bytes also hold copies nothing can move (uploads in flight, versions kept for a resume
 * until the upload expires), so balancing on them could leave a node out of band forever.
 *
 * Counted in rounds over the chunk table in chunk id order, a page a step (the replica rows of a chunk
 * sit beside each other, so a page reads both tables in order), a round begun whenever something changed
 * since the last one began, none while nothing does. A round mixes moments a few steps apart: good
 * enough to steer moves, which recount before the next one.
 */
export class CommittedBytes {
  /** The counts of the last complete round (nodes without an entry hold no fresh copy). */
  private counted: Map<string, number> | undefined
  private round: {after: string; bytes: Map<string, number>} | undefined
  private stale = true
  private readonly q

  constructor(db: Database.Database, private readonly chunksPerStep = CHUNKS_PER_STEP) {
    this.q = {
      pageEnd: db.prepare('SELECT COUNT(*) AS n, MAX(chunk_id) AS last FROM (SELECT chunk_id FROM chunks WHERE chunk_id > ? ORDER BY chunk_id LIMIT ?)'),
      page: db.prepare(`
        SELECT s.node_id AS nodeId, SUM(c.size) AS bytes
        FROM chunks c JOIN replica_states s ON s.chunk_id = c.chunk_id
        WHERE c.chunk_id > ? AND c.chunk_id <= ? AND s.state = 'fresh'
        GROUP BY s.node_id`),
    }
  }

  /** The replica records or the committed versions changed (not which nodes are alive: every node is counted): another round follows. */
  changed(): void {
    this.stale = true
  }

  /** A node's bytes as of the last complete round, or undefined before the first one ends. */
  of(nodeId: string): number | undefined {
    return this.counted && (this.counted.get(nodeId) ?? 0)
  }

  /** Counts on for up to chunksPerStep chunks. */
  step(): void {
    if (!this.round) {
      if (!this.stale) return
      this.round = {after: '', bytes: new Map()}
      this.stale = false
    }
    const round = this.round
    const {n, last} = this.q.pageEnd.get(round.after, this.chunksPerStep) as {n: number; last: string | null}
    if (last !== null) {
      for (const {nodeId, bytes} of this.q.page.all(round.after, last) as {nodeId: string; bytes: number}[]) {
        round.bytes.set(nodeId, (round.bytes.get(nodeId) ?? 0) + bytes)
      }
      round.after = last
    }
    if (n < this.chunksPerStep) {
      this.counted = round.bytes
      this.round = undefined
    }
  }
}
