import type {Db} from './db.js'
import type {ReplicaState} from './replica-state.js'

/** One row of the replicas table with its state by the one rule (replica-state.ts). */
export interface ReplicaRow {
  chunkId: string
  nodeId: string
  version: number
  sha256: string
  corrupt: boolean
  state: ReplicaState
}

export type RawReplicaRow = Omit<ReplicaRow, 'state'>

type RawRow = {chunk_id: string; node_id: string; version: number; sha256: string; corrupt: number}

/** Chunk ids per statement when many are looked up at once (json_each). */
const LOOKUP_SLICE = 1000

/**
 * The only writer of the replicas table: where the master keeps which node holds which version of which
 * chunk. Everything that learns of a replica (stored, deleted, corrupt, reports, trimming) writes through
 * here, and every write tells the listeners which chunk changed, so the repair loop looks only at what
 * changed instead of scanning every chunk.
 */
export class ReplicaTable {
  private readonly q
  private readonly listeners: ((chunkId: string) => void)[] = []
  /** Rows removed since the master started, by any caller (reports use it to know their counts are exact). */
  private removed = 0

  constructor(db: Db) {
    this.q = {
      upsert: db.prepare(`INSERT INTO replicas (chunk_id, node_id, version, sha256, corrupt, seen) VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (chunk_id, node_id, version) DO UPDATE SET sha256 = excluded.sha256, corrupt = excluded.corrupt,
          seen = coalesce(excluded.seen, replicas.seen)`),
      // The upsert for many rows of one node at once: JSON [[chunkId, version, sha256, corrupt], ...].
      upsertMany: db.prepare(`INSERT INTO replicas (chunk_id, node_id, version, sha256, corrupt, seen)
          SELECT value ->> 0, @nodeId, value ->> 1, value ->> 2, value ->> 3, @seen FROM json_each(@rows) WHERE true
        ON CONFLICT (chunk_id, node_id, version) DO UPDATE SET sha256 = excluded.sha256, corrupt = excluded.corrupt,
          seen = coalesce(excluded.seen, replicas.seen)`),
      markCorrupt: db.prepare('UPDATE replicas SET corrupt = 1 WHERE chunk_id = ? AND node_id = ? AND version = ? AND corrupt = 0'),
      exists: db.prepare('SELECT 1 FROM replicas WHERE chunk_id = ? AND node_id = ? AND version = ?').pluck(),
      remove: db.prepare('DELETE FROM replicas WHERE chunk_id = ? AND node_id = ? AND version = ?'),
      removeNode: db.prepare('DELETE FROM replicas WHERE node_id = ? RETURNING chunk_id').pluck(),
      countOfNode: db.prepare('SELECT count(*) FROM replicas WHERE node_id = ?').pluck(),
      rowsOfNode: db.prepare('SELECT chunk_id AS chunkId, version, seen FROM replicas WHERE node_id = ?'),
      chunkIdsOfNode: db.prepare('SELECT DISTINCT chunk_id FROM replicas WHERE node_id = ? AND chunk_id > ? ORDER BY chunk_id LIMIT ?').pluck(),
      rawOfChunks: db.prepare('SELECT chunk_id, node_id, version, sha256, corrupt FROM replicas WHERE chunk_id IN (SELECT value FROM json_each(?))'),
    }
  }

  /** Calls `listener(chunkId)` after every change to a chunk's replicas (or to what their state depends on). */
  onChange(listener: (chunkId: string) => void): void {
    this.listeners.push(listener)
  }

  /** Something a replica's state depends on changed for these chunks (a commit, a removal, an expired plan). */
  touched(chunkIds: Iterable<string>): void {
    for (const chunkId of chunkIds) this.changed(chunkId)
  }

  record(nodeId: string, chunkId: string, version: number, sha256: string, corrupt: boolean, seen: string | null): void {
    this.q.upsert.run(chunkId, nodeId, version, sha256, corrupt ? 1 : 0, seen)
    this.changed(chunkId)
  }

  /** Many rows of one node in one statement (report batches). */
  recordMany(nodeId: string, rows: readonly [chunkId: string, version: number, sha256: string, corrupt: 0 | 1][], seen: string): void {
    if (rows.length === 0) return
    this.q.upsertMany.run({nodeId, seen, rows: JSON.stringify(rows)})
    for (const [chunkId] of rows) this.changed(chunkId)
  }

  has(nodeId: string, chunkId: string, version: number): boolean {
    return this.q.exists.get(chunkId, nodeId, version) !== undefined
  }

  /** Returns true when there was such a row. */
  remove(nodeId: string, chunkId: string, version: number): boolean {
    const gone = this.q.remove.run(chunkId, nodeId, version).changes > 0
    if (gone) {
      this.removed++
      this.changed(chunkId)
    }
    return gone
  }

  /** Drops every row of a node (a node forgotten for good); returns how many there were. */
  removeNode(nodeId: string): number {
    const chunkIds = this.q.removeNode.all(nodeId) as string[]
    this.removed += chunkIds.length
    for (const chunkId of new Set(chunkIds)) this.changed(chunkId)
    return chunkIds.length
  }

  /** Returns true when the row exists (it may have been marked before). */
  markCorrupt(nodeId: string, chunkId: string, version: number): boolean {
    if (this.q.markCorrupt.run(chunkId, nodeId, version).changes > 0) {
      this.changed(chunkId)
      return true
    }
    return this.has(nodeId, chunkId, version)
  }

  /** Rows removed so far by anyone: unchanged between two moments means no row disappeared meanwhile. */
  removals(): number {
    return this.removed
  }

  countOfNode(nodeId: string): number {
    return this.q.countOfNode.get(nodeId) as number
  }

  rowsOfNode(nodeId: string): {chunkId: string; version: number; seen: string | null}[] {
    return this.q.rowsOfNode.all(nodeId) as {chunkId: string; version: number; seen: string | null}[]
  }

  /** Chunk ids a node holds a replica of, in id order after `after`, at most `limit` (paged so no call blocks long). */
  chunkIdsOfNode(nodeId: string, after: string, limit: number): string[] {
    return this.q.chunkIdsOfNode.all(nodeId, after, limit) as string[]
  }

  /**
   * The rows of many chunks without their state, for callers that have the chunks' records at hand and
   * apply the rule themselves (replicaState: the repair loop's looks, where the view's joins cost double).
   * Chunks without rows are absent from the map.
   */
  rawOfChunks(chunkIds: readonly string[]): Map<string, RawReplicaRow[]> {
    const byChunk = new Map<string, RawReplicaRow[]>()
    for (let i = 0; i < chunkIds.length; i += LOOKUP_SLICE) {
      for (const row of this.q.rawOfChunks.all(JSON.stringify(chunkIds.slice(i, i + LOOKUP_SLICE))) as RawRow[]) {
        const raw = {chunkId: row.chunk_id, nodeId: row.node_id, version: row.version, sha256: row.sha256, corrupt: row.corrupt === 1}
        const list = byChunk.get(row.chunk_id)
        if (list) list.push(raw)
        else byChunk.set(row.chunk_id, [raw])
      }
    }
    return byChunk
  }

  private changed(chunkId: string): void {
    for (const listener of this.listeners) listener(chunkId)
  }
}
