import {createHash, type Hash} from 'node:crypto'
import {ChunkyError, type PlannedChunk, type TusSession, type WriteResult} from '../protocol/index.js'
import {ChainForwarder} from './chain-forward.js'
import type {ByteBudget} from './byte-budget.js'
import type {NodeContext} from './context.js'
import {checkGrant, storeAndForward} from './put-chunk.js'
import type {TusMaster} from './tus-master.js'
import type {TusTails} from './tus-tails.js'

/** Tries per chunk: a chain that lost a node is re-placed without it (the CLI's re-plan). */
const CHUNK_TRIES = 3
/**
 * Whole chunks of one upload written at once while the next fills: each waits on its version
 * hand-out and its fsync, so one at a time left the disk and the master idle between chunks.
 */
export const TUS_CHUNKS_IN_FLIGHT = 3

interface CutChunk {
  index: number
  parts: Buffer[]
  size: number
  sha256: string
  /** Bytes of the node's budget this chunk holds until it is written. */
  reserved: number
}

/**
 * One PATCH's bytes into a tus upload, on the node that holds it: cut into the session's chunks,
 * each written, as soon as it is whole, here and down its replica chain at the version the master
 * hands out (the chunk PUT's own code), up to TUS_CHUNKS_IN_FLIGHT at once while the next fills.
 * What is left of an incomplete chunk at the end is saved as this node's tail, fsynced. Every chunk
 * it buffers is first reserved in the node's byte budget, so all uploads together hold at most that.
 */
export class TusUpload {
  private parts: Buffer[] = []
  private filled = 0
  private hash: Hash = createHash('sha256')
  /** Offset of the first byte of `parts`. */
  private base: number
  private readonly inFlight = new Set<Promise<void>>()
  private failed: unknown
  /** Budget bytes held for the chunk filling now (0 until its first byte). */
  private reserved = 0

  private constructor(
    private readonly ctx: NodeContext,
    private readonly master: TusMaster,
    private readonly tails: TusTails,
    private readonly budget: ByteBudget,
    private session: TusSession,
    /** The upload's last byte, or its link's limit: a byte past it is refused. */
    private readonly limit: number,
  ) {
    this.base = session.offset
  }

  /** The upload at the session's durable offset, with this node's tail of it (in the budget) read back. */
  static async open(ctx: NodeContext, master: TusMaster, tails: TusTails, budget: ByteBudget, session: TusSession, limit: number): Promise<TusUpload> {
    const upload = new TusUpload(ctx, master, tails, budget, session, limit)
    if (tails.length(session.id, session.offset, session.epoch) > 0) {
      await upload.reserve()
      try {
        upload.add(await tails.read(session.id, session.offset, session.epoch))
      } catch (err) {
        upload.release()
        throw err
      }
    }
    return upload
  }

  /** The offset reached: bytes taken in so far, durable once finish() resolved. */
  get offset(): number {
    return this.base + this.filled
  }

  /** The session as the master last answered it. */
  get state(): TusSession {
    return this.session
  }

  get committed(): boolean {
    return this.session.state === 'done'
  }

  /**
   * Takes bytes in order; refuses (BODY_TOO_LARGE) a byte past the upload's length or its link's limit.
   * It reads no further while the node's budget has no room for the next chunk.
   */
  async take(body: AsyncIterable<Buffer>): Promise<void> {
    for await (const buf of body) {
      if (this.offset + buf.length > this.limit) throw new ChunkyError('BODY_TOO_LARGE', `this upload ends at byte ${this.limit}: the PATCH sent more`)
      let rest = buf
      while (rest.length > 0) {
        if (this.reserved === 0) await this.reserve()
        const room = this.session.chunkSize - this.filled
        const piece = rest.length <= room ? rest : rest.subarray(0, room)
        this.add(piece)
        rest = rest.subarray(piece.length)
        if (this.filled === this.session.chunkSize) await this.cut()
      }
    }
  }

  /**
   * Waits for the chunks in flight; ships the last, short chunk once the length is reached (the master
   * then commits the file); saves the rest as the tail. Throws if a chunk could not be made durable:
   * the tail on disk is then left as it was, so the offset answered stays a durable one.
   */
  async finish(): Promise<void> {
    const length = this.session.length
    if (this.filled > 0 && length !== null && this.offset === length) await this.cut()
    await Promise.all(this.inFlight)
    if (this.failed) throw this.failed
    if (this.committed || this.filled === 0) await this.tails.drop(this.session.id)
    else await this.tails.save(this.session.id, this.base, this.session.epoch, this.parts)
  }

  /** Gives back the budget of the chunk filling now (call once done with the upload, finished or not). */
  release(): void {
    this.budget.release(this.reserved)
    this.reserved = 0
  }

  /** The chunk from `base` on is at most a chunk, and never past the limit. */
  private async reserve(): Promise<void> {
    const bytes = Math.min(this.session.chunkSize, this.limit - this.base)
    await this.budget.acquire(bytes)
    this.reserved = bytes
  }

  private add(piece: Buffer): void {
    this.parts.push(piece)
    this.hash.update(piece)
    this.filled += piece.length
  }

  private async cut(): Promise<void> {
    const chunk: CutChunk = {index: this.base / this.session.chunkSize, parts: this.parts, size: this.filled, sha256: this.hash.digest('hex'), reserved: this.reserved}
    this.parts = []
    this.hash = createHash('sha256')
    this.base += this.filled
    this.filled = 0
    this.reserved = 0
    while (this.inFlight.size >= TUS_CHUNKS_IN_FLIGHT && !this.failed) await Promise.race(this.inFlight)
    if (this.failed) {
      this.budget.release(chunk.reserved)
      throw this.failed
    }
    const shipping: Promise<void> = this.ship(chunk)
      .catch((err: unknown) => {
        this.failed ??= err
      })
      .finally(() => {
        this.budget.release(chunk.reserved)
        this.inFlight.delete(shipping)
      })
    this.inFlight.add(shipping)
  }

  private async ship(chunk: CutChunk): Promise<void> {
    const {id, epoch} = this.session
    const exclude: string[] = []
    let lastError: unknown
    for (let attempt = 0; attempt < CHUNK_TRIES; attempt++) {
      const planned = await this.master.planChunk(id, {node: this.ctx.id, epoch, index: chunk.index, size: chunk.size, sha256: chunk.sha256, exclude})
      if (!planned.skip) {
        const result = await this.write(planned, chunk.parts)
        for (const failure of result.failed) if (!exclude.includes(failure.node)) exclude.push(failure.node)
      }
      try {
        const session = await this.master.advance(id, {node: this.ctx.id, epoch, index: chunk.index})
        // Answers to chunks written at once arrive in any order: keep the furthest.
        if (session.state === 'done' || (this.session.state === 'open' && session.offset > this.session.offset)) this.session = session
        return
      } catch (err) {
        if ((err as ChunkyError).code !== 'NOT_DURABLE') throw err
        lastError = err
      }
    }
    throw lastError
  }

  /** The chunk here and down the chain when this node is first in it (as the master places it), else to the first target. */
  private async write(planned: PlannedChunk, parts: readonly Buffer[]): Promise<WriteResult> {
    const [first, ...rest] = planned.targets
    if (!first) throw new ChunkyError('NO_NODES', 'the master placed the chunk nowhere')
    if (first.id === this.ctx.id) {
      const grant = checkGrant(this.ctx, planned.grant, planned.chunkId, planned.version)
      const result = await storeAndForward(this.ctx, {grantText: planned.grant, grant, chain: rest}, iterate(parts), {gone: () => false, abort: () => {}})
      return result ?? {stored: [], failed: planned.targets.map((t) => ({node: t.id, error: 'aborted'}))}
    }
    const forward = new ChainForwarder({chain: planned.targets, path: `/chunks/${planned.chunkId}/${planned.version}`, grant: planned.grant, size: planned.size, token: this.ctx.token, ca: this.ctx.ca})
    for (const part of parts) await forward.write(part)
    forward.end()
    return forward.result
  }
}

async function* iterate(parts: readonly Buffer[]): AsyncGenerator<Buffer> {
  yield* parts
}
