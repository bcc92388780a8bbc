import {createHash} from 'node:crypto'
import {type FileHandle, open} from 'node:fs/promises'
import {ChunkyError, type ReplicaInfo} from '../protocol/index.js'
import {BLOCK_SIZE, BlockHasher, blockMatches, readSidecar, SIDECAR_SUFFIX, writeSidecar} from './block-checksums.js'
import {notFound} from './chunk-store.js'

/**
 * Blocks read from disk per read call at first: a seek costs about what it sends. A read that goes
 * on doubles it up to MAX_READ_BLOCKS (1 MiB) for throughput, like the kernel's own read-ahead, and
 * the next read is issued while the last one is sent; so a reader that leaves costs at most two reads.
 * 1 MiB pieces halve the read calls and socket writes of 512 KiB ones (whole-file reads here ran
 * the same within the noise of a loaded machine).
 */
export const READ_BLOCKS = 2
export const MAX_READ_BLOCKS = 16

export interface RangeReadOptions {
  /** Stops reading at the next block boundary once aborted. */
  signal?: AbortSignal
  /** Blocks in the first read, default READ_BLOCKS: for a reader that wants every byte of its range at once. */
  firstReadBlocks?: number
  /** Called with every byte count read from disk (metrics). */
  onDiskRead?: (bytes: number) => void
  /** Where read buffers come from (a pool the caller refills once a buffer is sent); default a new one each. */
  alloc?: (bytes: number) => Buffer
  /** Block checksums already read, by replica path (the store's RecentSums); default: read the sidecar. */
  knownSums?: RecentSums
}

/**
 * Block checksums of the replicas read lately, by replica path. A node reading from a peer asks for a
 * chunk a range at a time, and each range would otherwise open and read the sidecar again. A path
 * names one version with one SHA-256 (replica-names.ts), so its checksums never change while it exists.
 */
export class RecentSums {
  private readonly byPath = new Map<string, Uint32Array>()

  constructor(private readonly limit = 1024) {} // about 0.7 MB for 10 MiB chunks

  get(path: string): Uint32Array | undefined {
    return this.byPath.get(path)
  }

  remember(path: string, sums: Uint32Array): void {
    this.byPath.delete(path)
    this.byPath.set(path, sums) // the most recent last
    if (this.byPath.size > this.limit) this.byPath.delete(this.byPath.keys().next().value!)
  }

  forget(path: string): void {
    this.byPath.delete(path)
  }
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
    let sums = opts.knownSums?.get(path) ?? (await readSidecar(path + SIDECAR_SUFFIX, replica.size))
    sums ??= await verifyWhole(handle, path, replica, opts)
    opts.knownSums?.remember(path, sums)
    const last = Math.floor((end - 1) / BLOCK_SIZE)
    const readBlocks = (block: number, count: number): Promise<BlocksRead> => {
      const offset = block * BLOCK_SIZE
      const bytes = Math.min((last - block + 1) * BLOCK_SIZE, count * BLOCK_SIZE, replica.size - offset)
      const data = opts.alloc?.(bytes) ?? Buffer.allocUnsafe(bytes) // a fresh (or recycled, once sent) buffer: a socket may still hold the last one
      const reading = readFully(handle, data, offset).then((got) => {
        opts.onDiskRead?.(got)
        return {block, offset, data, got}
      })
      reading.catch(() => {}) // awaited below, or in finally
      return reading
    }
    let count = Math.min(opts.firstReadBlocks ?? READ_BLOCKS, MAX_READ_BLOCKS)
    let next: Promise<BlocksRead> | undefined = readBlocks(Math.floor(start / BLOCK_SIZE), count)
    try {
      while (next) {
        if (opts.signal?.aborted) return
        const done: BlocksRead = await next
        const {block, offset, data, got} = done
        const following: number = block + Math.ceil(data.length / BLOCK_SIZE)
        count = Math.min(count * 2, MAX_READ_BLOCKS)
        next = following <= last && !opts.signal?.aborted ? readBlocks(following, count) : undefined
        for (let b = 0; b * BLOCK_SIZE < data.length; b++) {
          const piece = data.subarray(b * BLOCK_SIZE, Math.min((b + 1) * BLOCK_SIZE, data.length))
          if (got < b * BLOCK_SIZE + piece.length) throw new CorruptBlockError(replica.chunkId, replica.version, block + b, `the file is shorter than its ${replica.size} bytes`)
          if (!blockMatches(sums, block + b, piece)) throw new CorruptBlockError(replica.chunkId, replica.version, block + b, `block ${block + b} (bytes ${offset + b * BLOCK_SIZE}-) does not match its checksum`)
        }
        yield data.subarray(Math.max(start - offset, 0), Math.min(end - offset, data.length))
      }
    } finally {
      await next?.catch(() => {}) // a read still in flight must end before the file closes
    }
  } finally {
    await handle.close()
  }
}

interface BlocksRead {
  block: number
  offset: number
  data: Buffer
  got: number
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
