import type {ReplicaInfo} from '../protocol/index.js'

/** The master's record of a chunk, as far as judging a replica needs it. */
export interface ChunkRecord {
  /** 0 = never committed. */
  committedVersion: number
  /** The highest version ever handed out. */
  maxVersion: number
  size: number
  sha256: string
}

export interface ReplicaContext {
  /** undefined when the chunk id is unknown (its file was removed, or its tail dropped). */
  chunk: ChunkRecord | undefined
  /** The planned (handed out, not yet committed) row for this exact chunk and version, if any. */
  planned: {size: number; sha256: string} | undefined
  /** The master already recorded this replica as corrupt (a node reports the SHA-256 it stored, not a new hash). */
  knownCorrupt: boolean
}

export type Verdict =
  | 'fresh' // current version, right bytes: record it
  | 'stale' // older than the committed version: record it (status shows it), tell the node to delete it
  | 'corrupt' // current version, wrong bytes: record it as corrupt, tell the node to delete it
  | 'pending' // a planned version (an upload in flight): record it, not served
  | 'ahead' // newer than any version the master handed out: the master lost track (see below)
  | 'unreferenced' // nobody needs it: tell the node to delete it

/**
 * Judges one replica a node holds against the master's record (issue 3, "chunk reports").
 *
 * 'ahead' (version > max_version): the Google File System rule says the master lost track and the
 * higher version is current. Here a version is persisted before it is handed out (invariant 2), so
 * this only happens if the master's database was lost or rolled back. We raise max_version to it, so
 * the number is never handed out again, and keep the replica as *pending* (recorded as a planned
 * version with its SHA-256), not served: the committed manifest is the only thing readers see, and
 * we cannot know which file contents that version belonged to. A re-upload of the same bytes finds
 * it (skip), and any later upload commits a newer version, after which it is stale and deleted.
 */
export function judgeReplica(replica: ReplicaInfo, context: ReplicaContext): Verdict {
  const {chunk, planned} = context
  if (!chunk) return 'unreferenced'
  const matchesPlan = planned !== undefined && planned.size === replica.size && planned.sha256 === replica.sha256
  if (chunk.committedVersion === 0) return matchesPlan ? 'pending' : 'unreferenced'
  if (replica.version === chunk.committedVersion) {
    if (context.knownCorrupt) return 'corrupt'
    return replica.sha256 === chunk.sha256 && replica.size === chunk.size ? 'fresh' : 'corrupt'
  }
  if (replica.version < chunk.committedVersion) return 'stale'
  if (matchesPlan) return 'pending'
  if (replica.version > chunk.maxVersion) return 'ahead'
  return 'unreferenced' // a version handed out and abandoned (or written with other bytes than planned)
}
