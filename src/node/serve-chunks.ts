import type {IncomingMessage, ServerResponse} from 'node:http'
import {pipeline} from 'node:stream/promises'
import {readJson} from '../http/server.js'
import {
  ChunkyError,
  HEADER_GRANT,
  HEADER_SHA256,
  HEADER_VERSION,
  encodeTransferFrame,
  TRANSFER_CONTENT_TYPE,
  TransferRequest,
  verifyTransferGrant,
} from '../protocol/index.js'
import type {ChunkStore} from '../storage/index.js'
import type {NodeContext} from './context.js'

/** GET /chunks/:chunkId/:version: exactly that version's bytes, or 404; never another version. */
export async function handleGetChunk(ctx: NodeContext, res: ServerResponse, chunkId: string, version: number): Promise<void> {
  const opened = await ctx.store.open(chunkId, version) // CHUNK_NOT_FOUND -> 404 via the caller's sendError
  const timer = ctx.metrics.chunkReadSeconds.startTimer()
  res.writeHead(200, {
    'content-type': 'application/octet-stream',
    'content-length': opened.size,
    [HEADER_SHA256]: opened.sha256,
    [HEADER_VERSION]: String(version),
  })
  await pipeline(opened.stream, res).then(
    () => {
      timer()
      ctx.metrics.downloadBytes.inc(opened.size)
    },
    (err: NodeJS.ErrnoException) => {
      // a reader that goes away is its own business (pipeline closed the file); anything else is worth a line
      if (err.code !== 'ERR_STREAM_PREMATURE_CLOSE') ctx.log.warn({event: 'chunk.send_failed', chunkId, version, error: err.message}, `sending chunk ${chunkId} v${version} failed: ${err.message}`)
    },
  )
}

/**
 * POST /transfer: the replicas asked for that this node holds, as transfer frames (src/protocol/api.ts)
 * (repair, issue 3). Missing replicas are skipped: the puller notices. Each replica is read from disk
 * into one of a few buffers reused for the whole transfer (fresh 1 MiB buffers for every read were
 * half of a source's CPU in garbage collection), and a buffer is read into again only once the socket
 * has taken its bytes.
 */
export async function handleTransfer(ctx: NodeContext, req: IncomingMessage, res: ServerResponse, grantRequired: boolean): Promise<void> {
  const wanted = await readJson(req, TransferRequest)
  checkTransferGrant(ctx, req, wanted, grantRequired)
  res.useChunkedEncodingByDefault = false // the body ends with the connection, so the puller reads frames straight off the socket
  res.writeHead(200, {'content-type': TRANSFER_CONTENT_TYPE})
  const buffers = new SendBuffers(res)
  try {
    for (const {chunkId, version} of wanted.replicas) {
      if (res.destroyed) break
      if (!ctx.store.has(chunkId, version)) continue
      const sent = await sendReplica(ctx.store, buffers, chunkId, version).catch((err: Error) => {
        if ((err as {code?: string}).code === 'CHUNK_NOT_FOUND') return 0 // deleted meanwhile: skip it like a missing one
        throw err
      })
      ctx.metrics.transferBytes.inc(sent)
    }
    buffers.send(encodeTransferFrame())
    await buffers.drained()
    res.end()
  } catch (err) {
    ctx.log.warn({event: 'transfer.ended_early', error: (err as Error).message}, `transfer to a puller ended early: ${(err as Error).message}`)
    res.destroy() // a frame cut short: the puller sees the transfer broken
  }
}

/** The frame of one replica; resolves with its size once every byte is read (and being sent). */
async function sendReplica(store: ChunkStore, buffers: SendBuffers, chunkId: string, version: number): Promise<number> {
  const opened = await store.open(chunkId, version)
  try {
    // `size` is what is on disk now; the puller checks it and the SHA-256 against the master's record anyway
    buffers.send(encodeTransferFrame({chunkId, version, size: opened.size, sha256: opened.sha256}))
    for (let position = 0; position < opened.size; ) {
      const buffer = await buffers.take()
      const read = await opened.read(buffer, position).catch((err: Error) => {
        buffers.give(buffer)
        throw err
      })
      if (read === 0) throw new ChunkyError('INTERNAL', `chunk ${chunkId} v${version} ended at ${position} of ${opened.size} bytes`)
      position += read
      buffers.send(buffer.subarray(0, read), buffer)
    }
    return opened.size
  } finally {
    opened.stream.destroy() // closes the file
  }
}

const SEND_BUFFERS = 4
const SEND_BUFFER_BYTES = 1024 * 1024

/**
 * The read buffers of one transfer and the writes in flight on its response. `take` waits while every
 * buffer is being sent (backpressure: disk reads go only as fast as the socket); once the puller is
 * gone every wait fails, since the write callbacks of a closed response may never come.
 */
class SendBuffers {
  private readonly free: Buffer[] = []
  private waiting: {resolve: () => void; reject: (err: Error) => void}[] = []
  private writing = 0
  private gone: Error | undefined

  constructor(private readonly res: ServerResponse) {
    for (let i = 0; i < SEND_BUFFERS; i++) this.free.push(Buffer.allocUnsafeSlow(SEND_BUFFER_BYTES))
    res.once('close', () => {
      this.gone ??= new Error('the puller went away')
      this.wake()
    })
  }

  async take(): Promise<Buffer> {
    while (this.free.length === 0) await this.wait()
    return this.free.pop()!
  }

  give(buffer: Buffer): void {
    this.free.push(buffer)
    this.wake()
  }

  /** Writes `bytes`; `buffer`, if given, goes back to the free ones once the socket has taken them. A failure shows in the next wait. */
  send(bytes: Buffer, buffer?: Buffer): void {
    this.writing++
    this.res.write(bytes, (err) => {
      this.writing--
      if (err) this.gone ??= err
      if (buffer) this.give(buffer)
      else this.wake()
    })
  }

  /** Resolves once every write so far is done. */
  async drained(): Promise<void> {
    while (this.writing > 0 || this.gone) await this.wait()
  }

  private wait(): Promise<void> {
    if (this.gone) return Promise.reject(this.gone)
    return new Promise((resolve, reject) => this.waiting.push({resolve, reject}))
  }

  private wake(): void {
    const waiting = this.waiting
    this.waiting = []
    for (const w of waiting) this.gone ? w.reject(this.gone) : w.resolve()
  }
}

/**
 * A transfer is served only for the master's grant naming this node as source and covering every
 * replica asked for (a node credential alone does not let a node read arbitrary chunks).
 */
function checkTransferGrant(ctx: NodeContext, req: IncomingMessage, wanted: TransferRequest, required: boolean): void {
  const text = req.headers[HEADER_GRANT]
  if (typeof text !== 'string' || text === '') {
    if (!required) return
    throw new ChunkyError('FORBIDDEN', `a transfer needs the master's transfer grant in ${HEADER_GRANT}`)
  }
  const key = ctx.link.grantKey
  if (!key) throw new ChunkyError('MASTER_UNREACHABLE', 'not connected to the master yet: try again shortly')
  const grant = verifyTransferGrant(text, key)
  if (grant.source !== ctx.id) throw new ChunkyError('FORBIDDEN', `the transfer grant is for source ${grant.source}, not this node (${ctx.id})`)
  const granted = new Set(grant.replicas.map((r) => `${r.chunkId}.${r.version}`))
  const extra = wanted.replicas.find((r) => !granted.has(`${r.chunkId}.${r.version}`))
  if (extra) throw new ChunkyError('FORBIDDEN', `the transfer grant does not cover chunk ${extra.chunkId} v${extra.version}`)
}
