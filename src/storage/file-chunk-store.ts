import {randomBytes} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {copyFile, link, mkdir, open, readdir, rm, stat, statfs, unlink} from 'node:fs/promises'
import {join} from 'node:path'
import {pipeline} from 'node:stream/promises'
import {ChunkyError, type ReplicaInfo} from '../protocol/index.js'
import {DirectFile, writeAndDigestSlices} from '../util/direct-write.js'
import {digestAsWritten, type FileDigest} from '../util/file-digest.js'
import {commitFiles, fsyncDir, writeAll} from '../util/fs.js'
import type {Logger} from '../util/log.js'
import {BLOCK_SIZE, SIDECAR_SUFFIX, writeSidecarTemp} from './block-checksums.js'
import {BodyCheck, checkReplica} from './body-check.js'
import {type ChunkBody, type ChunkStore, notFound, type OpenedReplica, replicaKey, type StoreUsage, type WriteOptions} from './chunk-store.js'
import {type RangeReader, type RangeReadOptions, readVerifiedRange, RecentSums} from './ranged-read.js'
import {parseReplicaFileName, prefixDir, replicaFileName} from './replica-names.js'

export interface FileChunkStoreOptions {
  log?: Logger
}

/**
 * Replicas as files under `dir`: `<first 2 hex>/<chunkId>.<version>.<sha256>`. Writes go to
 * `<final>.<random>.tmp` in the same directory and become visible with one fsync + rename + fsync-dir.
 * An in-memory index (built at open) answers lookups without touching the disk.
 */
export class FileChunkStore implements ChunkStore, RangeReader {
  private readonly index = new Map<string, ReplicaInfo>()
  private readonly recentSums = new RecentSums()
  private usedBytes = 0

  private constructor(readonly dir: string) {}

  /** Opens (creating) the store, removing what a crash left behind: temp files and names that do not parse. */
  static async open(dir: string, options: FileChunkStoreOptions = {}): Promise<FileChunkStore> {
    const store = new FileChunkStore(dir)
    await mkdir(dir, {recursive: true})
    const removed = await store.scan()
    if (removed > 0) options.log?.info({event: 'store.cleaned', removed, dir}, `removed ${removed} leftover file(s) from ${dir}`)
    return store
  }

  private async scan(): Promise<number> {
    let removed = 0
    for (const top of await readdir(this.dir, {withFileTypes: true})) {
      if (!top.isDirectory()) {
        await unlink(join(this.dir, top.name)) // nothing but prefix directories belongs here
        removed++
        continue
      }
      if (!/^[0-9a-f]{2}$/.test(top.name)) continue // not ours to judge: leave foreign directories alone
      const sub = join(this.dir, top.name)
      let removedHere = 0
      const entries = await readdir(sub, {withFileTypes: true})
      const names = new Set(entries.map((entry) => entry.name))
      for (const entry of entries) {
        if (entry.isFile() && entry.name.endsWith(SIDECAR_SUFFIX) && names.has(entry.name.slice(0, -SIDECAR_SUFFIX.length))) continue // block checksums of a replica
        const parsed = entry.isFile() ? parseReplicaFileName(entry.name) : undefined
        if (!parsed || prefixDir(parsed.chunkId) !== top.name) {
          if (entry.isFile()) {
            await rm(join(sub, entry.name), {force: true}) // a crash mid-write (`*.tmp`, invariant 6) or a stray
            removedHere++
          }
          continue
        }
        const {size} = await stat(join(sub, entry.name))
        const replica = {...parsed, size}
        const key = replicaKey(parsed.chunkId, parsed.version)
        const older = this.index.get(key)
        if (older) {
          // Two checksums for one version can only be a crash between a rename and the old name's unlink: keep one.
          await rm(this.pathOf(older) + SIDECAR_SUFFIX, {force: true})
          await rm(this.pathOf(older), {force: true})
          this.usedBytes -= older.size
          removedHere++
        }
        this.index.set(key, replica)
        this.usedBytes += size
      }
      if (removedHere > 0) await fsyncDir(sub)
      removed += removedHere
    }
    return removed
  }

  private pathOf(r: {chunkId: string; version: number; sha256: string}): string {
    return join(this.dir, prefixDir(r.chunkId), replicaFileName(r))
  }

  async write(replica: ReplicaInfo, body: ChunkBody, options: WriteOptions = {}): Promise<ReplicaInfo> {
    return this.place(replica, async (tmp, wanted) => {
      const check = new BodyCheck(wanted, {hash: false}) // counts as it streams; the hashes come from the file itself
      const write = options.cache === false ? writeDirectAndDigest : writeAndDigest
      const digest = await write(tmp, check.pass(body), () => check.finishLength()) // a short body fails before it is hashed to the end
      check.finish(digest)
      return digest
    })
  }

  async adopt(replica: ReplicaInfo, file: string, digest: FileDigest): Promise<ReplicaInfo> {
    return this.place(replica, async (tmp, wanted) => {
      if (digest.size !== wanted.size) throw new ChunkyError('LENGTH_MISMATCH', `expected ${wanted.size} bytes, the file holds ${digest.size}`)
      if (digest.sha256 !== wanted.sha256) throw new ChunkyError('CHECKSUM_MISMATCH', `SHA-256 mismatch: expected ${wanted.sha256}, got ${digest.sha256}`)
      try {
        await link(file, tmp) // the same bytes under a second name: nothing copied, nothing to fsync again
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err
        await copyFile(file, tmp) // another file system: a copy, fsynced before its name is made
        const handle = await open(tmp, 'r+')
        try {
          await handle.sync()
        } finally {
          await handle.close()
        }
      }
      return digest
    })
  }

  /** Makes `<final>.<random>.tmp` with `fill` (its data fsynced, its digest checked), then names it and its sidecar durably. */
  private async place(replica: ReplicaInfo, fill: (tmp: string, wanted: ReplicaInfo) => Promise<FileDigest>): Promise<ReplicaInfo> {
    const wanted = checkReplica(replica)
    const sub = join(this.dir, prefixDir(wanted.chunkId))
    if ((await mkdir(sub, {recursive: true})) !== undefined) await fsyncDir(this.dir) // a new prefix dir must survive a crash too
    const final = this.pathOf(wanted)
    const tmp = `${final}.${randomBytes(6).toString('hex')}.tmp`
    let sidecarTmp: string | undefined
    try {
      const digest = await fill(tmp, wanted)
      sidecarTmp = await writeSidecarTemp(final + SIDECAR_SUFFIX, digest.blockSums)
      // The sidecar is named before the chunk is, one directory fsync makes both names durable. The
      // chunk's data was fsynced by `fill`; the sidecar's is not: a sidecar torn by a crash fails its
      // own check and the chunk is hashed whole instead (ranged-read.ts), and each fsync is a journal
      // commit the write waits for.
      await commitFiles(sub, [{tmp: sidecarTmp, final: final + SIDECAR_SUFFIX, fsync: false}, {tmp, final, fsync: false}])
    } catch (err) {
      await rm(tmp, {force: true}) // a failed write leaves nothing behind
      if (sidecarTmp) await rm(sidecarTmp, {force: true})
      if (this.index.get(replicaKey(wanted.chunkId, wanted.version))?.sha256 !== wanted.sha256) await rm(final + SIDECAR_SUFFIX, {force: true}) // unless it belongs to the very replica already held
      throw err
    }
    const info: ReplicaInfo = {chunkId: wanted.chunkId, version: wanted.version, size: wanted.size, sha256: wanted.sha256}
    const key = replicaKey(info.chunkId, info.version)
    const previous = this.index.get(key)
    this.index.set(key, info)
    this.usedBytes += info.size - (previous?.size ?? 0)
    if (previous && previous.sha256 !== info.sha256) {
      this.recentSums.forget(this.pathOf(previous))
      await rm(this.pathOf(previous) + SIDECAR_SUFFIX, {force: true}) // same version, other bytes: the new name replaces it
      await rm(this.pathOf(previous), {force: true})
      await fsyncDir(sub)
    }
    return info
  }

  async open(chunkId: string, version: number): Promise<OpenedReplica> {
    const replica = this.mustGet(chunkId, version)
    let handle
    try {
      handle = await open(this.pathOf(replica), 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw notFound(chunkId, version)
      throw err
    }
    const {size} = await handle.stat() // what is really there: a truncated file must not promise more
    const read = async (into: Buffer, position: number) => (await handle.read(into, 0, Math.min(into.length, Math.max(0, size - position)), position)).bytesRead
    return {size, sha256: replica.sha256, stream: handle.createReadStream({highWaterMark: READ_PIECE_BYTES}), read} // the stream closes the handle
  }

  has(chunkId: string, version: number): boolean {
    return this.index.has(replicaKey(chunkId, version))
  }

  get(chunkId: string, version: number): ReplicaInfo | undefined {
    return this.index.get(replicaKey(chunkId, version))
  }

  async delete(chunkId: string, version: number): Promise<boolean> {
    const key = replicaKey(chunkId, version)
    const replica = this.index.get(key)
    if (!replica) return false
    this.index.delete(key)
    this.usedBytes -= replica.size
    this.recentSums.forget(this.pathOf(replica))
    // The sidecar goes first: in between, a replica without one is whole and valid (it is hashed whole
    // when read); a sidecar without its replica would be litter.
    await rm(this.pathOf(replica) + SIDECAR_SUFFIX, {force: true})
    await rm(this.pathOf(replica), {force: true})
    await fsyncDir(join(this.dir, prefixDir(chunkId)))
    return true
  }

  /** Bytes [start, end) of exactly this version, each block checked against its checksum first (ranged-read.ts). */
  readRange(chunkId: string, version: number, start: number, end: number, opts?: RangeReadOptions): AsyncGenerator<Buffer> {
    const replica = this.mustGet(chunkId, version)
    return readVerifiedRange(this.pathOf(replica), replica, start, end, {...opts, knownSums: this.recentSums})
  }

  async *list(): AsyncIterable<ReplicaInfo> {
    yield* [...this.index.values()]
  }

  async verify(chunkId: string, version: number): Promise<boolean> {
    const replica = this.mustGet(chunkId, version)
    const check = new BodyCheck(replica)
    try {
      await pipeline(check.pass(createReadStream(this.pathOf(replica), {highWaterMark: READ_PIECE_BYTES})), async (source: AsyncIterable<Buffer>) => {
        for await (const _ of source); // the hash is taken on the way through
      })
      check.finish()
      return true
    } catch (err) {
      const code = (err as {code?: string}).code
      if (code === 'ENOENT') return false // the file vanished under us: as bad as rotten bytes
      if (code === 'CHUNK_TOO_LARGE' || code === 'LENGTH_MISMATCH' || code === 'CHECKSUM_MISMATCH') return false
      throw err
    }
  }

  async usage(): Promise<StoreUsage> {
    const fs = await statfs(this.dir)
    return {usedBytes: this.usedBytes, chunkCount: this.index.size, freeBytes: fs.bavail * fs.bsize}
  }

  private mustGet(chunkId: string, version: number): ReplicaInfo {
    const replica = this.index.get(replicaKey(chunkId, version))
    if (!replica) throw notFound(chunkId, version)
    return replica
  }
}

/**
 * Whole-replica reads (GET /chunks, verify) in pieces of this size: with the default 64 KiB, the
 * per-piece work of the file read and the HTTP chunk framing cost the source more CPU than the bytes
 * themselves.
 */
export const READ_PIECE_BYTES = 1024 * 1024

/** Bytes gathered before one write call: a socket hands over 16-64 KiB at a time. */
export const WRITE_BATCH_BYTES = 1024 * 1024

/**
 * Writes `body` to a new file `path` in batches of about WRITE_BATCH_BYTES, one writev each (no
 * copy), while the next batch is gathered: at most one write in flight and one batch waiting, so the
 * sender is held back (backpressure) as soon as the disk is slower than the network. Each batch is
 * hashed back from the file on a worker thread once written (util/file-digest.ts), and the data is
 * fsynced while that thread hashes the last one: after the last byte arrives, only the fsync and
 * one batch's hashing are left. `ended` judges the body before the rest is waited for.
 */
async function writeAndDigest(path: string, body: AsyncIterable<Buffer>, ended: () => void): Promise<FileDigest> {
  const handle = await open(path, 'wx')
  const digest = digestAsWritten(path, {blockSize: BLOCK_SIZE})
  let writing: Promise<unknown> = Promise.resolve()
  let finishing: Promise<FileDigest> | undefined
  try {
    let batch: Buffer[] = []
    let batchBytes = 0
    let end = 0
    const write = (buffers: Buffer[], bytes: number) =>
      writeAll(handle, buffers).then(() => digest.written((end += bytes)))
    for await (const piece of body) {
      batch.push(piece)
      batchBytes += piece.length
      if (batchBytes >= WRITE_BATCH_BYTES) {
        await writing
        writing = write(batch, batchBytes)
        batch = []
        batchBytes = 0
      }
    }
    await writing
    if (batch.length > 0) await write(batch, batchBytes)
    ended()
    finishing = digest.finish()
    const [hashed, synced] = await Promise.allSettled([finishing, handle.sync()]) // the data reaches the disk before its name does (commitFiles)
    if (hashed.status === 'rejected') throw hashed.reason
    if (synced.status === 'rejected') throw synced.reason
    return hashed.value
  } finally {
    if (!finishing) digest.cancel()
    await writing.catch(() => {}) // the failure (if any) was thrown above; never leave a write behind the close
    await handle.close()
  }
}

/**
 * writeAndDigest for a copy that skips the page cache (WriteOptions.cache false): written with
 * O_DIRECT from slices of memory shared with the hashing thread, which hashes the very bytes handed
 * to the disk (util/direct-write.ts).
 */
async function writeDirectAndDigest(path: string, body: AsyncIterable<Buffer>, ended: () => void): Promise<FileDigest> {
  const file = await DirectFile.create(path)
  try {
    const digest = await writeAndDigestSlices(file, 0, body, {blockSize: BLOCK_SIZE, ended})
    await file.sync() // the data reaches the disk before its name does (commitFiles)
    return digest
  } finally {
    await file.close()
  }
}
