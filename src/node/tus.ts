import {createHash} from 'node:crypto'
import {createReadStream, createWriteStream} from 'node:fs'
import {rm} from 'node:fs/promises'
import type {IncomingMessage, ServerResponse} from 'node:http'
import {pipeline} from 'node:stream/promises'
import {authorize} from '../http/auth.js'
import {guardBodyRate} from '../http/limits.js'
import {
  ChunkyError,
  fileNameProblem,
  MAX_TUS_CONCAT_PARTS,
  MAX_TUS_METADATA,
  TUS_CHECKSUM_ALGORITHMS,
  TUS_CONTENT_TYPE,
  TUS_EXTENSIONS,
  TUS_LINK_SEGMENT,
  TUS_PATH,
  TUS_VERSION,
  TusId,
  type TusSession,
  type UploadLinkPayload,
  verifyUploadLink,
} from '../protocol/index.js'
import type {ByteBudget} from './byte-budget.js'
import type {NodeContext} from './context.js'
import type {TusMaster} from './tus-master.js'
import type {TusTails} from './tus-tails.js'
import {TusUpload} from './tus-upload.js'

/** The largest upload this node takes (Tus-Max-Size): 1 TiB, about 100,000 chunks of 10 MiB. */
export const TUS_MAX_SIZE = 1024 ** 4
/** PATCH bodies this node takes at once: one more gets 503. What they hold in memory is bounded by TusContext.budget. */
export const MAX_ACTIVE_PATCHES = 32
/**
 * Bytes all tus uploads of a node may hold in memory at once (each PATCH its write batches,
 * TUS_PATCH_MEMORY): 256 MiB. A PATCH with no room waits before it reads its body.
 */
export const TUS_MEMORY_BUDGET = 256 * 1024 * 1024

/** What a node needs to speak tus (wired in index.ts). */
export interface TusContext {
  master: TusMaster
  tails: TusTails
  /** This node's URL as clients reach it, for Location. */
  publicUrl(): string
  /** Uploads a PATCH is writing to on this node right now: a second PATCH to one of them gets 423. */
  busy: Set<string>
  /** The memory every PATCH on this node shares (TUS_MEMORY_BUDGET unless set). */
  budget: ByteBudget
  /** Uploads held here with a PATCH in progress or chunks in flight (tus-upload.ts). */
  uploads: Map<string, TusUpload>
}

type Scope = {kind: 'credential'} | {kind: 'link'; link: UploadLinkPayload}

/**
 * tus 1.0.0 at /tus/ (protocol/tus.ts). `rest` is the path after /tus/: [] or [''] for the upload
 * collection, [id] for one upload, and the same after ['u', token] for a signed upload link.
 */
export async function handleTus(ctx: NodeContext, tus: TusContext, req: IncomingMessage, res: ServerResponse, rest: string[]): Promise<void> {
  res.setHeader('tus-resumable', TUS_VERSION)
  const method = (req.method === 'POST' && typeof req.headers['x-http-method-override'] === 'string' ? req.headers['x-http-method-override'] : req.method ?? 'GET').toUpperCase()
  let base = TUS_PATH
  let path = rest
  let scope: Scope = {kind: 'credential'}
  if (rest[0] === TUS_LINK_SEGMENT && rest.length >= 2) {
    base = `${TUS_PATH}${TUS_LINK_SEGMENT}/${rest[1]}/`
    path = rest.slice(2)
    if (method !== 'OPTIONS') {
      const key = ctx.link.grantKey
      if (!key) throw new ChunkyError('MASTER_UNREACHABLE', 'this node has not heard from the master yet, so it cannot check upload links: try again shortly')
      scope = {kind: 'link', link: verifyUploadLink(rest[1]!, key)}
    }
  }
  const collection = path.length === 0 || (path.length === 1 && path[0] === '')
  if (method === 'OPTIONS') {
    res.writeHead(204, {
      'tus-version': TUS_VERSION,
      'tus-extension': TUS_EXTENSIONS.join(','),
      'tus-max-size': String(TUS_MAX_SIZE),
      'tus-checksum-algorithm': TUS_CHECKSUM_ALGORITHMS.join(','),
      'content-length': 0,
    })
    return void res.end()
  }
  if (scope.kind === 'credential') authorize(req, ctx.credentials(), 'write')
  if (req.headers['tus-resumable'] !== TUS_VERSION) {
    res.setHeader('tus-version', TUS_VERSION)
    throw new ChunkyError('TUS_VERSION_UNSUPPORTED', `this server speaks tus ${TUS_VERSION}: send Tus-Resumable: ${TUS_VERSION}`)
  }
  if (collection && method === 'POST') return create(ctx, tus, req, res, scope, base)
  const id = path.length === 1 ? TusId.safeParse(path[0]) : undefined
  if (!id?.success) throw new ChunkyError('NOT_FOUND', `no tus upload at ${(req.url ?? '').split('?')[0]!.slice(0, 200)}`)
  if (method === 'HEAD') return head(ctx, tus, res, await sessionIn(tus, id.data, scope), base)
  if (method === 'PATCH') return patch(ctx, tus, req, res, id.data, scope)
  if (method === 'DELETE') {
    await sessionIn(tus, id.data, scope)
    await tus.master.terminate(id.data)
    await tus.tails.drop(id.data)
    res.writeHead(204, {'content-length': 0})
    return void res.end()
  }
  throw new ChunkyError('NOT_FOUND', `tus uploads take HEAD, PATCH and DELETE, not ${method}`)
}

async function create(ctx: NodeContext, tus: TusContext, req: IncomingMessage, res: ServerResponse, scope: Scope, base: string): Promise<void> {
  const concat = concatHeader(req)
  const metadataText = header(req, 'upload-metadata') ?? ''
  if (metadataText.length > MAX_TUS_METADATA) throw new ChunkyError('HEADERS_TOO_LARGE', `Upload-Metadata is at most ${MAX_TUS_METADATA} characters`)
  const metadata = parseMetadata(metadataText)
  const maxSize = scope.kind === 'link' ? scope.link.max ?? null : null
  if (concat?.kind === 'final') {
    if (header(req, 'upload-length') !== undefined || header(req, 'upload-defer-length') !== undefined) {
      throw new ChunkyError('BAD_REQUEST', 'a final upload (Upload-Concat: final;…) has no Upload-Length: its length is the sum of its partial uploads')
    }
    const name = nameOf(metadata, scope)
    const session = await tus.master.concat({name, parts: concat.parts, metadata: metadataText, maxSize, link: scope.kind === 'link' ? scope.link.u : null, node: ctx.id})
    ctx.log.info({event: 'tus.finished', id: session.id, name, parts: concat.parts.length}, `tus upload ${session.id} of ${name}: ${concat.parts.length} partial uploads joined and committed`)
    res.writeHead(201, {location: `${tus.publicUrl()}${base}${session.id}`, 'upload-offset': String(session.offset), 'content-length': 0})
    return void res.end()
  }
  const length = lengthHeader(req)
  const partial = concat?.kind === 'partial'
  // A partial upload needs no name (the final POST carries it); through a link it is that link's.
  const name = partial ? (scope.kind === 'link' ? scope.link.u : null) : nameOf(metadata, scope)
  if (length !== null && length > (maxSize ?? TUS_MAX_SIZE)) throw new ChunkyError('BODY_TOO_LARGE', `this upload may have at most ${maxSize ?? TUS_MAX_SIZE} bytes, not ${length}`)
  const session = await tus.master.create({name, partial, length, metadata: metadataText, maxSize, node: ctx.id})
  res.setHeader('location', `${tus.publicUrl()}${base}${session.id}`)
  res.setHeader('upload-expires', new Date(session.expiresAt).toUTCString())
  if (contentType(req) === TUS_CONTENT_TYPE && session.state === 'open') {
    // creation-with-upload: the body is the first PATCH; whatever of it could be kept is in Upload-Offset.
    try {
      const upload = await receive(ctx, tus, req, session, scope)
      res.setHeader('upload-offset', String(upload.offset))
    } catch (err) {
      ctx.log.warn({event: 'tus.first_patch_failed', id: session.id, error: (err as Error).message}, `tus upload ${session.id}: the body sent with its creation was not kept: ${(err as Error).message}`)
      res.setHeader('upload-offset', String(session.offset))
    }
  } else {
    res.setHeader('upload-offset', String(session.offset))
  }
  res.writeHead(201, {'content-length': 0})
  res.end()
}

/** `base` is the endpoint the request came through (TUS_PATH, or a signed link's): a final's partials are named under it. */
function head(ctx: NodeContext, tus: TusContext, res: ServerResponse, session: TusSession, base: string): void {
  // tus asks it of HEAD: a final upload answers its partial uploads' URLs, here on this node (every node takes every path).
  const concat = session.parts ? {'upload-concat': `final;${session.parts.map((id) => `${tus.publicUrl()}${base}${id}`).join(' ')}`} : {}
  res.writeHead(200, {...sessionHeaders(session), ...concat, 'upload-offset': String(localOffset(ctx, tus, session)), 'cache-control': 'no-store', 'content-length': 0})
  res.end()
}

async function patch(ctx: NodeContext, tus: TusContext, req: IncomingMessage, res: ServerResponse, id: string, scope: Scope): Promise<void> {
  if (contentType(req) !== TUS_CONTENT_TYPE) throw new ChunkyError('UNSUPPORTED_MEDIA_TYPE', `a PATCH body is Content-Type: ${TUS_CONTENT_TYPE}`)
  const offsetText = header(req, 'upload-offset')
  if (offsetText === undefined || !/^\d{1,16}$/.test(offsetText)) throw new ChunkyError('BAD_REQUEST', 'a PATCH needs Upload-Offset: the offset HEAD answers')
  const length = lengthHeader(req, true)
  const live = tus.uploads.get(id)
  let session: TusSession
  let check = async (): Promise<void> => {}
  if (live?.continuesOn(ctx.id) && (length === null || live.state.length !== null)) {
    // The next PATCH of a client this node takes the upload from: the master is asked for the session
    // while the body arrives, not before (a round trip each PATCH), and its answer is checked before ours.
    session = inScope(live.state, scope)
    const asked = tus.master.get(id)
    asked.catch(() => {}) // awaited by check(), after the body
    check = async () => {
      const now = await sessionIn(tus, id, scope, asked)
      if (now.holder !== ctx.id || now.epoch !== session.epoch) throw new ChunkyError('UPLOAD_LOCKED', `tus upload ${id} was taken over by ${now.holder ?? 'another node'}: ask it for the offset (HEAD) again`)
    }
  } else {
    const known = await sessionIn(tus, id, scope)
    const setsLength = length !== null && known.length === null
    // Held here already (after a restart, or a PATCH that failed): no new epoch to ask for.
    session = known.holder === ctx.id && !setsLength ? known : await tus.master.claim(id, {node: ctx.id, ...(setsLength ? {length} : {})})
  }
  const offset = localOffset(ctx, tus, session)
  if (Number(offsetText) !== offset) {
    await check() // a session gone or taken over says so rather than 409
    res.setHeader('upload-offset', String(offset))
    throw new ChunkyError('OFFSET_MISMATCH', `this upload is at offset ${offset}, not ${offsetText}: ask for it with HEAD and continue from there`)
  }
  let upload: {offset: number; session: TusSession}
  try {
    upload = await receive(ctx, tus, req, session, scope)
  } finally {
    await check() // a session gone or taken over is the answer, even when the body failed too
  }
  if (res.destroyed || (req.destroyed && !req.complete)) return // the client went away: what it sent is kept, nobody to answer
  res.writeHead(204, {...sessionHeaders(upload.session), 'upload-offset': String(upload.offset), 'content-length': 0})
  res.end()
}

/** A PATCH body (or a creation's) into the upload; checksummed bodies are spooled and checked first. */
async function receive(ctx: NodeContext, tus: TusContext, req: IncomingMessage, session: TusSession, scope: Scope): Promise<{offset: number; session: TusSession}> {
  const {id} = session
  if (tus.busy.has(id)) throw new ChunkyError('UPLOAD_LOCKED', `another PATCH to tus upload ${id} is in progress here: wait for it, then ask for the offset (HEAD)`)
  if (tus.busy.size >= MAX_ACTIVE_PATCHES) throw new ChunkyError('BUSY', `this node takes ${MAX_ACTIVE_PATCHES} PATCH bodies at once: try again shortly or use another node`)
  const checksum = checksumHeader(req)
  tus.busy.add(id)
  guardBodyRate(req, ctx.limits, (why) => ctx.log.warn({event: 'tus.patch_cut', id, remote: req.socket.remoteAddress, reason: why}, `cut a PATCH to tus upload ${id} from ${req.socket.remoteAddress}: ${why}`))
  try {
    const limit = session.length ?? session.maxSize ?? TUS_MAX_SIZE
    const upload = await TusUpload.open(ctx, tus, session, limit)
    const before = upload.offset
    try {
      if (checksum) {
        const spool = tus.tails.spoolPath(id)
        try {
          await spoolChecked(req, spool, checksum, limit - before)
          await upload.take(createReadStream(spool, {highWaterMark: 1024 * 1024}))
        } finally {
          await rm(spool, {force: true})
        }
      } else {
        try {
          await upload.take(req.iterator({destroyOnReturn: false}))
        } catch (err) {
          if (!(req.destroyed && !req.complete)) throw err // a client that went away keeps what it sent (tus resumes from HEAD)
        }
      }
      await upload.finish()
    } finally {
      await upload.release()
    }
    if (upload.committed) await tus.tails.drop(id)
    ctx.metrics.tusBytes.inc(upload.offset - before)
    if (upload.committed && session.partial) ctx.log.info({event: 'tus.partial_finished', id}, `partial tus upload ${id} complete: it waits for the final upload that joins it`)
    else if (upload.committed) ctx.log.info({event: 'tus.finished', id, name: session.name}, `tus upload ${id} of ${session.name} complete and committed`)
    return {offset: upload.offset, session: upload.state}
  } finally {
    tus.busy.delete(id)
  }
}

/** Writes the body to `spool` while hashing it; a mismatch is TUS_CHECKSUM_MISMATCH (460) and nothing of it is kept. */
async function spoolChecked(req: IncomingMessage, spool: string, checksum: {algorithm: string; digest: string}, room: number): Promise<void> {
  const hash = createHash(checksum.algorithm)
  let seen = 0
  await pipeline(
    req,
    async function* (source: AsyncIterable<Buffer>) {
      for await (const buf of source) {
        seen += buf.length
        if (seen > room) throw new ChunkyError('BODY_TOO_LARGE', `this upload has room for ${room} more bytes: the PATCH sent more`)
        hash.update(buf)
        yield buf
      }
    },
    createWriteStream(spool),
  )
  if (hash.digest('base64') !== checksum.digest) {
    throw new ChunkyError('TUS_CHECKSUM_MISMATCH', `the PATCH body does not match its Upload-Checksum (${checksum.algorithm}): nothing of it was kept, send it again`)
  }
}

/** The session if this scope may see it (inScope); `asked` is the master's answer when it was asked for already. */
async function sessionIn(tus: TusContext, id: string, scope: Scope, asked = tus.master.get(id)): Promise<TusSession> {
  let session: TusSession
  try {
    session = await asked
  } catch (err) {
    const code = (err as ChunkyError).code
    if (code === 'UPLOAD_NOT_FOUND' || code === 'UPLOAD_EXPIRED') await tus.tails.drop(id) // a tail of an upload gone for good
    throw err
  }
  if (session.state === 'done' && !tus.busy.has(id)) await tus.tails.drop(id)
  return inScope(session, scope)
}

/** The session if this scope may see it: a signed link only its own name. */
function inScope(session: TusSession, scope: Scope): TusSession {
  if (scope.kind === 'link' && scope.link.u !== session.name) throw new ChunkyError('FORBIDDEN', `this upload link is for ${scope.link.u}, not this upload`)
  return session
}

/**
 * The master's durable offset, or what this node holds durably past it when it holds the session in
 * its current epoch: the upload in progress here, else its tail files (tus-tails.ts).
 */
function localOffset(ctx: NodeContext, tus: TusContext, session: TusSession): number {
  if (session.state === 'done' || session.holder !== ctx.id) return session.offset
  const live = tus.uploads.get(session.id)
  if (live && live.epoch === session.epoch) return live.offset
  return Math.max(session.offset, tus.tails.end(session.id, session.epoch) ?? 0)
}

function sessionHeaders(session: TusSession): Record<string, string> {
  return {
    ...(session.partial ? {'upload-concat': 'partial'} : {}),
    ...(session.length === null ? {'upload-defer-length': '1'} : {'upload-length': String(session.length)}),
    ...(session.metadata ? {'upload-metadata': session.metadata} : {}),
    ...(session.state === 'open' ? {'upload-expires': new Date(session.expiresAt).toUTCString()} : {}),
  }
}

/** The chunky name from Upload-Metadata (`name`, else `filename`), checked, and the one a signed link allows. */
function nameOf(metadata: Map<string, string>, scope: Scope): string {
  const name = metadata.get('name') ?? metadata.get('filename')
  if (name === undefined) throw new ChunkyError('BAD_NAME', 'Upload-Metadata needs the chunky name, as its "name" (or "filename") key')
  const problem = fileNameProblem(name)
  if (problem) throw new ChunkyError('BAD_NAME', `"${name}" is not a valid name: ${problem}`)
  if (scope.kind === 'link' && scope.link.u !== name) throw new ChunkyError('FORBIDDEN', `this upload link is for ${scope.link.u}, not ${name}`)
  return name
}

/** Upload-Concat: `partial`, or `final;` and the partial uploads' URLs (absolute or paths), space-separated, in order. */
function concatHeader(req: IncomingMessage): {kind: 'partial'} | {kind: 'final'; parts: string[]} | undefined {
  const value = header(req, 'upload-concat')?.trim()
  if (value === undefined) return undefined
  if (value === 'partial') return {kind: 'partial'}
  if (!value.startsWith('final;')) throw new ChunkyError('BAD_REQUEST', 'Upload-Concat is "partial" or "final;" followed by the partial uploads\' URLs')
  const urls = value.slice('final;'.length).trim().split(/\s+/).filter((url) => url !== '')
  if (urls.length === 0 || urls.length > MAX_TUS_CONCAT_PARTS) throw new ChunkyError('BAD_REQUEST', `Upload-Concat: final; lists 1 to ${MAX_TUS_CONCAT_PARTS} partial upload URLs`)
  const parts = urls.map((url) => {
    let path: string
    try {
      path = new URL(url, 'http://any.node').pathname
    } catch {
      throw new ChunkyError('BAD_REQUEST', `Upload-Concat: ${url.slice(0, 200)} is not a URL`)
    }
    const id = TusId.safeParse(path.split('/').at(-1))
    if (!path.startsWith(TUS_PATH) || !id.success) throw new ChunkyError('BAD_REQUEST', `Upload-Concat: ${url.slice(0, 200)} is not a tus upload of this cluster (…/tus/<id>)`)
    return id.data
  })
  return {kind: 'final', parts}
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name]
  return Array.isArray(value) ? value[0] : value
}

function contentType(req: IncomingMessage): string | undefined {
  return header(req, 'content-type')?.split(';')[0]!.trim().toLowerCase()
}

/** Upload-Length, or null with Upload-Defer-Length: 1 (or, for a PATCH, when absent). */
function lengthHeader(req: IncomingMessage, optional = false): number | null {
  const length = header(req, 'upload-length')
  const deferred = header(req, 'upload-defer-length')
  if (length !== undefined) {
    if (deferred !== undefined) throw new ChunkyError('BAD_REQUEST', 'send Upload-Length or Upload-Defer-Length, not both')
    if (!/^\d{1,16}$/.test(length) || !Number.isSafeInteger(Number(length))) throw new ChunkyError('BAD_REQUEST', 'Upload-Length is a whole number of bytes')
    return Number(length)
  }
  if (optional) return null
  if (deferred === '1') return null
  throw new ChunkyError('BAD_REQUEST', 'a new upload needs Upload-Length (or Upload-Defer-Length: 1)')
}

function checksumHeader(req: IncomingMessage): {algorithm: string; digest: string} | undefined {
  const value = header(req, 'upload-checksum')
  if (value === undefined) return undefined
  const [algorithm, digest, extra] = value.trim().split(/\s+/)
  if (!algorithm || !digest || extra !== undefined) throw new ChunkyError('BAD_REQUEST', 'Upload-Checksum is "<algorithm> <base64 digest>"')
  if (!(TUS_CHECKSUM_ALGORITHMS as readonly string[]).includes(algorithm)) {
    throw new ChunkyError('BAD_REQUEST', `Upload-Checksum algorithm ${algorithm} is not supported: use ${TUS_CHECKSUM_ALGORITHMS.join(' or ')}`)
  }
  return {algorithm, digest}
}

/** Upload-Metadata: comma-separated `key base64value` pairs (a key alone has an empty value). */
function parseMetadata(text: string): Map<string, string> {
  const pairs = new Map<string, string>()
  if (text.trim() === '') return pairs
  for (const pair of text.split(',')) {
    const [key, value, extra] = pair.trim().split(' ')
    if (!key || extra !== undefined || pairs.has(key)) throw new ChunkyError('BAD_REQUEST', 'Upload-Metadata is comma-separated "key base64value" pairs, each key once')
    if (value !== undefined && !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) throw new ChunkyError('BAD_REQUEST', `Upload-Metadata: the value of ${key} is not base64`)
    pairs.set(key, Buffer.from(value ?? '', 'base64').toString('utf8'))
  }
  return pairs
}
