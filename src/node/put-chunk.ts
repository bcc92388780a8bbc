import {createReadStream} from 'node:fs'
import type {IncomingMessage, ServerResponse} from 'node:http'
import {sendError, sendJson, toChunkyError} from '../http/server.js'
import {
  ChainHeader,
  ChunkyError,
  type GrantPayload,
  HEADER_CHAIN,
  HEADER_GRANT,
  type ReplicaInfo,
  type Target,
  verifyGrant,
  type WriteResult,
} from '../protocol/index.js'
import {READ_PIECE_BYTES} from '../storage/index.js'
import type {FileDigest} from '../util/file-digest.js'
import {formatBytes} from '../util/parse.js'
import {ChainForwarder} from './chain-forward.js'
import type {NodeContext} from './context.js'

/** A chunk's bytes: a body arriving, or a file this node fsynced and hashed already (a tus upload's, tus-upload.ts). */
export type ChunkSource = {body: AsyncIterable<Buffer>} | {file: string; digest: FileDigest}

export interface CheckedWrite {
  grantText: string
  grant: GrantPayload
  chain: Target[]
}

/** Refusals that mean "these bytes are wrong": the client gets the error itself, not a WriteResult. */
const BAD_BYTES = new Set(['CHECKSUM_MISMATCH', 'LENGTH_MISMATCH', 'CHUNK_TOO_LARGE'])

/**
 * PUT /chunks/:chunkId/:version (issue 2 "Node"): everything about the request is checked before a
 * byte of the body is read; then the body goes to disk and down the chain at once, and the answer
 * lists which nodes hold the chunk durably (acked by the master) and which failed.
 */
export async function handlePutChunk(
  ctx: NodeContext,
  req: IncomingMessage,
  res: ServerResponse,
  chunkId: string,
  version: number,
): Promise<void> {
  const checked = checkWrite(ctx, req, chunkId, version)
  let result: WriteResult | undefined
  try {
    // destroyOnReturn: false keeps the socket usable for an error answer if the disk fails mid-body.
    result = await storeAndForward(ctx, checked, {body: req.iterator({destroyOnReturn: false})}, {gone: () => req.destroyed && !req.complete, abort: () => req.destroy()})
  } catch (err) {
    const refused = toChunkyError(err)
    ctx.metrics.requestErrors.inc({status: refused.status, code: refused.code})
    sendError(res, err)
    return
  }
  if (result) sendJson(res, 200, result)
}

/**
 * Writes one granted chunk here and down its chain at once (the chunk PUT, and a tus upload's
 * chunks on the node that took them). Resolves with which nodes hold it durably (acked by the
 * master) and which failed; undefined when the sender went away mid-body. Throws when the bytes are
 * refused or the disk fails, once the downstream nodes cleaned up.
 */
export async function storeAndForward(
  ctx: NodeContext,
  checked: CheckedWrite,
  source: ChunkSource,
  sender: {gone(): boolean; abort(): void},
): Promise<WriteResult | undefined> {
  const {grantText, grant, chain} = checked
  const {chunkId, version} = grant
  const wanted: ReplicaInfo = {chunkId, version, size: grant.size, sha256: grant.sha256}
  const forward =
    chain.length > 0
      ? new ChainForwarder({chain, path: `/chunks/${chunkId}/${version}`, grant: grantText, size: grant.size, token: ctx.token, ca: ctx.ca})
      : undefined
  const abort = () => {
    forward?.abort('the entry node is shutting down')
    sender.abort()
  }

  const timer = ctx.metrics.chunkWriteSeconds.startTimer()
  return ctx.inflight.run(abort, async () => {
    let stored: ReplicaInfo
    try {
      if ('body' in source) {
        stored = await ctx.store.write(wanted, tee(source.body, forward))
      } else {
        const sending = forward ? sendFile(source.file, forward) : undefined
        stored = await ctx.store.adopt(wanted, source.file, source.digest)
        await sending
      }
    } catch (err) {
      if (sender.gone()) {
        forward?.abort() // the client went away mid-body: the store removed its temp file; nobody to answer
        ctx.log.info({event: 'chunk.write_aborted', chunkId, version}, `write of chunk ${chunkId} v${version} aborted: the sender went away`)
        return undefined
      }
      const code = (err as {code?: string}).code ?? ''
      if (BAD_BYTES.has(code)) {
        await forward?.result // the downstream saw the same bytes and refuses them too: answer once it cleaned up
      } else {
        forward?.abort(`upstream node ${ctx.id} failed`)
      }
      ctx.log.warn({event: 'chunk.refused', chunkId, version, error: (err as Error).message}, `refused chunk ${chunkId} v${version}: ${(err as Error).message}`)
      throw err
    }

    const [unacked, downstream] = await Promise.all([
      ctx.link.confirmStored(stored).then(
        () => undefined,
        // The master refused the replica (its verdict's code), or no answer came: the link is down or changing hands.
        (err: Error) => ({message: err.message, code: err instanceof ChunkyError ? err.code : 'MASTER_UNREACHABLE'}),
      ),
      forward?.result ?? Promise.resolve<WriteResult>({stored: [], failed: []}),
    ])
    const ackError = unacked?.message
    const result: WriteResult = {
      stored: unacked ? [] : [{node: ctx.id, version, sha256: stored.sha256}],
      failed: unacked ? [{node: ctx.id, error: `stored but not acknowledged: ${unacked.message}`, code: unacked.code}] : [],
    }
    result.stored.push(...downstream.stored)
    result.failed.push(...downstream.failed)
    ctx.metrics.storedBytes.inc(stored.size)
    timer()
    ctx.log.info(
      {event: 'chunk.stored', chunkId, version, size: stored.size, chain: chain.map((t) => t.id), stored: result.stored.map((s) => s.node), failed: result.failed.map((f) => f.node), ackError},
      `stored chunk ${chunkId} v${version} (${formatBytes(stored.size)})` +
        (chain.length > 0 ? `, chain: ${result.stored.length} stored, ${result.failed.length} failed` : '') +
        (ackError ? `; not acknowledged: ${ackError}` : ''),
    )
    return result
  })
}

/** Passes every buffer to the disk (by yielding it) and to the next node, waiting on whichever is slower. */
async function* tee(source: AsyncIterable<Buffer>, forward: ChainForwarder | undefined): AsyncGenerator<Buffer> {
  for await (const buf of source) {
    const downstreamFull = forward?.write(buf)
    yield buf // resumes once the file took it
    if (downstreamFull) await downstreamFull // resolves on drain, or when the downstream died and was dropped
  }
  forward?.end()
}

/** The file down the chain, as fast as the next node takes it (a read failure cuts the downstream off). */
export async function sendFile(file: string, forward: ChainForwarder): Promise<void> {
  try {
    for await (const buf of createReadStream(file, {highWaterMark: READ_PIECE_BYTES})) {
      const downstreamFull = forward.write(buf as Buffer)
      if (downstreamFull) await downstreamFull
    }
    forward.end()
  } catch (err) {
    forward.abort(`reading the chunk failed: ${(err as Error).message}`)
  }
}

function checkWrite(ctx: NodeContext, req: IncomingMessage, chunkId: string, version: number): CheckedWrite {
  const grantText = req.headers[HEADER_GRANT]
  if (typeof grantText !== 'string' || grantText === '') {
    throw new ChunkyError('FORBIDDEN', `a write needs the master's grant in ${HEADER_GRANT}: ask the master for an upload plan`)
  }
  const grant = checkGrant(ctx, grantText, chunkId, version)

  const lengthHeader = req.headers['content-length']
  const length = lengthHeader === undefined ? NaN : Number(lengthHeader)
  if (!Number.isSafeInteger(length)) {
    throw new ChunkyError('LENGTH_MISMATCH', `content-length is required and must be the chunk's size (${grant.size})`)
  }
  if (length > grant.size) throw new ChunkyError('CHUNK_TOO_LARGE', `this chunk is ${grant.size} bytes, not ${length}`)
  if (length !== grant.size) throw new ChunkyError('LENGTH_MISMATCH', `this chunk is ${grant.size} bytes, not ${length}`)

  return {grantText, grant, chain: parseChain(req.headers[HEADER_CHAIN], grant, ctx.id)}
}

/** The master's grant for writing chunkId at version on this node, checked (signature, expiry, this node, not superseded). */
export function checkGrant(ctx: NodeContext, grantText: string, chunkId: string, version: number): GrantPayload {
  const key = ctx.link.grantKey
  if (!key) throw new ChunkyError('MASTER_UNREACHABLE', 'not connected to the master yet: try again shortly')
  const grant = verifyGrant(grantText, key)
  ctx.link.checkFence(grant.fence, 'the grant')
  if (grant.chunkId !== chunkId || grant.version !== version) {
    throw new ChunkyError('FORBIDDEN', `the grant is for chunk ${grant.chunkId} v${grant.version}, not ${chunkId} v${version}`)
  }
  if (!grant.nodes.includes(ctx.id)) throw new ChunkyError('FORBIDDEN', `the grant does not name this node (${ctx.id})`)
  ctx.versions.checkWrite(chunkId, version) // a replayed grant for a version this node knows is superseded
  return grant
}

function parseChain(header: string | string[] | undefined, grant: GrantPayload, selfId: string): Target[] {
  if (header === undefined || header === '') return []
  let json: unknown
  try {
    json = JSON.parse(Array.isArray(header) ? header.join(',') : header)
  } catch {
    throw new ChunkyError('BAD_REQUEST', `${HEADER_CHAIN} is not JSON`)
  }
  const parsed = ChainHeader.safeParse(json)
  if (!parsed.success) throw new ChunkyError('BAD_REQUEST', `${HEADER_CHAIN} is not a list of nodes`)
  const seen = new Set([selfId])
  for (const target of parsed.data) {
    if (!grant.nodes.includes(target.id)) throw new ChunkyError('FORBIDDEN', `the grant does not name chain node ${target.id}`)
    if (seen.has(target.id)) throw new ChunkyError('BAD_REQUEST', `${HEADER_CHAIN} names ${target.id} twice`)
    seen.add(target.id)
    const url = URL.canParse(target.url) ? new URL(target.url) : undefined
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      throw new ChunkyError('BAD_REQUEST', `${HEADER_CHAIN}: ${target.id} has no http(s) URL`)
    }
  }
  return parsed.data
}
