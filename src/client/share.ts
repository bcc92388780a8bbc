import type {ShareRequest, UploadShareRequest} from '../protocol/index.js'
import {masterApi} from './master-api.js'
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
  const request: ShareRequest | UploadShareRequest = opts.upload
    ? {name: opts.name!, expiresInMs: opts.expiresInMs, ...(opts.upload.maxSize !== undefined ? {maxSize: opts.upload.maxSize} : {})}
    : opts.name !== undefined ? {name: opts.name, expiresInMs: opts.expiresInMs} : {prefix: opts.prefix!, expiresInMs: opts.expiresInMs}
  const api = masterApi(opts.master, opts.token, {signal: opts.signal, timeoutMs: 30_000})
  const answer = await (opts.upload ? api.shareUpload(request as UploadShareRequest) : api.share(request as ShareRequest))
  return {name: answer.name, url: new URL(answer.path, await nodeBase(opts)).toString(), expiresAt: answer.expiresAt}
}

/** The node the link points at: --node as a URL as given, else by id/URL among the master's nodes, else the nearest. */
async function nodeBase(opts: ShareOptions): Promise<string> {
  if (opts.node !== undefined && /^https?:\/\//.test(opts.node)) return opts.node.replace(/\/+$/, '')
  const {nodes} = await masterApi(opts.master, opts.token, {signal: opts.signal}).nodes()
  const entry = await findNearestNode(nodes, {override: opts.node, zone: opts.zone, probe: opts.probe})
  return entry.node.url
}
