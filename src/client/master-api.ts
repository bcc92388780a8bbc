import {setTimeout as sleep} from 'node:timers/promises'
import {z} from 'zod'
import {
  BalanceReport,
  CommitBatch,
  RemoveBatch,
  CommitResult,
  FileList,
  FileManifest,
  ForgetResult,
  NodeInfo,
  NodeInfoList,
  NodeList,
  PlannedChunk,
  PrefixFileList,
  RemoveResult,
  ShareAnswer,
  type ShareRequest,
  type UploadShareRequest,
  StatusDoc,
  UploadPlan,
  UploadPlanBatch,
  type BadReplicaReport,
  type ReplanRequest,
  type UploadPlanRequest,
} from '../protocol/index.js'
import {ChunkyError} from '../protocol/index.js'
import {sendForText} from './http.js'
import {credentialRefused, errorFromResponse, InterruptedError, masterUnreachable, networkErrorCode, requestSignal} from './errors.js'

// Typed calls to the master's HTTP API (src/protocol/api.ts). Every answer is validated with its
// schema; every failure becomes a ChunkyError whose message says what to do.

export interface MasterApi {
  /** The master asked last (of several: the one that answered). */
  readonly url: string
  /** How many masters it may ask. */
  readonly masters: number
  nodes(): Promise<z.infer<typeof NodeList>>
  /** Every node with its state, space and drain progress (`chunky nodes`). */
  nodeInfos(): Promise<NodeInfoList>
  drainNode(id: string): Promise<NodeInfo>
  undrainNode(id: string): Promise<NodeInfo>
  forgetNode(id: string): Promise<ForgetResult>
  planUpload(request: UploadPlanRequest): Promise<UploadPlan>
  replan(uploadId: string, request: ReplanRequest): Promise<PlannedChunk>
  commit(uploadId: string): Promise<CommitResult>
  /** Several uploads planned in one request; each answer is a plan or that entry's error, in order. */
  planUploads(requests: UploadPlanRequest[]): Promise<UploadPlanBatch>
  /** Several uploads committed in one request, each on its own; in order. */
  commitUploads(uploadIds: string[]): Promise<CommitBatch>
  files(): Promise<z.infer<typeof FileList>>
  /** Every committed file whose name starts with `prefix`, with its chunks' SHA-256: one request for a whole folder. */
  filesUnder(prefix: string): Promise<PrefixFileList>
  manifest(name: string): Promise<FileManifest>
  remove(name: string): Promise<z.infer<typeof RemoveResult>>
  /** Several names removed in one request, each on its own; each answer is a result or that name's error, in order. */
  removeMany(names: string[]): Promise<RemoveBatch>
  status(name?: string): Promise<StatusDoc>
  balance(): Promise<BalanceReport>
  reportBadReplica(report: z.input<typeof BadReplicaReport>): Promise<void>
  /** A signed link's path for a committed name or a prefix (the caller puts it on a node's URL). */
  share(request: ShareRequest): Promise<ShareAnswer>
  /** A signed tus upload link's path for one name. */
  shareUpload(request: UploadShareRequest): Promise<ShareAnswer>
}

export interface MasterApiOptions {
  signal?: AbortSignal
  /** Per-request time limit; planning a huge file can take a while, so it is generous. */
  timeoutMs?: number
}

const Ok = z.object({ok: z.literal(true)})
type Method = 'GET' | 'POST' | 'DELETE'
/** Extra tries of a read that got no answer. */
const GET_RETRIES = 2
/** Failures that may pass on a second try (a TLS refusal, say, will not). */
const RETRIED_CODES = new Set(['ETIMEDOUT', 'ECONNRESET', 'EADDRINUSE', 'ECONNREFUSED', 'EPIPE', 'ENOTFOUND', 'ENETUNREACH', 'EAI_AGAIN'])

/**
 * `masterUrl` may list several masters, `A,B` (one leads, the others stand by): a call goes to the one
 * that answered last, and moves on to the next when a master is a standby (it changed nothing) or
 * cannot be reached, so a client follows the leader through a failover.
 */
export function masterApi(masterUrl: string, token: string | undefined, opts: MasterApiOptions = {}): MasterApi {
  const bases = masterUrls(masterUrl).map(normalizeUrl)
  let current = 0
  const headers: Record<string, string> = token ? {authorization: `Bearer ${token}`} : {}

  async function call<T>(schema: z.ZodType<T>, method: Method, path: string, body?: unknown): Promise<T> {
    let last: unknown
    for (let hop = 0; hop < bases.length; hop++) {
      const at = (current + hop) % bases.length
      try {
        const answer = await callOne(bases[at]!, schema, method, path, body)
        current = at
        return answer
      } catch (err) {
        if (!(err instanceof ChunkyError) || (err.code !== 'NOT_LEADER' && err.code !== 'MASTER_UNREACHABLE')) throw err
        last = err
      }
    }
    throw last
  }

  async function callOne<T>(base: URL, schema: z.ZodType<T>, method: Method, path: string, body?: unknown): Promise<T> {
    let response
    const request = requestSignal(opts.signal)
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const send = () =>
      sendForText(new URL(path, base), {
        method,
        headers: {...headers, accept: 'application/json', ...(payload === undefined ? {} : {'content-type': 'application/json', 'content-length': Buffer.byteLength(payload)})},
        body: payload,
        signal: request.signal,
        connectTimeoutMs: 5_000,
        totalTimeoutMs: opts.timeoutMs ?? 60_000,
      })
    try {
      // Only reads are repeated, and only when no answer came (a master restarting): writes may have happened.
      for (let attempt = 1; ; attempt++) {
        try {
          response = await send()
          break
        } catch (err) {
          if (method !== 'GET' || attempt > GET_RETRIES || !RETRIED_CODES.has(networkErrorCode(err) ?? '') || opts.signal?.aborted) throw err
          await sleep(250 * attempt)
        }
      }
    } catch (err) {
      if (opts.signal?.aborted) throw new InterruptedError()
      const code = networkErrorCode(err)
      const tls = tlsProblem(code, base.origin)
      if (tls) throw tls
      throw masterUnreachable(base.origin, code ?? (err instanceof Error ? err.message : String(err)))
    } finally {
      request.dispose()
    }
    if (response.statusCode === 401) throw credentialRefused(Boolean(token))
    if (response.statusCode >= 400) throw errorFromResponse(response.statusCode, response.body, `the master at ${base.origin}`)
    let json: unknown
    try {
      json = JSON.parse(response.body)
    } catch {
      throw new ChunkyError('BAD_MESSAGE', `the server at ${base.origin} did not answer JSON to ${method} ${path}: is it a chunky master?`)
    }
    const parsed = schema.safeParse(json)
    if (!parsed.success) {
      throw new ChunkyError('BAD_MESSAGE', `unexpected answer from the master to ${method} ${path}: ${z.prettifyError(parsed.error).replace(/\s+/g, ' ')}`)
    }
    return parsed.data
  }

  const file = (name: string) => `/api/files/${encodeURIComponent(name)}`
  const upload = (id: string, action: string) => `/api/uploads/${encodeURIComponent(id)}/${action}`

  return {
    get url() {
      return bases[current]!.origin
    },
    masters: bases.length,
    nodes: () => call(NodeList, 'GET', '/api/nodes'),
    nodeInfos: () => call(NodeInfoList, 'GET', '/api/nodes'),
    drainNode: (id) => call(NodeInfo, 'POST', `/api/nodes/${encodeURIComponent(id)}/drain`, {}),
    undrainNode: (id) => call(NodeInfo, 'POST', `/api/nodes/${encodeURIComponent(id)}/undrain`, {}),
    forgetNode: (id) => call(ForgetResult, 'DELETE', `/api/nodes/${encodeURIComponent(id)}`),
    planUpload: (request) => call(UploadPlan, 'POST', '/api/uploads', request),
    replan: (uploadId, request) => call(PlannedChunk, 'POST', upload(uploadId, 'replan'), request),
    commit: (uploadId) => call(CommitResult, 'POST', upload(uploadId, 'commit'), {}),
    planUploads: async (requests) => ({plans: oneEach(await call(UploadPlanBatch, 'POST', '/api/uploads/batch', {uploads: requests}), 'plans', requests.length)}),
    commitUploads: async (uploadIds) => ({results: oneEach(await call(CommitBatch, 'POST', '/api/uploads/commit', {uploadIds}), 'results', uploadIds.length)}),
    files: () => call(FileList, 'GET', '/api/files'),
    filesUnder: (prefix) => call(PrefixFileList, 'GET', `/api/files?prefix=${encodeURIComponent(prefix)}&chunks=1`),
    manifest: (name) => call(FileManifest, 'GET', file(name)),
    remove: (name) => call(RemoveResult, 'DELETE', file(name)),
    removeMany: async (names) => ({results: oneEach(await call(RemoveBatch, 'POST', '/api/files/remove', {names}), 'results', names.length)}),
    status: (name) => call(StatusDoc, 'GET', name === undefined ? '/api/status' : `/api/status?name=${encodeURIComponent(name)}`),
    balance: () => call(BalanceReport, 'GET', '/api/rebalance'),
    share: (request) => call(ShareAnswer, 'POST', '/api/share', request),
    shareUpload: (request) => call(ShareAnswer, 'POST', '/api/share/upload', request),
    reportBadReplica: async (report) => {
      await call(Ok, 'POST', '/api/bad-replica', report)
    },
  }
}

/** The masters of `--master A,B` / CHUNKY_MASTER, in the order given. */
/** A batch is answered one entry per entry asked, in order; anything else is a master bug, not a retry. */
function oneEach<K extends string, T>(answer: Record<K, T[]>, key: K, asked: number): T[] {
  const entries = answer[key]
  if (entries.length !== asked) throw new ChunkyError('BAD_MESSAGE', `the master answered ${asked} batch entries with ${entries.length} ${key}: try again`)
  return entries
}

export function masterUrls(list: string): string[] {
  return list.split(',').map((url) => url.trim()).filter((url) => url !== '')
}

/** Certificate errors, said plainly: they mean "trust the cluster's CA", not "is the master running?". */
export function tlsProblem(code: string | undefined, origin: string): ChunkyError | undefined {
  if (!code) return undefined
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return new ChunkyError('MASTER_UNREACHABLE', `the certificate of ${origin} is not for that host name (${code}): use the name the certificate was made for in --master`)
  }
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/.test(code)) {
    return new ChunkyError(
      'MASTER_UNREACHABLE',
      `the TLS certificate of ${origin} is not trusted here (${code}): pass --ca FILE or set CHUNKY_CA to the cluster's CA certificate`,
    )
  }
  return undefined
}

/** The master's base URL; a bad one is a usage error the caller should have caught, so it says so plainly. */
export function normalizeUrl(input: string): URL {
  let url: URL
  try {
    url = new URL(input)
  } catch {
    throw new ChunkyError('BAD_REQUEST', `"${input}" is not a URL: use something like http://127.0.0.1:7400`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ChunkyError('BAD_REQUEST', `"${input}" is not an http(s) URL: use something like http://127.0.0.1:7400`)
  }
  return url
}
