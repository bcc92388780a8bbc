import type {IncomingMessage, ServerResponse} from 'node:http'
import rangeParser from 'range-parser'
import {ChunkyError, HEADER_SHA256, type FileManifest} from '../protocol/index.js'
import {CorruptBlockError, MAX_READ_BLOCKS} from '../storage/index.js'
import type {NodeContext} from './context.js'
import type {ServedManifest} from './manifests.js'
import {RangeRequest} from './peer-range.js'

// Playing a file straight from the cluster (SPEC.md): GET/HEAD {node}/v1/files/{name} with a read
// credential, or behind a share link. Any node serves any file from one manifest: chunks it holds
// fresh come from its disk, every block checked against its checksum; the others from the other
// fresh replicas (GET /v1/chunks/:id/:version with a Range, served the same way on that node). A
// block that fails its check is reported like any corrupt replica and the response goes on from
// another replica. The node reads only what it sends: one read of READ_BLOCKS blocks at a time,
// pulled by the socket, stopped when the reader leaves, and one chunk of read-ahead near the end of
// a chunk for sequential playback.

export type FileAccess = {kind: 'credential'} | {kind: 'share'; expiresAtS: number}

const CONTENT_TYPES: Record<string, string> = {
  mp4: 'video/mp4',
  m4v: 'video/mp4',
  webm: 'video/webm',
  mkv: 'video/x-matroska',
  mov: 'video/quicktime',
  ts: 'video/mp2t',
  m3u8: 'application/vnd.apple.mpegurl',
}

/**
 * Start opening the next chunk once this little is left of the current one read from this node's
 * disk. A chunk read from a peer starts the next one as it starts (from the next replica along): the
 * request's round trip and the peer's first reads then overlap this chunk's bytes, and two peers send
 * at once, each its first range or two (readPeer) until this chunk is sent.
 */
export const READAHEAD_WINDOW = 1024 * 1024

export function contentTypeOf(name: string): string {
  const ext = /\.([^./]+)$/.exec(name)?.[1]?.toLowerCase()
  return (ext && CONTENT_TYPES[ext]) ?? 'application/octet-stream'
}

/** GET or HEAD of a whole file or one range of it (RFC 9110 semantics, SPEC.md headers and codes). */
export async function handleFileRead(ctx: NodeContext, req: IncomingMessage, res: ServerResponse, name: string, access: FileAccess): Promise<void> {
  if (!ctx.manifests) throw new ChunkyError('NODE_UNREACHABLE', 'this node does not serve files')
  let file = await ctx.manifests.get(name)
  for (let attempt = 1; ; attempt++) {
    try {
      return await answerFrom(ctx, req, res, file, access)
    } catch (err) {
      // The first bytes could not be read from any replica, and nothing is sent yet: a manifest of a
      // second ago may name versions a re-upload has since deleted. Once more with a fresh one.
      if (attempt > 1 || res.headersSent || !(err instanceof NoReplicaError)) throw err
      file = await ctx.manifests.get(name, true)
    }
  }
}

async function answerFrom(ctx: NodeContext, req: IncomingMessage, res: ServerResponse, file: ServedManifest, access: FileAccess): Promise<void> {
  const {manifest, etag} = file
  const size = manifest.size
  const lastModified = new Date(manifest.committedAt).toUTCString()
  const cacheControl = access.kind === 'share' ? `private, max-age=${Math.max(0, Math.floor(access.expiresAtS - Date.now() / 1000))}` : 'private, no-cache'
  const common = {
    'accept-ranges': 'bytes',
    etag,
    'last-modified': lastModified,
    'cache-control': cacheControl,
  }
  const done = (status: number) => ctx.metrics.fileRequests.inc({status})

  if (noneMatch(req.headers['if-none-match'], etag)) {
    res.writeHead(304, common)
    res.end()
    return done(304)
  }
  const range = wantedRange(req, size, etag, lastModified)
  if (range === 'unsatisfiable') {
    res.writeHead(416, {...common, 'content-range': `bytes */${size}`, 'content-type': 'text/plain', 'content-length': 0})
    res.end()
    return done(416)
  }
  const [start, end] = range ?? [0, size] // end exclusive
  const status = range ? 206 : 200
  const stop = new AbortController()
  // The first bytes are read before the status goes out, so a file no replica can give gets a 503, not a cut body.
  const first = req.method !== 'HEAD' && start < end ? await startReading(ctx, file, start, end, stop.signal) : undefined
  res.writeHead(status, {
    ...common,
    'content-type': contentTypeOf(manifest.name),
    'content-length': end - start,
    ...(range ? {'content-range': `bytes ${start}-${end - 1}/${size}`} : {}),
  })
  done(status)
  if (!first) {
    res.end()
    return
  }
  await sendBytes(ctx, res, file, start, end, stop, first)
}

/** No replica of a chunk could be read (all failed or none is fresh on an alive node). */
class NoReplicaError extends ChunkyError {
  constructor(message: string) {
    super('NODE_UNREACHABLE', message)
  }
}

/** Opens the chunk holding `start` and reads its first piece (throws NoReplicaError if none can give it). */
async function startReading(ctx: NodeContext, file: ServedManifest, start: number, end: number, signal: AbortSignal): Promise<Prefetched> {
  const index = chunkAt(file.offsets, start)
  const chunk = file.manifest.chunks[index]!
  const pieces = readChunk(ctx, chunk, index, start - file.offsets[index]!, Math.min(end - file.offsets[index]!, chunk.size), signal)
  let head: IteratorResult<Piece>
  try {
    head = await pieces.next()
  } catch (err) {
    await pieces.return(undefined).catch(() => {})
    throw err
  }
  const wrapped = (async function* () {
    try {
      if (!head.done) yield head.value
      yield* pieces
    } finally {
      await pieces.return(undefined).catch(() => {})
    }
  })()
  return {index, pieces: wrapped, close: () => pieces.return(undefined).then(() => undefined, () => undefined)}
}

/** If-None-Match: `*` or a list of ETags, compared weakly (RFC 9110 13.1.2). */
function noneMatch(header: string | undefined, etag: string): boolean {
  if (!header) return false
  if (header.trim() === '*') return true
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag)
}

/**
 * The one range to send, [start, end), or undefined for the whole file. A Range that does not parse
 * is ignored; several ranges get the whole file (allowed by RFC 9110 14.2, and players ask for one);
 * an If-Range that does not match the current ETag (or Last-Modified) means the whole current file.
 */
function wantedRange(req: IncomingMessage, size: number, etag: string, lastModified: string): [number, number] | 'unsatisfiable' | undefined {
  const header = req.headers.range
  if (!header) return undefined
  const ifRange = req.headers['if-range']
  if (typeof ifRange === 'string') {
    const matches = ifRange.startsWith('"') || ifRange.startsWith('W/') ? ifRange === etag : Date.parse(ifRange) === Date.parse(lastModified)
    if (!matches) return undefined
  }
  // range-parser takes "5-2" for unsatisfiable (RFC 9110 14.1.1 calls it invalid: ignored) and a
  // suffix longer than the file for unsatisfiable too (RFC: the whole file), so those two come first.
  const specs = /^bytes=(.*)$/.exec(header)?.[1]?.split(',').map((s) => s.trim())
  if (!specs || specs.some((spec) => !validSpec(spec))) return undefined
  const suffix = specs.length === 1 ? /^-(\d+)$/.exec(specs[0]!) : null
  if (suffix && size > 0 && Number(suffix[1]) >= size) return [0, size]
  const parsed = rangeParser(size, header, {combine: true})
  if (parsed === -2 || (parsed !== -1 && parsed.type !== 'bytes')) return undefined // malformed: ignored
  if (parsed === -1) return 'unsatisfiable'
  if (parsed.length !== 1) return undefined
  return [parsed[0]!.start, parsed[0]!.end + 1]
}

function validSpec(spec: string): boolean {
  const match = /^(\d+)-(\d*)$/.exec(spec)
  if (match) return match[2] === '' || Number(match[1]) <= Number(match[2])
  return /^-\d+$/.test(spec)
}

/** Streams bytes [start, end) of the file, chunk by chunk, each from its best replica; cuts the response if none can give them. */
async function sendBytes(ctx: NodeContext, res: ServerResponse, file: ServedManifest, start: number, end: number, stop: AbortController, first: Prefetched): Promise<void> {
  const onClose = () => {
    if (!res.writableFinished) stop.abort()
  }
  res.on('close', onClose)
  const {manifest, offsets} = file
  const open = (index: number, from: number) => {
    const chunk = manifest.chunks[index]!
    return readChunk(ctx, chunk, index, from, Math.min(end - offsets[index]!, chunk.size), stop.signal, firstPeerRange(sent))
  }
  let current: AsyncGenerator<Piece> | undefined
  let next: Prefetched | undefined = first
  let sent = 0
  try {
    for (let index = chunkAt(offsets, start), pos = start; pos < end; index++) {
      const base = offsets[index]!
      const to = Math.min(end - base, manifest.chunks[index]!.size)
      current = next?.index === index ? next.pieces : open(index, pos - base)
      next = undefined
      let at = pos - base
      const window = holdsFresh(ctx, manifest.chunks[index]!) ? READAHEAD_WINDOW : Infinity
      for (let piece = await current.next(); !piece.done; piece = await current.next()) {
        await writePiece(res, piece.value)
        const bytes = sizeOf(piece.value)
        sent += bytes
        at += bytes
        if (!next && to - at <= window && base + to < end) next = prefetch(index + 1, open(index + 1, 0))
      }
      current = undefined
      pos = base + to
    }
    res.end()
  } catch (err) {
    if (stop.signal.aborted || res.destroyed) {
      ctx.metrics.fileReadsAborted.inc() // the reader went away (a seek, a closed tab): not a failure
      return
    }
    ctx.log.warn({event: 'file.read_failed', name: manifest.name, error: (err as Error).message}, `reading ${manifest.name} failed after ${sent} bytes: ${(err as Error).message}`)
    res.destroy(err as Error) // too late for a status: the reader sees the body cut short
  } finally {
    ctx.log.debug({event: 'file.sent', name: manifest.name, start, end, sent, aborted: stop.signal.aborted}, `sent ${sent} of bytes ${start}-${end - 1} of ${manifest.name}`)
    ctx.metrics.fileBytesServed.inc(sent)
    res.off('close', onClose)
    stop.abort() // a peer fetch still open stops here
    await current?.return(undefined).catch(() => {}) // closes the replica file or the peer request
    await next?.close()
  }
}

interface Prefetched {
  index: number
  pieces: AsyncGenerator<Piece>
  /** Stops it if it is never read. */
  close(): Promise<void>
}

/** Starts a chunk's read (opening its file or its peer request, and the first read) before it is needed. */
function prefetch(index: number, pieces: AsyncGenerator<Piece>): Prefetched {
  const first = pieces.next()
  first.catch(() => {}) // seen when it is awaited
  const wrapped = (async function* () {
    try {
      const head = await first
      if (head.done) return
      yield head.value
      yield* pieces
    } finally {
      await pieces.return(undefined).catch(() => {})
    }
  })()
  return {index, pieces: wrapped, close: () => first.then(() => pieces.return(undefined)).then(() => undefined, () => undefined)}
}

function chunkAt(offsets: number[], pos: number): number {
  let low = 0
  let high = offsets.length - 1
  while (low < high) {
    const mid = (low + high + 1) >> 1
    if (offsets[mid]! <= pos) low = mid
    else high = mid - 1
  }
  return low
}

/**
 * What a read passes on at a time: one buffer read from disk, or the buffers a peer sent meanwhile
 * (written together, in one system call, without joining them first).
 */
type Piece = Buffer[]

function sizeOf(piece: Piece): number {
  let bytes = 0
  for (const part of piece) bytes += part.length
  return bytes
}

/** Writes one piece, waiting for the socket to take more; a pooled read buffer goes back once written. */
function writePiece(res: ServerResponse, piece: Piece): Promise<void> {
  if (res.destroyed) return Promise.reject(new Error('the reader went away'))
  let room = true
  if (piece.length > 1) res.cork()
  for (const part of piece) room = res.write(part, () => releaseRead(part))
  if (piece.length > 1) res.uncork()
  if (room) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      res.off('close', onGone)
      resolve()
    }
    const onGone = () => {
      res.off('drain', onDrain)
      reject(new Error('the reader went away'))
    }
    res.once('drain', onDrain)
    res.once('close', onGone)
  })
}

type ManifestChunk = FileManifest['chunks'][number]

/** This node holds the manifest's replica of the chunk, and has not found it rotten lately. */
function holdsFresh(ctx: NodeContext, chunk: ManifestChunk): boolean {
  const local = ctx.store.get(chunk.chunkId, chunk.version)
  return ctx.ranges !== undefined && local?.sha256 === chunk.sha256 && !recentlyRotten(ctx, chunk.chunkId, chunk.version)
}

/**
 * Bytes [from, to) of one chunk at the manifest's version: from this node's disk when it holds that
 * replica, else (or when a block fails) from the next fresh replica, picking up where the last left off.
 */
async function* readChunk(ctx: NodeContext, chunk: ManifestChunk, index: number, from: number, to: number, signal: AbortSignal, firstRange = PEER_FIRST_RANGE_BYTES): AsyncGenerator<Piece> {
  let pos = from
  const failures: string[] = []
  const sources: {id: string; url?: string}[] = []
  if (holdsFresh(ctx, chunk)) sources.push({id: ctx.id})
  const peers = chunk.replicas.filter((replica) => replica.id !== ctx.id)
  // consecutive chunks start from different peers, so the one read ahead comes from a second sender
  for (let i = 0; i < peers.length; i++) {
    const replica = peers[(index + i) % peers.length]!
    sources.push({id: replica.id, url: replica.url})
  }
  for (const source of sources) {
    try {
      const pieces = source.url === undefined ? readLocal(ctx, chunk, pos, to, signal) : readPeer(ctx, source.url, chunk, pos, to, signal, firstRange)
      for await (const piece of pieces) {
        pos += sizeOf(piece)
        yield piece
      }
      if (pos === to) return
      throw new ChunkyError('NODE_UNREACHABLE', `stopped at byte ${pos} of ${to}`)
    } catch (err) {
      if (signal.aborted) throw err
      failures.push(`${source.id}: ${(err as Error).message}`)
      ctx.log.warn(
        {event: 'file.replica_failed', chunkId: chunk.chunkId, version: chunk.version, source: source.id, error: (err as Error).message},
        `chunk ${chunk.chunkId} v${chunk.version} from ${source.id === ctx.id ? 'this node' : source.id} failed at byte ${pos}, trying the next replica: ${(err as Error).message}`,
      )
    }
  }
  throw new NoReplicaError(`no replica of chunk ${chunk.chunkId} v${chunk.version} could be read (${failures.join('; ') || 'none is fresh on an alive node'})`)
}

/**
 * Read buffers of the common sizes (128 KiB to 1 MiB), taken back once the socket has them: a node
 * serving at disk speed otherwise allocates a buffer per read, and garbage collection of those took
 * more CPU than the reads. Only buffers made here are taken back, up to POOL_BYTES.
 */
const POOL_BYTES = 32 * 1024 * 1024
const pooled = new WeakSet<ArrayBufferLike>()
const free = new Map<number, Buffer[]>()
let freeBytes = 0

function allocRead(bytes: number): Buffer {
  const reuse = free.get(bytes)?.pop()
  if (reuse) {
    freeBytes -= bytes
    return reuse
  }
  if (bytes < 128 * 1024 || (bytes & (bytes - 1)) !== 0) return Buffer.allocUnsafe(bytes) // odd sizes (a chunk's tail) are not kept
  const made = Buffer.allocUnsafeSlow(bytes) // its own memory, never a slice of Node's shared pool
  pooled.add(made.buffer)
  return made
}

function releaseRead(piece: Buffer): void {
  const bytes = piece.buffer.byteLength
  if (!pooled.has(piece.buffer) || freeBytes + bytes > POOL_BYTES) return
  const list = free.get(bytes) ?? []
  free.set(bytes, list)
  list.push(Buffer.from(piece.buffer, 0, bytes))
  freeBytes += bytes
}

/** From this node's disk, every block verified; a rotten one is reported to the master at once. */
async function* readLocal(ctx: NodeContext, chunk: ManifestChunk, from: number, to: number, signal: AbortSignal): AsyncGenerator<Piece> {
  try {
    for await (const data of ctx.ranges!.readRange(chunk.chunkId, chunk.version, from, to, {signal, alloc: allocRead, onDiskRead: (bytes) => ctx.metrics.fileDiskBytes.inc(bytes)})) yield [data]
  } catch (err) {
    if (err instanceof CorruptBlockError) reportCorrupt(ctx, err)
    throw err
  }
}

/**
 * A peer is asked for a chunk's bytes in ranges: the first of PEER_FIRST_RANGE_BYTES (a seek waits
 * for little, and a reader that leaves at once cost little), each next one twice as long up to
 * PEER_RANGE_BYTES, with up to PEER_RANGES_OPEN asked for at once (the one being read and the next
 * ones), so the round trips overlap the bytes. A reader that leaves stops the peers within those
 * ranges: the socket buffers between two nodes hold far more than a range (tens of MiB on
 * loopback), so a request for the whole rest of a chunk would arrive whole.
 */
export const PEER_FIRST_RANGE_BYTES = 128 * 1024
export const PEER_RANGE_BYTES = 4 * 1024 * 1024
export const PEER_RANGES_OPEN = 2

/**
 * The first range asked of a peer for a chunk a read reaches after sending `sent` bytes: a quarter of
 * that (within the bounds above). A reader that has taken tens of MiB is reading on, and each range
 * costs the peer a request, a file open and a sidecar read (starting every chunk at 128 KiB made
 * 7 ranges of each 10 MiB chunk); what a reader leaving then leaves in flight stays small beside
 * what it took.
 */
export function firstPeerRange(sent: number): number {
  return Math.min(PEER_RANGE_BYTES, Math.max(PEER_FIRST_RANGE_BYTES, 2 ** Math.floor(Math.log2(Math.max(1, sent / 4)))))
}

/** Bytes of a chunk from another node, asked with this node's credential, range after range. */
async function* readPeer(ctx: NodeContext, url: string, chunk: ManifestChunk, from: number, to: number, signal: AbortSignal, firstRange: number): AsyncGenerator<Piece> {
  const target = new URL(`/v1/chunks/${chunk.chunkId}/${chunk.version}`, url)
  const opts = {token: ctx.token, ...(ctx.ca ? {ca: ctx.ca} : {}), signal, alloc: allocRead, pieceBytes: PEER_PIECE_BYTES}
  const open: RangeRequest[] = []
  let asked = from
  let length = firstRange
  const askMore = () => {
    while (open.length < PEER_RANGES_OPEN && asked < to) {
      const end = Math.min(to, asked + length)
      open.push(new RangeRequest(target, asked, end, chunk.sha256, opts))
      asked = end
      length = Math.min(length * 2, PEER_RANGE_BYTES)
    }
  }
  try {
    askMore()
    while (open.length > 0) {
      for await (const piece of open[0]!.pieces()) {
        ctx.metrics.filePeerBytes.inc(sizeOf(piece))
        yield piece
      }
      open.shift()
      askMore()
    }
  } finally {
    for (const left of open) left.cancel() // asked for but not needed: the reader left or this peer failed
  }
}

/** A peer's answer is passed on in pieces of up to this size (and read no further while two wait to be sent). */
export const PEER_PIECE_BYTES = 1024 * 1024

/** Replicas found rotten here (node id/chunk.version -> when reported): reported once, and not read for a minute, while the master has them replaced. */
const reported = new Map<string, number>()

function recentlyRotten(ctx: NodeContext, chunkId: string, version: number): boolean {
  return Date.now() - (reported.get(`${ctx.id}/${chunkId}.${version}`) ?? 0) < 60_000
}

function reportCorrupt(ctx: NodeContext, err: CorruptBlockError): void {
  ctx.metrics.blockChecksumFailures.inc()
  const key = `${ctx.id}/${err.chunkId}.${err.version}`
  ctx.log.warn({event: 'read.corrupt', chunkId: err.chunkId, version: err.version, block: err.block}, `${err.message}: reported to the master as corrupt`)
  if (Date.now() - (reported.get(key) ?? 0) < 10_000) return // one report per replica, not one per request
  reported.set(key, Date.now())
  if (reported.size > 10_000) reported.clear()
  ctx.link.send({type: 'corrupt', chunkId: err.chunkId, version: err.version}).catch((sendErr: Error) =>
    ctx.log.warn({event: 'read.report_failed', chunkId: err.chunkId, version: err.version, error: sendErr.message}, `could not report corrupt chunk: ${sendErr.message}`),
  )
}

/**
 * GET /v1/chunks/:chunkId/:version with an optional single Range: another node reading part of a
 * chunk for a file read. The first blocks are checked before the headers go out, so a rotten
 * replica answers 422 (and is reported) rather than a cut body where it can.
 */
export async function handleChunkRange(ctx: NodeContext, req: IncomingMessage, res: ServerResponse, chunkId: string, version: number): Promise<void> {
  const replica = ctx.store.get(chunkId, version)
  if (!replica || !ctx.ranges) throw new ChunkyError('CHUNK_NOT_FOUND', `chunk ${chunkId} v${version} is not held here`)
  let start = 0
  let end = replica.size
  let partial = false
  if (req.headers.range) {
    const parsed = rangeParser(replica.size, req.headers.range)
    if (parsed === -1 || parsed === -2 || parsed.length !== 1) throw new ChunkyError('BAD_REQUEST', 'one satisfiable byte range, please')
    start = parsed[0]!.start
    end = parsed[0]!.end + 1
    partial = true
  }
  const stop = new AbortController()
  res.on('close', () => !res.writableFinished && stop.abort())
  // A node asks for a range at a time (readPeer): read it in pieces as large as reads get, not from two blocks up as for a seek.
  const pieces = ctx.ranges.readRange(chunkId, version, start, end, {signal: stop.signal, alloc: allocRead, firstReadBlocks: MAX_READ_BLOCKS, onDiskRead: (bytes) => ctx.metrics.fileDiskBytes.inc(bytes)})
  try {
    let piece = await pieces.next()
    res.writeHead(partial ? 206 : 200, {
      'content-type': 'application/octet-stream',
      'content-length': end - start,
      [HEADER_SHA256]: replica.sha256,
      ...(partial ? {'content-range': `bytes ${start}-${end - 1}/${replica.size}`} : {}),
    })
    for (; !piece.done; piece = await pieces.next()) await writePiece(res, [piece.value])
    res.end()
  } catch (err) {
    if (err instanceof CorruptBlockError) reportCorrupt(ctx, err)
    if (stop.signal.aborted) return
    throw err // sendError: a status while it can, else a cut body
  } finally {
    await pieces.return(undefined).catch(() => {})
  }
}
