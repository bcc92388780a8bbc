import {createHash} from 'node:crypto'
import {ChunkyError, ErrorBody, FileManifest, isErrorCode, MAX_JSON_BODY} from '../protocol/index.js'
import {peerGet, readBody} from './peer-get.js'

/** How long a node reuses a file's manifest for file reads: a player's many range requests cost the master one look-up a second. */
export const MANIFEST_TTL_MS = 1000
const MAX_CACHED = 1000

export interface ServedManifest {
  manifest: FileManifest
  /** Strong ETag: a hash of what decides the bytes (size and each chunk's id, version, SHA-256), so every node computes the same one. */
  etag: string
  /** chunk index -> offset of its first byte in the file */
  offsets: number[]
}

/**
 * The committed manifests of files this node serves, asked from the master with the node's own
 * credential (GET /api/files/:name) and kept MANIFEST_TTL_MS. A response is always served from one
 * manifest object, so it never mixes two versions of a file.
 */
export class ManifestCache {
  private readonly entries = new Map<string, {at: number; value: Promise<ServedManifest>}>()

  constructor(private readonly opts: {masterUrl: string | (() => string); token: string; ca?: string[]; now?: () => number}) {}

  get(name: string, fresh = false): Promise<ServedManifest> {
    const now = (this.opts.now ?? Date.now)()
    const cached = this.entries.get(name)
    if (cached && !fresh && now - cached.at < MANIFEST_TTL_MS) return cached.value
    const value = this.fetch(name)
    this.entries.delete(name)
    this.entries.set(name, {at: now, value})
    value.catch(() => this.entries.get(name)?.value === value && this.entries.delete(name)) // failures are not cached
    if (this.entries.size > MAX_CACHED) this.entries.delete(this.entries.keys().next().value!)
    return value
  }

  private async fetch(name: string): Promise<ServedManifest> {
    const master = typeof this.opts.masterUrl === 'function' ? this.opts.masterUrl() : this.opts.masterUrl
    const url = new URL(`/api/files/${encodeURIComponent(name)}`, master)
    let response
    try {
      response = await peerGet(url, {headers: {authorization: `Bearer ${this.opts.token}`, accept: 'application/json'}, ca: this.opts.ca, timeoutMs: 5000})
    } catch (err) {
      throw new ChunkyError('MASTER_UNREACHABLE', `this node cannot reach the master for the file's manifest (${(err as Error).message}): try again shortly`)
    }
    const text = await readBody(response, MAX_JSON_BODY * 16)
    if (response.statusCode !== 200) {
      let code: string | undefined
      let message = `the master answered HTTP ${response.statusCode}`
      try {
        const body = ErrorBody.parse(JSON.parse(text))
        code = body.error.code
        message = body.error.message
      } catch {
        // no error body: the status says enough
      }
      if (code === 'FILE_NOT_FOUND' || response.statusCode === 404) throw new ChunkyError('FILE_NOT_FOUND', message)
      if (code === 'BAD_NAME') throw new ChunkyError('BAD_NAME', message)
      throw new ChunkyError(isErrorCode(code) && (response.statusCode ?? 0) >= 500 ? code : 'MASTER_UNREACHABLE', `the master could not give the manifest: ${message}`)
    }
    return served(FileManifest.parse(JSON.parse(text)))
  }
}

export function served(manifest: FileManifest): ServedManifest {
  const hash = createHash('sha256').update(`${manifest.size}`)
  const offsets: number[] = []
  let offset = 0
  for (const chunk of manifest.chunks) {
    hash.update(`|${chunk.chunkId}.${chunk.version}.${chunk.sha256}.${chunk.size}`)
    offsets.push(offset)
    offset += chunk.size
  }
  if (offset !== manifest.size) throw new ChunkyError('INTERNAL', `the manifest of ${manifest.name} does not add up (${offset} of ${manifest.size} bytes)`)
  return {manifest, etag: `"${hash.digest('base64url').slice(0, 27)}"`, offsets}
}
