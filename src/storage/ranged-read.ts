import {createHash} from 'node:crypto'
import {type FileHandle, open} from 'node:fs/promises'
import {ChunkyError, type ReplicaInfo} from '../protocol/index.js'
import {BLOCK_SIZE, BlockHasher, blockMatches, readSidecar, SIDECAR_SUFFIX, writeSidecar} from './block-checksums.js'
import {notFound} from './chunk-store.js'

/** Blocks read from disk per read call: the most a reader that went away can make the disk read. */
export const READ_BLOCKS = 2

export interface RangeReadOptions {
  /** Stops reading at the next block boundary once aborted. */
  signal?: AbortSignal
  /** Called with every byte count read from disk (metrics). */
  onDiskRead?: (bytes: number) => void
}

/** A block of a replica on disk does not match its checksum (or the file is shorter than recorded). */
export class CorruptBlockError extends ChunkyError {
  constructor(
    readonly chunkId: string,
    readonly version: number,
    readonly block: number,
    why: string,
  ) {
    super('CHECKSUM_MISMATCH', `chunk ${chunkId} v${version}: ${why}`)
  }
}

/** Reads a replica's bytes and verifies them; what the node's ranged reads (issue 12) need from a store. */
export interface RangeReader {
  /** Bytes [start, end) of exactly this replica, every block checked before it is yielded. */
  readRange(chunkId: string, version: number, start: number, end: number, opts?: RangeReadOptions): AsyncGenerator<Buffer>
}

/**
 * Yields bytes [start, end) of the replica file at `path`, reading whole blocks (READ_BLOCKS at a
 * time, only as fast as the consumer pulls) and checking each against the sidecar before any of its
 * bytes leave. Without a sound sidecar the whole replica is hashed first (SHA-256, as recorded) and a
 * sidecar written for next time. Throws CorruptBlockError for rot, CHUNK_NOT_FOUND if the file is gone.
 */
export async function* readVerifiedRange(path: string, replica: ReplicaInfo, start: number, end: number, opts: RangeReadOptions = {}): AsyncGenerator<Buffer> {
  if (start < 0 || end > replica.size || start > end) throw new ChunkyError('BAD_REQUEST', `range ${start}-${end} is outside chunk ${replica.chunkId} (${replica.size} bytes)`)
  if (start === end) return
  let handle: FileHandle
  try {
    handle = await open(path, 'r')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw notFound(replica.chunkId, replica.version)
    throw err
  }
  try {
    let sums = await readSidecar(path + SIDECAR_SUFFIX, replica.size)
    sums ??= await verifyWhole(handle, path, replica, opts)
    const last = Math.floor((end - 1) / BLOCK_SIZE)
    for (let block = Math.floor(start / BLOCK_SIZE); block <= last; block += READ_BLOCKS) {
      if (opts.signal?.aborted) return
      const offset = block * BLOCK_SIZE
      const length = Math.min((last - block + 1) * BLOCK_SIZE, READ_BLOCKS * BLOCK_SIZE, replica.size - offset)
      const data = Buffer.allocUnsafe(length) // never reused: the socket may still hold the previous one
      const got = await readFully(handle, data, offset)
      opts.onDiskRead?.(got)
      for (let b = 0; b * BLOCK_SIZE < length; b++) {
        const piece = data.subarray(b * BLOCK_SIZE, Math.min((b + 1) * BLOCK_SIZE, length))
        if (got < b * BLOCK_SIZE + piece.length) throw new CorruptBlockError(replica.chunkId, replica.version, block + b, `the file is shorter than its ${replica.size} bytes`)
        if (!blockMatches(sums, block + b, piece)) throw new CorruptBlockError(replica.chunkId, replica.version, block + b, `block ${block + b} (bytes ${offset + b * BLOCK_SIZE}-) does not match its checksum`)
      }
      yield data.subarray(Math.max(start - offset, 0), Math.min(end - offset, length))
    }
  } finally {
    await handle.close()
  }
}

/** A replica without block checksums: prove it whole against its SHA-256, then keep its block checksums. */
async function verifyWhole(handle: FileHandle, path: string, replica: ReplicaInfo, opts: RangeReadOptions): Promise<Uint32Array> {
  const hash = createHash('sha256')
  const blocks = new BlockHasher()
  const data = Buffer.allocUnsafe(READ_BLOCKS * BLOCK_SIZE)
  let offset = 0
  while (offset < replica.size) {
    if (opts.signal?.aborted) throw new ChunkyError('INTERNAL', 'the reader went away')
    const want = data.subarray(0, Math.min(data.length, replica.size - offset))
    const got = await readFully(handle, want, offset)
    opts.onDiskRead?.(got)
    if (got < want.length) throw new CorruptBlockError(replica.chunkId, replica.version, Math.floor((offset + got) / BLOCK_SIZE), `the file is shorter than its ${replica.size} bytes`)
    hash.update(want)
    blocks.update(want)
    offset += got
  }
  if (hash.digest('hex') !== replica.sha256) throw new CorruptBlockError(replica.chunkId, replica.version, 0, 'the bytes no longer match the recorded SHA-256')
  const sums = blocks.finish()
  await writeSidecar(path + SIDECAR_SUFFIX, sums).catch(() => {}) // a cache of work done: losing it only costs a re-hash
  return sums
}

async function readFully(handle: FileHandle, into: Buffer, position: number): Promise<number> {
  let done = 0
  while (done < into.length) {
    const {bytesRead} = await handle.read(into, done, into.length - done, position + done)
    if (bytesRead === 0) break
    done += bytesRead
  }
  return done
}
