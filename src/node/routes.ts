import type {IncomingMessage, ServerResponse} from 'node:http'
import {pathSegments, requireToken, sendError, sendJson} from '../http/server.js'
import {ChunkId, ChunkyError} from '../protocol/index.js'
import type {NodeContext} from './context.js'
import {handlePutChunk} from './put-chunk.js'
import {handleGetChunk, handleTransfer} from './serve-chunks.js'

/** The node's HTTP surface (src/protocol/api.ts). Every route but GET /healthz needs the cluster token. */
export function nodeRequestHandler(ctx: NodeContext): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    route(ctx, req, res).catch((err: unknown) => {
      const what = `${req.method} ${(req.url ?? '').slice(0, 200)}`
      if (!(err instanceof ChunkyError)) ctx.log(`${what} failed: ${(err as Error)?.stack ?? String(err)}`)
      else if (err.status === 401 || err.status === 403) ctx.log(`refused ${what}: ${err.message}`) // worth knowing who knocks
      sendError(res, err)
    })
  }
}

async function route(ctx: NodeContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const segments = pathSegments(req)
  if (!segments) throw new ChunkyError('BAD_REQUEST', 'the request path is not valid percent-encoding')
  const method = req.method ?? 'GET'
  if (method === 'GET' && segments.length === 1 && segments[0] === 'healthz') {
    sendJson(res, 200, {ok: true, role: 'node', id: ctx.id})
    return
  }
  requireToken(req, ctx.token)
  if (ctx.closing) throw new ChunkyError('NODE_UNREACHABLE', 'this node is shutting down: use another node')

  if (segments[0] === 'chunks' && segments.length === 3) {
    const {chunkId, version} = parseReplicaPath(segments[1]!, segments[2]!)
    if (method === 'PUT') return handlePutChunk(ctx, req, res, chunkId, version)
    if (method === 'GET') return handleGetChunk(ctx, res, chunkId, version)
  }
  if (segments[0] === 'transfer' && segments.length === 1 && method === 'POST') return handleTransfer(ctx, req, res)
  throw new ChunkyError('NOT_FOUND', `no route for ${method} ${(req.url ?? '').split('?')[0]!.slice(0, 200)}`)
}

function parseReplicaPath(id: string, versionText: string): {chunkId: string; version: number} {
  const chunkId = ChunkId.safeParse(id)
  if (!chunkId.success) throw new ChunkyError('BAD_REQUEST', 'expected /chunks/<24 hex chunk id>/<version>')
  const version = /^[1-9][0-9]{0,15}$/.test(versionText) ? Number(versionText) : NaN
  if (!Number.isSafeInteger(version)) throw new ChunkyError('BAD_REQUEST', 'a chunk version is a positive integer')
  return {chunkId: chunkId.data, version}
}
