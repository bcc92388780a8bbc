import type {ReplicaInfo} from '../protocol/index.js'
import {replicaState, type ReplicaState} from './replica-state.js'

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
  planned: {sha256: string} | undefined
  /** The master already recorded this replica as corrupt (a node reports the SHA-256 it stored, not a new hash). */
  knownCorrupt: boolean
}

/** A replica's state (replica-state.ts), or 'ahead': newer than any version this master handed out. */
export type Verdict = ReplicaState | 'ahead'

/**
 * Judges one replica a node reports (or says it stored) against the master's record: the one rule of
 * replica-state.ts, plus 'ahead'.
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
  const state = replicaState({version: replica.version, sha256: replica.sha256, corrupt: context.knownCorrupt}, chunk, planned)
  if (state === 'unreferenced' && chunk && replica.version > chunk.maxVersion) return 'ahead'
  return state
}
