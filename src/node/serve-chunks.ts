import type {IncomingMessage, ServerResponse} from 'node:http'
import {pipeline} from 'node:stream/promises'
import {pack as tarPack} from 'tar-stream'
import {readJson, sendError} from '../http/server.js'
import {
  ChunkyError,
  HEADER_GRANT,
  HEADER_SHA256,
  HEADER_VERSION,
  TRANSFER_PAX,
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
 * POST /transfer: a tar stream with one entry per requested replica this node holds (repair, issue 3),
 * named `<chunkId>.<version>` and carrying id, version and SHA-256 in PAX headers. Missing replicas are
 * skipped: the puller notices. Each entry is streamed from disk.
 */
export async function handleTransfer(ctx: NodeContext, req: IncomingMessage, res: ServerResponse, grantRequired: boolean): Promise<void> {
  const wanted = await readJson(req, TransferRequest)
  checkTransferGrant(ctx, req, wanted, grantRequired)
  const tar = tarPack()
  tar.on('error', () => {}) // a puller that leaves: pipeline below reports it
  res.writeHead(200, {'content-type': 'application/x-tar'})
  const sending = pipeline(tar, res)
  sending.catch(() => {}) // awaited below; a puller that leaves must not become an unhandled rejection
  try {
    for (const {chunkId, version} of wanted.replicas) {
      if (res.destroyed) break
      if (!ctx.store.has(chunkId, version)) continue
      await addEntry(ctx.store, tar, chunkId, version).then((bytes) => ctx.metrics.transferBytes.inc(bytes), (err: Error) => {
        if ((err as {code?: string}).code !== 'CHUNK_NOT_FOUND') throw err // deleted meanwhile: skip it like a missing one
      })
    }
    tar.finalize()
  } catch (err) {
    tar.destroy(err as Error)
    sendError(res, err)
  }
  await sending.catch((err: Error) => ctx.log.warn({event: 'transfer.ended_early', error: err.message}, `transfer to a puller ended early: ${err.message}`))
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

type TarPack = ReturnType<typeof tarPack>
type TarEntry = ReturnType<TarPack['entry']>

/** Streams one replica into the tar; resolves with its size once written. */
async function addEntry(store: ChunkStore, tar: TarPack, chunkId: string, version: number): Promise<number> {
  const opened = await store.open(chunkId, version)
  let entryWritten!: (err?: Error | null) => void
  const done = new Promise<void>((resolve, reject) => (entryWritten = (err) => (err ? reject(err) : resolve())))
  done.catch(() => {}) // awaited below unless writing failed first
  const entry = tar.entry(
    {
      name: `${chunkId}.${version}`,
      size: opened.size, // what is on disk now; the puller checks the SHA-256 anyway
      pax: {[TRANSFER_PAX.chunkId]: chunkId, [TRANSFER_PAX.version]: String(version), [TRANSFER_PAX.sha256]: opened.sha256},
    },
    entryWritten,
  )
  // When the puller leaves, pipeline destroys the pack and the pack destroys this entry, which then emits
  // 'error': the callback above already carries that failure, so the event must not crash the node.
  entry.on('error', () => {})
  try {
    for await (const buf of opened.stream as AsyncIterable<Buffer>) {
      if (!entry.write(buf)) await writable(entry, tar) // pulled from disk only as fast as the puller reads
    }
    entry.end(null)
    await done
    return opened.size
  } finally {
    opened.stream.destroy()
  }
}

/** Resolves when the entry takes more bytes; rejects when the tar stream is gone (the puller left). */
function writable(entry: TarEntry, tar: TarPack): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      cleanup()
      resolve()
    }
    const onGone = () => {
      cleanup()
      reject(new Error('the puller went away'))
    }
    const cleanup = () => {
      entry.off('drain', onDrain)
      entry.off('close', onGone)
      tar.off('close', onGone)
    }
    entry.on('drain', onDrain)
    entry.on('close', onGone)
    tar.on('close', onGone)
    if (tar.destroyed) onGone()
  })
}
