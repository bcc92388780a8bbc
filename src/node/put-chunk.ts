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
import {formatBytes} from '../util/parse.js'
import {ChainForwarder} from './chain-forward.js'
import type {NodeContext} from './context.js'

interface CheckedWrite {
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
  const {grantText, grant, chain} = checkWrite(ctx, req, chunkId, version)
  const wanted: ReplicaInfo = {chunkId, version, size: grant.size, sha256: grant.sha256}
  const forward =
    chain.length > 0
      ? new ChainForwarder({chain, path: `/chunks/${chunkId}/${version}`, grant: grantText, size: grant.size, token: ctx.token, ca: ctx.ca})
      : undefined
  const abort = () => {
    forward?.abort('the entry node is shutting down')
    req.destroy()
  }

  const timer = ctx.metrics.chunkWriteSeconds.startTimer()
  await ctx.inflight.run(abort, async () => {
    let stored: ReplicaInfo
    try {
      // destroyOnReturn: false keeps the socket usable for an error answer if the disk fails mid-body.
      stored = await ctx.store.write(wanted, tee(req.iterator({destroyOnReturn: false}), forward))
    } catch (err) {
      if (req.destroyed && !req.complete) {
        forward?.abort() // the client went away mid-body: the store removed its temp file; nobody to answer
        ctx.log.info({event: 'chunk.write_aborted', chunkId, version}, `write of chunk ${chunkId} v${version} aborted: the sender went away`)
        return
      }
      const code = (err as {code?: string}).code ?? ''
      if (BAD_BYTES.has(code)) {
        await forward?.result // the downstream saw the same bytes and refuses them too: answer once it cleaned up
      } else {
        forward?.abort(`upstream node ${ctx.id} failed`)
      }
      ctx.log.warn({event: 'chunk.refused', chunkId, version, error: (err as Error).message}, `refused chunk ${chunkId} v${version}: ${(err as Error).message}`)
      const refused = toChunkyError(err)
      ctx.metrics.requestErrors.inc({status: refused.status, code: refused.code})
      sendError(res, err)
      return
    }

    const [ackError, downstream] = await Promise.all([
      ctx.link.confirmStored(stored).then(
        () => undefined,
        (err: Error) => err.message,
      ),
      forward?.result ?? Promise.resolve<WriteResult>({stored: [], failed: []}),
    ])
    const result: WriteResult = {
      stored: ackError ? [] : [{node: ctx.id, version, sha256: stored.sha256}],
      failed: ackError ? [{node: ctx.id, error: `stored but not acknowledged: ${ackError}`}] : [],
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
    sendJson(res, 200, result)
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

function checkWrite(ctx: NodeContext, req: IncomingMessage, chunkId: string, version: number): CheckedWrite {
  const grantText = req.headers[HEADER_GRANT]
  if (typeof grantText !== 'string' || grantText === '') {
    throw new ChunkyError('FORBIDDEN', `a write needs the master's grant in ${HEADER_GRANT}: ask the master for an upload plan`)
  }
  const key = ctx.link.grantKey
  if (!key) throw new ChunkyError('MASTER_UNREACHABLE', 'not connected to the master yet: try again shortly')
  const grant = verifyGrant(grantText, key)
  if (grant.chunkId !== chunkId || grant.version !== version) {
    throw new ChunkyError('FORBIDDEN', `the grant is for chunk ${grant.chunkId} v${grant.version}, not ${chunkId} v${version}`)
  }
  if (!grant.nodes.includes(ctx.id)) throw new ChunkyError('FORBIDDEN', `the grant does not name this node (${ctx.id})`)
  ctx.versions.checkWrite(chunkId, version) // a replayed grant for a version this node knows is superseded

  const lengthHeader = req.headers['content-length']
  const length = lengthHeader === undefined ? NaN : Number(lengthHeader)
  if (!Number.isSafeInteger(length)) {
    throw new ChunkyError('LENGTH_MISMATCH', `content-length is required and must be the chunk's size (${grant.size})`)
  }
  if (length > grant.size) throw new ChunkyError('CHUNK_TOO_LARGE', `this chunk is ${grant.size} bytes, not ${length}`)
  if (length !== grant.size) throw new ChunkyError('LENGTH_MISMATCH', `this chunk is ${grant.size} bytes, not ${length}`)

  return {grantText, grant, chain: parseChain(req.headers[HEADER_CHAIN], grant, ctx.id)}
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
