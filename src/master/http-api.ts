import type {IncomingMessage, ServerResponse} from 'node:http'
import {type Access, authorize} from '../http/auth.js'
import {pathSegments, queryParam, readJson, sendError, sendJson, toChunkyError} from '../http/server.js'
import {
  type BalanceReport,
  BadReplicaReport,
  type BatchEntryError,
  ChunkyError,
  CommitBatchRequest,
  type CredentialHashes,
  fileNameProblem,
  MAX_JSON_BODY,
  type MasterHealth,
  RemoveBatchRequest,
  ReplanRequest,
  UploadPlanBatchRequest,
  UploadPlanRequest,
  ShareRequest,
  UploadShareRequest,
  TusAdvanceRequest,
  TusChunkRequest,
  TusClaimRequest,
  TusConcatRequest,
  TusCreateRequest,
  TusId,
} from '../protocol/index.js'
import {sendMetrics} from '../telemetry/metrics.js'
import type {MasterContext} from './context.js'
import {type Dashboard, isDashboardPath} from './dashboard/index.js'
import {drainNode, forgetNode, undrainNode} from './node-admin.js'
import {createShare, createUploadShare} from './share.js'
import type {TusSessions} from './tus-sessions.js'
import type {Uploads} from './uploads.js'
import type {Views} from './views.js'

export interface HttpApiDeps {
  ctx: MasterContext
  uploads: Uploads
  tus: TusSessions
  views: Views
  /** Accepted credentials by kind (credentials.ts). */
  credentials: CredentialHashes
  /** The web page and its live stream (dashboard/). */
  dashboard: Dashboard
  /** Balance of the nodes and moves under way (repair-loop.ts). */
  balance: () => BalanceReport
  /** Resolves once what the request changed is in the metadata store (meta-sync.ts); answers wait for it. */
  persist: () => Promise<void>
  /** This master's advertised URL (it leads). */
  leader: string
}

/** The master's HTTP routes (src/protocol/api.ts). Every error becomes a response in sendError. */
export function createHttpApi(deps: HttpApiDeps): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    route(deps, req, res).catch((err: unknown) => {
      if (!(err instanceof ChunkyError)) deps.ctx.log.error({event: 'http.failed', method: req.method, url: req.url, error: (err as Error)?.message ?? String(err)}, `${req.method} ${req.url} failed: ${(err as Error)?.message ?? err}`)
      const refused = toChunkyError(err)
      deps.ctx.metrics.requestErrors.inc({status: refused.status, code: refused.code})
      sendError(res, err)
    })
  }
}

async function route(deps: HttpApiDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const {ctx, uploads, views} = deps
  const method = req.method ?? 'GET'
  const segments = pathSegments(req)
  if (!segments) throw new ChunkyError('BAD_REQUEST', 'the request path is not valid percent-encoding')
  const [first, second, third, fourth, ...more] = segments

  if (method === 'GET' && first === 'healthz' && segments.length === 1) {
    return sendJson(res, 200, {ok: true, role: 'leader', epoch: ctx.leadership.epoch, leader: deps.leader} satisfies MasterHealth)
  }
  // The dashboard page holds no data (it asks /api/live with the credential the user types in): no credential.
  if ((method === 'GET' || method === 'HEAD') && isDashboardPath(segments)) return deps.dashboard.servePage(req, res, segments)
  if (method === 'GET' && first === 'metrics' && segments.length === 1) {
    authorize(req, deps.credentials, 'read') // Prometheus scrapes with the read-only credential
    return sendMetrics(res, ctx.metrics.registry)
  }
  if (first !== 'api') {
    authorize(req, deps.credentials, 'read') // strangers learn nothing, not even which routes exist
    throw notFound(req)
  }
  // A node serving a file read (issue 12) asks for the manifest with its own credential.
  authorize(req, deps.credentials, method === 'GET' && second === 'files' && segments.length >= 3 ? 'node-read' : accessFor(method, second, third))

  if (second === 'nodes' && segments.length === 2 && method === 'GET') return sendJson(res, 200, views.nodeList())
  if (second === 'nodes' && third && segments.length === 4 && method === 'POST' && (fourth === 'drain' || fourth === 'undrain')) {
    await discardBody(req)
    if (fourth === 'drain') drainNode(ctx, third)
    else undrainNode(ctx, third)
    return answerPersisted(deps, res, views.nodeInfo(third))
  }
  if (second === 'nodes' && third && segments.length === 3 && method === 'DELETE') return answerPersisted(deps, res, forgetNode(ctx, third))
  if (second === 'rebalance' && segments.length === 2 && method === 'GET') return sendJson(res, 200, deps.balance())
  if (second === 'live' && segments.length === 2 && method === 'GET') {
    const file = queryParam(req, 'file')
    if (file !== undefined) checkName(file)
    return deps.dashboard.openLive(req, res, file)
  }
  if (second === 'status' && segments.length === 2 && method === 'GET') {
    const name = queryParam(req, 'name')
    if (name !== undefined) checkName(name)
    return sendJson(res, 200, views.status(name))
  }
  if (second === 'uploads') {
    if (segments.length === 2 && method === 'POST') {
      const request = await readJson(req, UploadPlanRequest)
      return answerPersisted(deps, res, uploads.plan(request))
    }
    // A folder's files in one request each way; every entry is planned or committed as on its own.
    if (third === 'batch' && segments.length === 3 && method === 'POST') {
      const {uploads: requests} = await readJson(req, UploadPlanBatchRequest)
      return answerPersisted(deps, res, {plans: requests.map((request) => eachOnItsOwn(() => uploads.plan(request)))})
    }
    if (third === 'commit' && segments.length === 3 && method === 'POST') {
      const {uploadIds} = await readJson(req, CommitBatchRequest)
      return answerPersisted(deps, res, {results: uploadIds.map((uploadId) => eachOnItsOwn(() => uploads.commit(uploadId)))})
    }
    if (third && segments.length === 4 && method === 'POST' && fourth === 'replan') {
      const request = await readJson(req, ReplanRequest)
      return answerPersisted(deps, res, uploads.replan(third, request))
    }
    if (third && segments.length === 4 && method === 'POST' && fourth === 'commit') {
      await discardBody(req)
      return answerPersisted(deps, res, uploads.commit(third))
    }
  }
  if (second === 'tus') return routeTus(deps, req, res, method, segments.slice(2))
  if (second === 'files') {
    if (segments.length === 2 && method === 'GET') {
      // ?prefix=P&chunks=1: every file under P with its chunk checksums, in one answer (chunky sync)
      const prefix = queryParam(req, 'prefix')
      if (queryParam(req, 'chunks') === '1') return sendJson(res, 200, views.filesUnder(prefix ?? ''))
      if (prefix !== undefined) throw new ChunkyError('BAD_REQUEST', 'prefix= needs chunks=1')
      return sendJson(res, 200, views.fileList())
    }
    // A name is one URL-encoded segment; a client that left its "/" unencoded still means the same file.
    const name = [third, fourth, ...more].filter((s) => s !== undefined).join('/')
    if (segments.length >= 3 && method === 'GET') return sendJson(res, 200, views.manifest(checkName(name)))
    if (segments.length >= 3 && method === 'DELETE') return answerPersisted(deps, res, uploads.remove(checkName(name)))
    // sync --delete: many names in one request, each removed as on its own
    if (third === 'remove' && segments.length === 3 && method === 'POST') {
      const {names} = await readJson(req, RemoveBatchRequest)
      return answerPersisted(deps, res, {results: names.map((each) => eachOnItsOwn(() => uploads.remove(checkName(each))))})
    }
  }
  if (second === 'share' && segments.length === 3 && third === 'upload' && method === 'POST') {
    return sendJson(res, 200, createUploadShare(ctx, await readJson(req, UploadShareRequest)))
  }
  if (second === 'share' && segments.length === 2 && method === 'POST') {
    // A share link is a read: anyone who may read the file may hand out a link to it.
    return sendJson(res, 200, createShare(ctx, views, await readJson(req, ShareRequest)))
  }
  if (second === 'bad-replica' && segments.length === 2 && method === 'POST') {
    const report = await readJson(req, BadReplicaReport)
    // Not trusted blindly: the node re-hashes the replica and answers `corrupt` only if it is.
    const sent = ctx.nodes.send(report.node, {type: 'verify', chunkId: report.chunkId, version: report.version})
    ctx.log.info(
      {event: 'replica.reported_bad', nodeId: report.node, chunkId: report.chunkId, version: report.version, reason: report.reason, verifyAsked: sent},
      `a reader reported chunk ${report.chunkId} v${report.version} on ${report.node} as bad (${report.reason}): ` +
        (sent ? 'asked the node to verify it' : 'node not connected, it will be checked when it reports'),
    )
    return sendJson(res, 200, {ok: true})
  }
  throw notFound(req)
}

/** The session routes nodes call for tus uploads (protocol/tus.ts). */
async function routeTus(deps: HttpApiDeps, req: IncomingMessage, res: ServerResponse, method: string, rest: string[]): Promise<void> {
  const {tus} = deps
  if (rest.length === 0 && method === 'POST') return answerPersisted(deps, res, tus.create(await readJson(req, TusCreateRequest)))
  if (rest.length === 1 && rest[0] === 'concat' && method === 'POST') return answerPersisted(deps, res, tus.concat(await readJson(req, TusConcatRequest)))
  const id = TusId.safeParse(rest[0])
  if (!id.success) throw new ChunkyError('BAD_REQUEST', 'expected /api/tus/<32 hex id>')
  if (rest.length === 1 && method === 'GET') return sendJson(res, 200, tus.get(id.data))
  if (rest.length === 1 && method === 'DELETE') {
    tus.terminate(id.data)
    return answerPersisted(deps, res, {ok: true})
  }
  if (rest.length === 2 && method === 'POST' && rest[1] === 'claim') return answerPersisted(deps, res, tus.claim(id.data, await readJson(req, TusClaimRequest)))
  if (rest.length === 2 && method === 'POST' && rest[1] === 'chunk') return answerPersisted(deps, res, tus.planChunk(id.data, await readJson(req, TusChunkRequest)))
  if (rest.length === 2 && method === 'POST' && rest[1] === 'advance') return answerPersisted(deps, res, tus.advance(id.data, await readJson(req, TusAdvanceRequest)))
  throw new ChunkyError('NOT_FOUND', `no such route: ${method} ${(req.url ?? '/').split('?')[0]}`)
}

/** Answers a change once it is in the metadata store. */
async function answerPersisted(deps: HttpApiDeps, res: ServerResponse, body: unknown): Promise<void> {
  await deps.persist()
  sendJson(res, 200, body)
}

/** One entry of a batch: its refusal is its answer, and the other entries go on. */
function eachOnItsOwn<T>(call: () => T): T | BatchEntryError {
  try {
    return call()
  } catch (err) {
    if (!(err instanceof ChunkyError)) throw err
    return {error: {code: err.code, message: err.message}}
  }
}

/** Reading (and reporting a bad replica, which a download does) needs `read`; anything that changes files needs `write`. */
function accessFor(method: string, resource: string | undefined, sub?: string): Access {
  if (resource === 'share' && sub === 'upload') return 'write' // an upload link lets its holder write
  if (resource === 'uploads') return 'write'
  if (resource === 'tus') return 'node' // only nodes keep tus sessions; clients speak tus to a node
  if (resource === 'files' && method !== 'GET') return 'write' // removing, one or many
  if (resource === 'nodes' && method !== 'GET') return 'write' // drain, undrain, forget
  return 'read'
}

function checkName(name: string): string {
  const problem = fileNameProblem(name)
  if (problem) throw new ChunkyError('BAD_NAME', problem)
  return name
}

function notFound(req: IncomingMessage): ChunkyError {
  return new ChunkyError('NOT_FOUND', `no such route: ${req.method} ${(req.url ?? '/').split('?')[0]}`)
}

/** Reads and ignores a small body (commit takes `{}`), refusing a large one. */
async function discardBody(req: IncomingMessage): Promise<void> {
  let seen = 0
  for await (const part of req as AsyncIterable<Buffer>) {
    seen += part.length
    if (seen > MAX_JSON_BODY) throw new ChunkyError('BODY_TOO_LARGE', `JSON bodies are at most ${MAX_JSON_BODY} bytes`)
  }
}
