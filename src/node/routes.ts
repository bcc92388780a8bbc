import type {IncomingMessage, ServerResponse} from 'node:http'
import {type Access, authorize, bearer} from '../http/auth.js'
import {applyCors} from '../http/cors.js'
import {guardBodyRate} from '../http/limits.js'
import {pathSegments, sendError, sendJson, toChunkyError} from '../http/server.js'
import {ChunkId, ChunkyError, fileNameProblem, shareCovers, verifyShare} from '../protocol/index.js'
import {sendMetrics} from '../telemetry/metrics.js'
import type {NodeContext} from './context.js'
import {handlePutChunk} from './put-chunk.js'
import {handleGetChunk, handleTransfer} from './serve-chunks.js'
import {handleTus} from './tus.js'
import {handleChunkRange, handleFileRead} from './serve-files.js'

/**
 * The node's HTTP surface (src/protocol/api.ts). Every route but GET /healthz needs a credential:
 * reads any client one, chunk writes rw (or node, down the chain), transfers node.
 */
export function nodeRequestHandler(ctx: NodeContext): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    route(ctx, req, res).catch((err: unknown) => {
      const what = `${req.method} ${(req.url ?? '').slice(0, 200)}`
      const refused = toChunkyError(err)
      ctx.metrics.requestErrors.inc({status: refused.status, code: refused.code})
      if (!(err instanceof ChunkyError)) ctx.log.error({event: 'http.failed', request: what, error: (err as Error)?.stack ?? String(err)}, `${what} failed: ${(err as Error)?.stack ?? String(err)}`)
      else if (err.status === 401 || err.status === 403) {
        ctx.log.warn({event: 'http.refused', request: what, remote: req.socket.remoteAddress, code: err.code}, `refused ${what}: ${err.message}`) // worth knowing who knocks
      }
      sendError(res, err)
    })
  }
}

async function route(ctx: NodeContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const segments = pathSegments(req)
  if (!segments) throw new ChunkyError('BAD_REQUEST', 'the request path is not valid percent-encoding')
  const method = req.method ?? 'GET'
  if (applyCors(ctx.cors, req, res)) return // a preflight, answered without a credential (browsers send none)
  if (method === 'GET' && segments.length === 1 && segments[0] === 'healthz') {
    sendJson(res, 200, {ok: true, role: 'node', id: ctx.id})
    return
  }
  const authorize = (access: Access) => checkCredential(ctx, req, access)
  if (method === 'GET' && segments.length === 1 && segments[0] === 'metrics') {
    authorize('read') // any client credential the master welcomed this node with, the read-only one too
    return sendMetrics(res, ctx.metrics.registry)
  }
  if (ctx.closing) throw new ChunkyError('NODE_UNREACHABLE', 'this node is shutting down: use another node')

  if (segments[0] === 'tus' && ctx.tus) return handleTus(ctx, ctx.tus, req, res, segments.slice(1))
  if (segments[0] === 'chunks' && segments.length === 3 && (method === 'PUT' || method === 'GET')) {
    authorize(method === 'PUT' ? 'chunk-write' : 'read')
    const {chunkId, version} = parseReplicaPath(segments[1]!, segments[2]!)
    if (method === 'GET') return handleGetChunk(ctx, res, chunkId, version)
    guardBodyRate(req, ctx.limits, (why) =>
      ctx.log.warn({event: 'chunk.write_cut', chunkId, version, remote: req.socket.remoteAddress, reason: why}, `cut the write of chunk ${chunkId} v${version} from ${req.socket.remoteAddress}: ${why}`),
    )
    return handlePutChunk(ctx, req, res, chunkId, version)
  }
  if (segments[0] === 'v1' && (method === 'GET' || method === 'HEAD')) {
    // Playing files (serve-files.ts): with a read credential, or behind a share link (no credential).
    try {
      if (segments[1] === 'files' && segments.length >= 3) {
        authorize('read')
        return await handleFileRead(ctx, req, res, servedName(segments.slice(2)), {kind: 'credential'})
      }
      if (segments[1] === 'share' && segments.length >= 4) {
        const key = ctx.link.grantKey
        if (!key) throw new ChunkyError('MASTER_UNREACHABLE', 'this node has not heard from the master yet, so it cannot check share links: try again shortly')
        const share = verifyShare(segments[2]!, key)
        const name = servedName(segments.slice(3))
        if (!shareCovers(share, name)) throw new ChunkyError('FORBIDDEN', 'this share link is not for that name')
        return await handleFileRead(ctx, req, res, name, {kind: 'share', expiresAtS: share.exp})
      }
    } catch (err) {
      if (!res.headersSent) ctx.metrics.fileRequests.inc({status: toChunkyError(err).status}) // refusals count by status too
      throw err
    }
    if (segments[1] === 'chunks' && segments.length === 4 && method === 'GET') {
      authorize('node-read') // another node reading blocks for a file read, or a client
      const {chunkId, version} = parseReplicaPath(segments[2]!, segments[3]!)
      return handleChunkRange(ctx, req, res, chunkId, version)
    }
  }
  if (segments[0] === 'transfer' && segments.length === 1 && method === 'POST') {
    const kind = authorize('node')
    return handleTransfer(ctx, req, res, kind === 'node') // a node needs the master's transfer grant; the cluster secret is trusted
  }
  authorize('read') // strangers learn nothing, not even which routes exist
  throw new ChunkyError('NOT_FOUND', `no route for ${method} ${(req.url ?? '').split('?')[0]!.slice(0, 200)}`)
}

/** authorize(), except that a credential this node cannot judge yet (never welcomed by the master) is "try again", not "wrong". */
function checkCredential(ctx: NodeContext, req: IncomingMessage, access: Access) {
  try {
    return authorize(req, ctx.credentials(), access)
  } catch (err) {
    if (!ctx.link.grantKey && (err as ChunkyError).code === 'UNAUTHORIZED' && bearer(req) !== undefined) {
      throw new ChunkyError('MASTER_UNREACHABLE', 'this node has not heard from the master yet, so it cannot check credentials: try again shortly')
    }
    throw err
  }
}

/** A file name from its path segments (each percent-encoded, or "/" left unencoded: the same name). */
function servedName(segments: string[]): string {
  const name = segments.join('/')
  const problem = fileNameProblem(name)
  if (problem) throw new ChunkyError('BAD_NAME', problem)
  return name
}

function parseReplicaPath(id: string, versionText: string): {chunkId: string; version: number} {
  const chunkId = ChunkId.safeParse(id)
  if (!chunkId.success) throw new ChunkyError('BAD_REQUEST', 'expected /chunks/<24 hex chunk id>/<version>')
  const version = /^[1-9][0-9]{0,15}$/.test(versionText) ? Number(versionText) : NaN
  if (!Number.isSafeInteger(version)) throw new ChunkyError('BAD_REQUEST', 'a chunk version is a positive integer')
  return {chunkId: chunkId.data, version}
}
