import {createServer as createHttpServer, type IncomingMessage, type RequestListener, type Server} from 'node:http'
import {createServer as createHttpsServer} from 'node:https'
import type {Socket} from 'node:net'
import {ChunkyError, HTTP_STATUS} from '../protocol/index.js'

// The limits both daemons put on their HTTP edge, so a stranger cannot hold sockets or memory:
// header size, time to send the headers, time for a whole request, idle keep-alive sockets,
// connections per peer address, and a minimum byte rate on chunk bodies (slow-loris).

export interface HttpLimits {
  /** Largest request head (request line + headers); larger gets 431. */
  maxHeaderBytes: number
  /** The head must arrive within this; else 408 and close. */
  headersTimeoutMs: number
  /** A whole request (head and body) must arrive within this. */
  requestTimeoutMs: number
  /** A keep-alive socket with no request for this long is closed. */
  keepAliveTimeoutMs: number
  /** A socket silent this long (mid-body too) is dropped. */
  socketTimeoutMs: number
  /** How often the server looks for requests past headersTimeoutMs / requestTimeoutMs. */
  checkIntervalMs: number
  /** Open connections one peer address may hold at once; more are cut at once. Node links do not count (below). */
  maxConnectionsPerPeer: number
  /** Node links (WebSockets of authenticated nodes) one address may hold: many nodes may sit behind one NAT. */
  maxNodeLinksPerPeer: number
  /** Chunk bodies slower than this over a whole window are cut (bytes per second). */
  minBodyBytesPerSec: number
  rateWindowMs: number
}

export const DEFAULT_LIMITS: HttpLimits = {
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 20_000,
  requestTimeoutMs: 5 * 60_000,
  keepAliveTimeoutMs: 5_000,
  socketTimeoutMs: 2 * 60_000,
  checkIntervalMs: 5_000,
  maxConnectionsPerPeer: 256,
  maxNodeLinksPerPeer: 16_384,
  minBodyBytesPerSec: 4 * 1024,
  rateWindowMs: 30_000,
}

export interface TlsFiles {
  /** PEM certificate chain and private key. */
  cert: string | Buffer
  key: string | Buffer
}

export interface EdgeOptions {
  limits?: Partial<HttpLimits>
  /** Serve HTTPS (and WSS on upgrade) with this certificate. */
  tls?: TlsFiles
  log?: (line: string) => void
}

/** An HTTP or HTTPS server with every limit applied. */
export function createEdgeServer(handler: RequestListener, opts: EdgeOptions = {}): Server {
  const limits = {...DEFAULT_LIMITS, ...opts.limits}
  const httpOptions = {
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: limits.checkIntervalMs,
  }
  const server: Server = opts.tls
    ? (createHttpsServer({...httpOptions, cert: opts.tls.cert, key: opts.tls.key, minVersion: 'TLSv1.2'}, handler) as unknown as Server)
    : createHttpServer(httpOptions, handler)
  server.timeout = limits.socketTimeoutMs
  limitConnectionsPerPeer(server, limits, opts.log)
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => answerClientError(err, socket))
  if (opts.tls) {
    // A TLS handshake that fails (untrusted client, plain HTTP to an HTTPS port) is the peer's problem.
    server.on('tlsClientError', (_err: Error, socket: Socket) => socket.destroy())
  }
  return server
}

/** Per socket: turns its place in the per-peer count into a node link's (see countAsNodeLink). */
const asNodeLink = new WeakMap<Socket, () => boolean>()

/**
 * A socket that became an authenticated node's WebSocket stops counting against its address's
 * connection limit and counts against the node-link limit instead, so many nodes behind one address do
 * not lock that address out of `status`. Returns false (the caller refuses the link) when the address
 * holds its maximum of node links already.
 */
export function countAsNodeLink(socket: Socket): boolean {
  return asNodeLink.get(socket)?.() ?? true
}

/** Cuts connections beyond `max` from one address; logs at most once a minute per address. */
function limitConnectionsPerPeer(server: Server, limits: HttpLimits, log?: (line: string) => void): void {
  const open = new Map<string, number>()
  const links = new Map<string, number>()
  const loggedAt = new Map<string, number>()
  const less = (counts: Map<string, number>, peer: string) => {
    const left = (counts.get(peer) ?? 1) - 1
    if (left <= 0) counts.delete(peer)
    else counts.set(peer, left)
  }
  server.on('connection', (socket: Socket) => {
    const peer = socket.remoteAddress ?? 'unknown'
    const count = (open.get(peer) ?? 0) + 1
    if (count > limits.maxConnectionsPerPeer) {
      const now = Date.now()
      if (log && now - (loggedAt.get(peer) ?? 0) > 60_000) {
        loggedAt.set(peer, now)
        log(`refused a connection from ${peer}: it already holds ${limits.maxConnectionsPerPeer} (the per-address limit)`)
      }
      socket.destroy()
      return
    }
    open.set(peer, count)
    let counted: Map<string, number> = open
    socket.once('close', () => less(counted, peer))
    asNodeLink.set(socket, () => {
      if (counted === links) return true
      if ((links.get(peer) ?? 0) >= limits.maxNodeLinksPerPeer) return false
      less(open, peer)
      links.set(peer, (links.get(peer) ?? 0) + 1)
      counted = links
      return true
    })
  })
}

/** A request Node could not parse (or took too long to send): answer with a status if still possible, then close. */
function answerClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy()
    return
  }
  const [code, message] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? (['HEADERS_TOO_LARGE', 'request headers are too large'] as const)
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? (['REQUEST_TIMEOUT', 'the request took too long to arrive'] as const)
        : (['BAD_REQUEST', 'malformed HTTP request'] as const)
  const status = HTTP_STATUS[code]
  const body = JSON.stringify({error: {code, message}})
  const reason = {400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large'}[status] ?? 'Error'
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  )
  socket.destroySoon?.()
}

/**
 * Cuts a request body that arrives slower than `minBytesPerSec` over any whole window (a slow-loris
 * sender holding a socket and a temp file). Bytes are counted on the socket, so time spent before the
 * body started counts too; the window is long enough for that not to matter.
 */
export function guardBodyRate(req: IncomingMessage, limits: Partial<HttpLimits> | undefined, onCut: (message: string) => void): void {
  const {minBodyBytesPerSec, rateWindowMs} = {...DEFAULT_LIMITS, ...limits}
  if (!(minBodyBytesPerSec > 0)) return
  const socket = req.socket
  let last = socket.bytesRead
  const timer = setInterval(() => {
    if (req.complete || req.destroyed) return clearInterval(timer)
    const now = socket.bytesRead
    const rate = ((now - last) * 1000) / rateWindowMs
    last = now
    if (rate < minBodyBytesPerSec) {
      clearInterval(timer)
      const message = `request body too slow (${Math.round(rate)} B/s over ${rateWindowMs / 1000}s, at least ${minBodyBytesPerSec} B/s needed)`
      onCut(message)
      req.destroy(new ChunkyError('REQUEST_TIMEOUT', message))
    }
  }, rateWindowMs)
  timer.unref()
  req.once('close', () => clearInterval(timer))
}
