import {ChunkyError, type ReplicaInfo} from '../protocol/index.js'
import type {ChunkBody, ChunkStore, WriteOptions} from '../storage/index.js'

/**
 * The replay rule, on the node's side. A chunk's versions only go up, so once this node holds v5 of a
 * chunk (or was told v4 is stale), a write of any lower version can only be an old grant replayed:
 * it is refused with 409. The same version again is allowed (the grant binds its SHA-256, so it can
 * only carry the very same bytes: a harmless re-send). The master stays the final judge: a `stored`
 * for a version below the committed one is refused and deleted there, even on a node that never saw
 * the newer version (after a restart this map only knows what is on disk).
 */
export class VersionFloor {
  /** chunk id -> lowest version a write may still carry */
  private readonly floor = new Map<string, number>()

  /** This node holds `version` of the chunk. */
  held(chunkId: string, version: number): void {
    if ((this.floor.get(chunkId) ?? 0) < version) this.floor.set(chunkId, version)
  }

  /** The master said `version` is stale or no longer referenced: it (and anything older) never comes back. */
  superseded(chunkId: string, version: number): void {
    if ((this.floor.get(chunkId) ?? 0) < version + 1) this.floor.set(chunkId, version + 1)
  }

  /** Throws VERSION_CONFLICT for a version below what this node already knows of the chunk. */
  checkWrite(chunkId: string, version: number): void {
    const floor = this.floor.get(chunkId) ?? 0
    if (version < floor) {
      throw new ChunkyError(
        'VERSION_CONFLICT',
        `chunk ${chunkId} v${version} is superseded here (v${floor} or newer exists): this grant is stale, ask the master for a new plan`,
      )
    }
  }
}

/** The store, with every successful write noted in the floor (uploads, chain writes and repair copies alike). */
export function trackVersions(store: ChunkStore, floor: VersionFloor): ChunkStore {
  return {
    write: async (replica: ReplicaInfo, body: ChunkBody, options?: WriteOptions) => {
      const stored = await store.write(replica, body, options)
      floor.held(stored.chunkId, stored.version)
      return stored
    },
    adopt: async (replica, file, digest) => {
      const stored = await store.adopt(replica, file, digest)
      floor.held(stored.chunkId, stored.version)
      return stored
    },
    open: (chunkId, version) => store.open(chunkId, version),
    has: (chunkId, version) => store.has(chunkId, version),
    get: (chunkId, version) => store.get(chunkId, version),
    delete: (chunkId, version) => store.delete(chunkId, version),
    list: () => store.list(),
    verify: (chunkId, version) => store.verify(chunkId, version),
    usage: () => store.usage(),
  }
}
