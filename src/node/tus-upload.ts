import {ChunkyError, type PlannedChunk, type TusSession, type WriteResult} from '../protocol/index.js'
import {BLOCK_SIZE, WRITE_BATCH_BYTES} from '../storage/index.js'
import {DirectFile} from '../util/direct-write.js'
import {digestAsWritten, digestSlices, type FileDigest, type SliceDigest} from '../util/file-digest.js'
import {acquireSlice, releaseSlice, SLICE_BYTES} from '../util/shared-slices.js'
import {ChainForwarder} from './chain-forward.js'
import type {NodeContext} from './context.js'
import {checkGrant, sendFile, storeAndForward} from './put-chunk.js'
import type {TusContext} from './tus.js'

/** Tries per chunk: a chain that lost a node is re-placed without it (the CLI's re-plan). */
const CHUNK_TRIES = 3
/**
 * Whole chunks of one upload on their way to the master and the replica chain at once while the next
 * fills. A PATCH answers once its bytes are fsynced here, so the bytes a client has been told are
 * stored run at most this many chunks ahead of what the master holds on W nodes.
 */
export const TUS_CHUNKS_IN_FLIGHT = 3
/** Memory one PATCH holds: the write batch gathering, and the one being copied into shared memory for the disk (util/shared-slices.ts). */
export const TUS_PATCH_MEMORY = 2 * WRITE_BATCH_BYTES

/** A whole chunk of the upload, written to its tail file, being fsynced and hashed. */
interface WholeChunk {
  start: number
  size: number
  digest: Promise<FileDigest>
  /** Resolves once the chunk is fsynced: with the error when that failed. */
  synced: Promise<unknown>
}

/**
 * Bytes written to a chunk's file before its data is flushed to the disk in the background
 * (fdatasync while the next bytes arrive), so the fsync a PATCH waits for has little left to write.
 */
const FLUSH_EVERY_BYTES = 4 * WRITE_BATCH_BYTES

/** A write batch goes to the disk from one slice of the memory shared with the hashing thread. */
const BATCH_BYTES = Math.min(WRITE_BATCH_BYTES, SLICE_BYTES)
/** Batches of one upload on their way to the disk and the hashing thread at once. */
const WRITES_IN_FLIGHT = 3

/**
 * A tus upload on the node that holds it. Bytes go straight to the tail file of the chunk they
 * belong to (tus-tails.ts), in batches that skip the page cache (util/direct-write.ts), each hashed
 * on the hashing thread from the very memory handed to the disk (util/file-digest.ts), and a PATCH
 * answers once they are fsynced. A chunk once whole is planned by the master and becomes the replica
 * here (a hard link, no copy) and down its chain at the version the master hands out, while the next
 * chunk's bytes arrive; the master's offset moves once it is on W nodes. The last byte waits for
 * every chunk and the commit. One object lives across the PATCHes of an upload while chunks of it are
 * in flight (TusContext.uploads); otherwise a PATCH resumes from the tail files.
 */
export class TusUpload {
  /** Offset of the chunk filling now. */
  private base: number
  /** Bytes of it taken in (gathered or written). */
  private filled = 0
  /** Bytes of it fsynced: base + synced is what this node holds durably. */
  private synced = 0
  private file: DirectFile | undefined
  private digest: SliceDigest | undefined
  private batch: Buffer[] = []
  private batchBytes = 0
  /** Bytes of the filling chunk written to its file. */
  private written = 0
  private writing: Promise<void> = Promise.resolve()
  /** Batches of the filling chunk being written and hashed. */
  private readonly writes = new Set<Promise<unknown>>()
  /** A background flush of the filling chunk's file, and how far the last one started. */
  private flushing: Promise<unknown> | undefined
  private flushedTo = 0
  /** Whole chunks whose fsync is still under way, by start: what this node holds durably ends below them. */
  private readonly syncing = new Map<number, Promise<unknown>>()
  private readonly inFlight = new Set<Promise<void>>()
  private failed: unknown
  private patching = false
  /** Set while a PATCH has not finished well: the next one starts again from the tail files. */
  private unfinished = false
  private limit = 0

  private constructor(
    private readonly ctx: NodeContext,
    private readonly tus: TusContext,
    private session: TusSession,
  ) {
    this.base = session.offset
  }

  /**
   * The upload for one PATCH, from the bytes this node holds (`session` is the master's claim answer);
   * `limit` is its last byte, or its link's limit. Whole chunks found in tail files and not in flight
   * are sent on again. Call release() once the PATCH is done, finished or not.
   */
  static async open(ctx: NodeContext, tus: TusContext, session: TusSession, limit: number): Promise<TusUpload> {
    let upload = tus.uploads.get(session.id)
    if (upload && (upload.session.epoch !== session.epoch || upload.failed || upload.unfinished)) {
      await upload.settled() // a chunk or a PATCH of it failed, or another node took over: start again from the tail files
      upload = undefined
    }
    if (upload) {
      upload.learn(session)
    } else {
      upload = new TusUpload(ctx, tus, session)
      tus.uploads.set(session.id, upload)
      try {
        await upload.resume()
      } catch (err) {
        tus.uploads.delete(session.id)
        throw err
      }
    }
    upload.limit = limit
    upload.patching = true
    upload.unfinished = true
    await tus.budget.acquire(TUS_PATCH_MEMORY)
    return upload
  }

  /** What this node holds durably: the offset a HEAD answers and the next PATCH starts from. */
  get offset(): number {
    return this.syncing.size > 0 ? Math.min(...this.syncing.keys()) : this.base + this.synced
  }

  /** The session as the master last answered it. */
  get state(): TusSession {
    return this.session
  }

  /**
   * `node` holds the upload, open, in the epoch this object has, with nothing failed or under way:
   * the next PATCH continues here from the session as last answered.
   */
  continuesOn(node: string): boolean {
    return this.session.holder === node && this.session.state === 'open' && !this.failed && !this.unfinished && !this.patching
  }

  get committed(): boolean {
    return this.session.state === 'done'
  }

  get epoch(): number {
    return this.session.epoch
  }

  /**
   * Takes bytes in order; refuses (BODY_TOO_LARGE) a byte past the upload's length or its link's
   * limit. A socket is read no faster than its file takes the bytes.
   */
  async take(body: AsyncIterable<Buffer>): Promise<void> {
    for await (const buf of body) {
      if (this.base + this.filled + buf.length > this.limit) throw new ChunkyError('BODY_TOO_LARGE', `this upload ends at byte ${this.limit}: the PATCH sent more`)
      let rest = buf
      while (rest.length > 0) {
        if (!this.file) await this.startChunk()
        // A batch ends at a multiple of its size in the file, so each lands on whole blocks (O_DIRECT).
        const piece = rest.subarray(0, Math.min(this.session.chunkSize - this.filled, BATCH_BYTES - (this.filled % BATCH_BYTES)))
        this.batch.push(piece)
        this.batchBytes += piece.length
        this.filled += piece.length
        rest = rest.subarray(piece.length)
        if (this.filled === this.session.chunkSize) await this.chunkWhole()
        else if (this.filled % BATCH_BYTES === 0) await this.writeBatch()
      }
    }
  }

  /**
   * Makes what was taken durable (fsync); once the upload's last byte is in, ships the last chunk and
   * waits for every chunk in flight and the commit. Throws if bytes could not be made durable or a
   * chunk could not be written: the offset stays a durable one.
   */
  async finish(): Promise<void> {
    const length = this.session.length
    if (this.filled > 0 && length !== null && this.base + this.filled === length) {
      if (!this.file) await this.startChunk() // an empty last PATCH, the length given with it
      await this.chunkWhole()
    } else if (this.file) {
      await this.sync()
    }
    for (const error of await Promise.all(this.syncing.values())) if (error) throw error
    if (length !== null && this.offset === length) await this.settled()
    if (this.failed) throw this.failed
    this.unfinished = false
  }

  /** The PATCH is done with the upload (finished or not): the file closes; chunks in flight go on. */
  async release(): Promise<void> {
    this.patching = false
    this.tus.budget.release(TUS_PATCH_MEMORY)
    await this.closeChunk()
    this.forgetIfIdle()
  }

  /** A claim answer for this PATCH: it may carry the length (deferred until now). */
  private learn(session: TusSession): void {
    if (session.state === 'done' || session.offset > this.session.offset) this.session = session
    else if (this.session.length === null && session.length !== null) this.session = {...this.session, length: session.length}
  }

  /** Continues from the tail files: the chunk filling is reopened, whole chunks sent on. */
  private async resume(): Promise<void> {
    const {id, epoch, chunkSize, length} = this.session
    const segments = await this.tus.tails.resume(id, this.session.offset, epoch)
    for (const segment of segments) {
      this.base = segment.start
      this.filled = this.synced = this.written = segment.length
      const whole = segment.length === chunkSize || (length !== null && segment.start + segment.length === length)
      if (whole) {
        const digest = digestAsWritten(this.pathOf(segment.start), {blockSize: BLOCK_SIZE}).finish(segment.length)
        this.ship({start: segment.start, size: segment.length, digest, synced: Promise.resolve(undefined)})
        this.base += segment.length
        this.filled = this.synced = this.written = 0
      }
    }
  }

  private pathOf(start: number): string {
    return this.tus.tails.pathOf(this.session.id, start, this.session.epoch)
  }

  /** Opens the file of the chunk at `base` (filled bytes of it are already there, fsynced) and its digest. */
  private async startChunk(): Promise<void> {
    const path = this.pathOf(this.base)
    const file = await DirectFile.open(path, this.filled > 0 ? 'existing' : 'empty')
    try {
      if (this.filled > 0) await file.truncate(this.filled) // nothing past what was fsynced
      this.digest = digestSlices({blockSize: BLOCK_SIZE, ...(this.filled > 0 ? {after: {path, bytes: this.filled}} : {})})
    } catch (err) {
      await file.close()
      throw err
    }
    this.file = file
    this.written = this.flushedTo = this.filled
  }

  /**
   * Writes the gathered batch while up to WRITES_IN_FLIGHT - 1 earlier ones are still being written
   * and hashed (a write that skips the page cache waits for the disk); `writing` settles once this one
   * and every one before it are done.
   */
  private async writeBatch(): Promise<void> {
    while (this.writes.size >= WRITES_IN_FLIGHT) await Promise.race(this.writes)
    if (this.batchBytes === 0) return
    const buffers = this.batch
    const bytes = this.batchBytes
    const position = this.filled - bytes
    this.batch = []
    this.batchBytes = 0
    const file = this.file!
    const digest = this.digest!
    const slice = await acquireSlice()
    let at = 0
    for (const buf of buffers) at += buf.copy(slice.bytes, at)
    // Handed to the hashing thread here, batch after batch: it hashes them in the order given.
    const stored = Promise.allSettled([file.write(slice.bytes.subarray(0, bytes), position), digest.update(slice, bytes)])
    const before = this.writing
    const done = (async () => {
      const [wrote, hashed] = await stored
      releaseSlice(slice) // only once both the disk and the hashing thread are done with it
      await before
      if (wrote.status === 'rejected') throw wrote.reason
      if (hashed.status === 'rejected') throw hashed.reason
      this.written = position + bytes
      if (!this.flushing && this.written - this.flushedTo >= FLUSH_EVERY_BYTES) {
        this.flushedTo = this.written
        this.flushing = file.datasync().then(
          () => (this.flushing = undefined),
          () => (this.flushing = undefined), // the fsync that counts reports it
        )
      }
    })()
    this.writing = done
    const settled: Promise<void> = done.then(
      () => void this.writes.delete(settled),
      () => void this.writes.delete(settled), // its failure reaches the PATCH through `writing`
    )
    this.writes.add(settled)
  }

  /** Everything taken of the filling chunk is written and fsynced; then it counts in the tail (a new file's name made durable too). */
  private async sync(): Promise<void> {
    await this.writeBatch()
    await this.writing
    if (this.written === this.synced) return
    const fresh = this.synced === 0
    await Promise.all([this.file!.sync(), fresh ? this.tus.tails.nameDurable() : undefined])
    this.synced = this.written
    this.tus.tails.durable(this.session.id, this.base, this.session.epoch, this.synced)
  }

  /**
   * The chunk filling is whole: written, then fsynced and closed in the background while the next
   * chunk's bytes arrive, and on its way (after waiting while too many are in flight).
   */
  private async chunkWhole(): Promise<void> {
    await this.writeBatch()
    await this.writing
    const {id, epoch} = this.session
    const start = this.base
    const size = this.filled
    const file = this.file!
    const fresh = this.synced === 0
    const flushing = this.flushing
    const synced = (async () => {
      try {
        await flushing
        await Promise.all([file.sync(), fresh ? this.tus.tails.nameDurable() : undefined])
        this.tus.tails.durable(id, start, epoch, size)
      } finally {
        await file.close()
      }
    })().then(
      () => undefined,
      (err: unknown) => err,
    )
    this.syncing.set(start, synced)
    void synced.then(() => this.syncing.delete(start))
    const digest = this.digest!.finish()
    digest.catch(() => {}) // awaited once the chunk is sent; unsent (a failure first), it is not waited for
    const chunk: WholeChunk = {start, size, digest, synced}
    this.file = undefined
    this.digest = undefined
    this.flushing = undefined
    this.base += size
    this.filled = this.synced = this.written = this.flushedTo = 0
    while (this.inFlight.size >= TUS_CHUNKS_IN_FLIGHT && !this.failed) await Promise.race(this.inFlight)
    if (this.failed) throw this.failed
    this.ship(chunk)
  }

  private async closeChunk(): Promise<void> {
    const file = this.file
    if (!file) return
    this.file = undefined
    this.digest?.cancel()
    this.digest = undefined
    this.batch = []
    this.batchBytes = 0
    await this.writing.catch(() => {}) // its failure was thrown to the PATCH already
    this.writing = Promise.resolve()
    await this.flushing
    this.flushing = undefined
    this.filled = this.written = this.flushedTo = this.synced // what was not fsynced does not count
    await file.close()
  }

  private ship(chunk: WholeChunk): void {
    const shipping: Promise<void> = this.send(chunk)
      .catch((err: unknown) => {
        this.failed ??= err
        this.ctx.log.warn({event: 'tus.chunk_failed', id: this.session.id, start: chunk.start, error: (err as Error).message}, `tus upload ${this.session.id}: the chunk at ${chunk.start} was not stored: ${(err as Error).message}`)
      })
      .finally(() => {
        this.inFlight.delete(shipping)
        this.forgetIfIdle()
      })
    this.inFlight.add(shipping)
  }

  /** Resolves once no chunk is in flight. */
  private async settled(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.race(this.inFlight)
  }

  private forgetIfIdle(): void {
    if (!this.patching && this.inFlight.size === 0 && this.tus.uploads.get(this.session.id) === this) this.tus.uploads.delete(this.session.id)
  }

  /** Plans the chunk, writes it here and down its chain, and moves the master's offset; then its tail file goes. */
  private async send(chunk: WholeChunk): Promise<void> {
    const {id, epoch} = this.session
    const index = chunk.start / this.session.chunkSize
    const syncError = await chunk.synced
    if (syncError) throw syncError
    const digest = await chunk.digest
    const exclude: string[] = []
    let lastError: unknown
    for (let attempt = 0; attempt < CHUNK_TRIES; attempt++) {
      let planned: PlannedChunk
      try {
        planned = await this.tus.master.planChunk(id, {node: this.ctx.id, epoch, index, size: chunk.size, sha256: digest.sha256, exclude})
      } catch (err) {
        if ((err as ChunkyError).code === 'OFFSET_MISMATCH') return // the master's offset is past it already (sent again after a resume)
        throw err
      }
      if (!planned.skip) {
        const result = await this.write(planned, this.pathOf(chunk.start), digest)
        for (const failure of result.failed) if (!exclude.includes(failure.node)) exclude.push(failure.node)
      }
      try {
        const session = await this.tus.master.advance(id, {node: this.ctx.id, epoch, index})
        // Answers to chunks written at once arrive in any order: keep the furthest.
        if (session.state === 'done' || (this.session.state === 'open' && session.offset > this.session.offset)) this.session = session
        await this.tus.tails.dropBelow(id, epoch, this.session.state === 'done' ? Number.MAX_SAFE_INTEGER : this.session.offset)
        return
      } catch (err) {
        if ((err as ChunkyError).code !== 'NOT_DURABLE') throw err
        lastError = err
      }
    }
    throw lastError
  }

  /** The chunk here and down the chain when this node is first in it (as the master places it), else to the first target. */
  private async write(planned: PlannedChunk, file: string, digest: FileDigest): Promise<WriteResult> {
    const [first, ...rest] = planned.targets
    if (!first) throw new ChunkyError('NO_NODES', 'the master placed the chunk nowhere')
    if (first.id === this.ctx.id) {
      const grant = checkGrant(this.ctx, planned.grant, planned.chunkId, planned.version)
      const result = await storeAndForward(this.ctx, {grantText: planned.grant, grant, chain: rest}, {file, digest}, {gone: () => false, abort: () => {}})
      return result ?? {stored: [], failed: planned.targets.map((t) => ({node: t.id, error: 'aborted'}))}
    }
    const forward = new ChainForwarder({chain: planned.targets, path: `/chunks/${planned.chunkId}/${planned.version}`, grant: planned.grant, size: planned.size, token: this.ctx.token, ca: this.ctx.ca})
    await sendFile(file, forward)
    return forward.result
  }
}
