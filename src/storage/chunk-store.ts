import type {Readable} from 'node:stream'
import {ChunkyError, type ReplicaInfo} from '../protocol/index.js'
import type {FileDigest} from '../util/file-digest.js'

// What a node needs from its disk: replicas (one chunk at one version) written whole or not at all,
// read back by (chunk id, version), listed, deleted and re-hashed. FileChunkStore is the real one;
// MemoryChunkStore runs the same contract (test/storage/chunk-store.contract.ts) without a disk.

export type {ReplicaInfo}

/**
 * Bytes arriving from a socket or a generator; each piece is passed on as it comes. A producer may
 * reuse a piece's memory once the next piece is asked for (a repair transfer reads into a few buffers
 * it lends out), so a store that keeps a piece longer copies it.
 */
export type ChunkBody = AsyncIterable<Buffer | Uint8Array>

export interface OpenedReplica {
  size: number
  sha256: string
  /** The bytes, read from disk as they are consumed; destroy it to stop early, or once done with `read`. */
  stream: Readable
  /** Reads the bytes at `position` into `into` (as many as fit and are there); resolves with their count. */
  read(into: Buffer, position: number): Promise<number>
}

export interface WriteOptions {
  /**
   * False for a copy nobody is about to read (repair, drain): its bytes go to the disk past the page
   * cache where the file system allows (O_DIRECT), so they neither evict what readers use nor cost
   * the copy into fresh page-cache pages.
   */
  cache?: boolean
}

export interface StoreUsage {
  usedBytes: number
  chunkCount: number
  freeBytes: number
}

export interface ChunkStore {
  /**
   * Store `body` as `replica`, pulling it only as fast as the disk takes it. Refuses more than
   * replica.size bytes (CHUNK_TOO_LARGE), fewer (LENGTH_MISMATCH) and another SHA-256
   * (CHECKSUM_MISMATCH), leaving nothing behind. Resolves once the replica is durable and visible.
   */
  write(replica: ReplicaInfo, body: ChunkBody, options?: WriteOptions): Promise<ReplicaInfo>
  /**
   * Store the bytes of `file` as `replica`, without copying them where the store can (a hard link).
   * The caller fsynced the file, never changes it again, and took `digest` by reading it back
   * (util/file-digest.ts with BLOCK_SIZE blocks); another size or SHA-256 than the replica's is refused
   * as by write(). Resolves once the replica is durable and visible.
   */
  adopt(replica: ReplicaInfo, file: string, digest: FileDigest): Promise<ReplicaInfo>
  /** The bytes of exactly this version, or CHUNK_NOT_FOUND. */
  open(chunkId: string, version: number): Promise<OpenedReplica>
  has(chunkId: string, version: number): boolean
  get(chunkId: string, version: number): ReplicaInfo | undefined
  /** Removes the replica durably; true if it was held. A missing replica is not an error. */
  delete(chunkId: string, version: number): Promise<boolean>
  /** Every replica held, from the in-memory index (a snapshot taken when iteration starts). */
  list(): AsyncIterable<ReplicaInfo>
  /** Re-reads the bytes: true when they still hash to the recorded SHA-256 and size. CHUNK_NOT_FOUND if not held. */
  verify(chunkId: string, version: number): Promise<boolean>
  usage(): Promise<StoreUsage>
}

export function replicaKey(chunkId: string, version: number): string {
  return `${chunkId}.${version}`
}

export function notFound(chunkId: string, version: number): ChunkyError {
  return new ChunkyError('CHUNK_NOT_FOUND', `chunk ${chunkId} v${version} is not held here`)
}
