import {ShareAnswer, type ShareRequest, type UploadShareRequest} from '../protocol/index.js'
import {masterUnreachable, credentialRefused, errorFromResponse, networkErrorCode} from './errors.js'
import {sendForText} from './http.js'
import {masterApi, normalizeUrl, tlsProblem} from './master-api.js'
import {findNearestNode, type Probe} from './nearest.js'

// `chunky share`: the master signs a link (it alone holds the key, and it checks the name is
// committed); the link is put on the nearest node (or --node), though every node accepts it.

export interface ShareOptions {
  master: string
  token?: string
  /** Exactly one of name and prefix. */
  name?: string
  prefix?: string
  expiresInMs: number
  /** `--upload [--max-size]`: a tus endpoint that uploads `name` instead of a link that plays it. */
  upload?: {maxSize?: number}
  /** `--node ID|URL`: the node whose address the link carries; else the nearest alive node. */
  node?: string
  zone?: string
  probe?: Probe
  signal?: AbortSignal
}

export interface ShareResult {
  /** The name, or the prefix followed by "/". */
  name: string
  url: string
  /** ISO 8601 */
  expiresAt: string
}

export async function shareLink(opts: ShareOptions): Promise<ShareResult> {
  const base = normalizeUrl(opts.master)
  const request: ShareRequest | UploadShareRequest = opts.upload
    ? {name: opts.name!, expiresInMs: opts.expiresInMs, ...(opts.upload.maxSize !== undefined ? {maxSize: opts.upload.maxSize} : {})}
    : opts.name !== undefined ? {name: opts.name, expiresInMs: opts.expiresInMs} : {prefix: opts.prefix!, expiresInMs: opts.expiresInMs}
  const body = JSON.stringify(request)
  let response
  try {
    response = await sendForText(new URL(opts.upload ? '/api/share/upload' : '/api/share', base), {
      method: 'POST',
      headers: {
        ...(opts.token ? {authorization: `Bearer ${opts.token}`} : {}),
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      },
      body,
      signal: opts.signal,
      connectTimeoutMs: 5_000,
      totalTimeoutMs: 30_000,
    })
  } catch (err) {
    const code = networkErrorCode(err)
    throw tlsProblem(code, base.origin) ?? masterUnreachable(base.origin, code ?? String(err))
  }
  if (response.statusCode === 401) throw credentialRefused(Boolean(opts.token))
  if (response.statusCode >= 400) throw errorFromResponse(response.statusCode, response.body, `the master at ${base.origin}`)
  const answer = ShareAnswer.parse(JSON.parse(response.body))
  return {name: answer.name, url: new URL(answer.path, await nodeBase(opts)).toString(), expiresAt: answer.expiresAt}
}

/** The node the link points at: --node as a URL as given, else by id/URL among the master's nodes, else the nearest. */
async function nodeBase(opts: ShareOptions): Promise<string> {
  if (opts.node !== undefined && /^https?:\/\//.test(opts.node)) return opts.node.replace(/\/+$/, '')
  const {nodes} = await masterApi(opts.master, opts.token, {signal: opts.signal}).nodes()
  const entry = await findNearestNode(nodes, {override: opts.node, zone: opts.zone, probe: opts.probe})
  return entry.node.url
}
