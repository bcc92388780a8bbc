// What makes a replica fresh, stale, corrupt, pending or unreferenced: the one rule, written once in
// TypeScript and once as the SQL view every query of the master reads (test/master/replica-state.test.ts
// runs every combination through both). Status, repair, reports, uploads and the dashboard all use it.

export type ReplicaState =
  | 'fresh' // the committed version with the committed bytes
  | 'stale' // older than the committed version
  | 'corrupt' // known rotten, or the committed version with other bytes
  | 'pending' // a planned (handed out, not yet committed) version with the planned bytes: an upload in flight
  | 'unreferenced' // nobody needs it: its chunk is gone, never committed, or the version was abandoned

/** The master's record of a chunk as far as a replica's state depends on it; committedVersion 0 = not committed. */
export interface ChunkState {
  committedVersion: number
  sha256: string
}

export interface ReplicaFacts {
  version: number
  sha256: string
  /** The master has this replica on record as rotten (scrub, verify or a reader found it). */
  corrupt: boolean
}

/**
 * A corrupt mark wins over everything (a copy known rotten is never counted, whatever its version);
 * then the version against the committed one; a newer version counts only while it is planned with the
 * same bytes.
 */
export function replicaState(replica: ReplicaFacts, chunk: ChunkState | undefined, planned: {sha256: string} | undefined): ReplicaState {
  if (!chunk) return 'unreferenced'
  if (replica.corrupt) return 'corrupt'
  if (replica.version < chunk.committedVersion) return 'stale'
  if (replica.version === chunk.committedVersion) return replica.sha256 === chunk.sha256 ? 'fresh' : 'corrupt'
  return planned?.sha256 === replica.sha256 ? 'pending' : 'unreferenced'
}

/**
 * replicaState as an SQL expression over a replica row `r`, its chunk row `c` (LEFT JOIN chunks c ON
 * c.chunk_id = r.chunk_id) and the planned row `p` of its version (LEFT JOIN planned p ON p.chunk_id =
 * r.chunk_id AND p.version = r.version). Queries that already join chunks use it directly; the rest read
 * the view below.
 */
export const REPLICA_STATE_SQL = `CASE
    WHEN c.chunk_id IS NULL THEN 'unreferenced'
    WHEN r.corrupt = 1 THEN 'corrupt'
    WHEN r.version < c.committed_version THEN 'stale'
    WHEN r.version = c.committed_version THEN CASE WHEN r.sha256 = c.sha256 THEN 'fresh' ELSE 'corrupt' END
    WHEN p.sha256 = r.sha256 THEN 'pending'
    ELSE 'unreferenced'
  END`

/**
 * Every replica row with its state. A TEMP view (made on each open), so the rule can change without
 * touching the database file. Queries filter it by chunk_id or node_id and SQLite pushes the filter
 * down to the tables' indexes.
 */
export const REPLICA_STATES_VIEW = `
DROP VIEW IF EXISTS temp.replica_states;
CREATE TEMP VIEW replica_states AS
SELECT r.chunk_id, r.node_id, r.version, r.sha256, r.corrupt, ${REPLICA_STATE_SQL} AS state
FROM main.replicas r
  LEFT JOIN main.chunks c ON c.chunk_id = r.chunk_id
  LEFT JOIN main.planned p ON p.chunk_id = r.chunk_id AND p.version = r.version;
`
