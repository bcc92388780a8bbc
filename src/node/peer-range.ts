import {connect as tcpConnect, isIP, type Socket} from 'node:net'
import {type ConnectionOptions, connect as tlsConnect} from 'node:tls'
import {ChunkyError, HEADER_SHA256} from '../protocol/index.js'

// A file read through a node that holds none of it asks the peers for a chunk's bytes a range at a
// time (GET /v1/chunks/:id/:version with a Range). Node's HTTP client allocates a buffer for every
// 64 KiB socket read and passes each through a stream; at a GiB a second that was a large part of the
// reading node's CPU. Here each range is one plain HTTP/1.1 request on a kept-alive connection of our
// own, whose socket is read with `onread` straight into the read buffers the node sends from (lent
// by the caller, taken back once the player's socket has the bytes), a buffer full at a time.

/** Idle connections close after this long: before the peer's own 5 s keep-alive timeout, so a request never goes out on a socket the peer is closing. */
const IDLE_MS = 2000
const MAX_RESPONSE_HEAD = 16 * 1024
const ANSWER_TIMEOUT_MS = 5000

export interface PeerRangeOptions {
  /** This node's credential. */
  token: string
  ca?: string[]
  signal: AbortSignal
  /** Memory for `bytes` of body (a whole buffer each time; what is passed on are parts of it). */
  alloc(bytes: number): Buffer
  /** Bytes of body gathered into one buffer before they are passed on (the first read of a range goes at once: a seek waits for nothing). */
  pieceBytes: number
}

/** Kept-alive connections to each peer (origin), not in use. */
const idle = new Map<string, Connection[]>()

/**
 * One connection to a peer. Its socket reads land where the request using it says (`onread`), so a
 * connection moves from request to request without a listener of Node's in between.
 */
class Connection {
  readonly socket: Socket
  user: RangeRequest | undefined
  private idleTimer: NodeJS.Timeout | undefined

  constructor(readonly origin: string, url: URL, ca: string[] | undefined) {
    const onread = {buffer: () => this.user?.readInto() ?? Buffer.allocUnsafe(MAX_RESPONSE_HEAD), callback: (n: number, buf: Buffer) => this.onRead(n, buf)}
    const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80)
    const host = url.hostname.replace(/^\[|\]$/g, '')
    this.socket =
      url.protocol === 'https:'
        ? // the typings leave `onread` out of tls.connect's options, but it is passed on to the socket
          tlsConnect({host, port, onread, ...(ca ? {ca} : {}), ...(isIP(host) ? {} : {servername: host})} as ConnectionOptions)
        : tcpConnect({host, port, onread})
    this.socket.setNoDelay(true)
    this.socket.on('error', (err) => this.gone(err))
    this.socket.on('end', () => this.gone(new ChunkyError('NODE_UNREACHABLE', 'the peer closed the connection mid-answer')))
    this.socket.on('close', () => this.gone(new ChunkyError('NODE_UNREACHABLE', 'the connection to the peer closed mid-answer')))
  }

  private onRead(n: number, buf: Buffer): boolean {
    const user = this.user
    if (!user) {
      this.socket.destroy() // bytes nobody asked for: this connection is out of step
      return false
    }
    try {
      return user.got(n, buf)
    } catch (err) {
      user.fail(err as Error) // a throw here would take the node down
      return false
    }
  }

  private gone(err: Error): void {
    this.forget()
    this.socket.destroy()
    this.user?.fail(err)
    this.user = undefined
  }

  /** Lent to a request until it calls `release`. */
  take(user: RangeRequest): void {
    this.forget()
    this.user = user
    this.socket.resume() // paused by the last read of the request before
  }

  /** The answer was read to its end: back to the idle ones (or closed, if the peer said so). */
  release(keep: boolean): void {
    this.user = undefined
    if (!keep || this.socket.destroyed) return void this.socket.destroy()
    const list = idle.get(this.origin) ?? []
    idle.set(this.origin, list)
    list.push(this)
    this.idleTimer = setTimeout(() => this.socket.destroy(), IDLE_MS)
    this.idleTimer.unref()
    setImmediate(() => this.user === undefined && this.socket.resume()) // after the last read paused it: an idle connection notices the peer closing it
  }

  private forget(): void {
    clearTimeout(this.idleTimer)
    this.idleTimer = undefined
    const list = idle.get(this.origin)
    const at = list?.indexOf(this) ?? -1
    if (at >= 0) list!.splice(at, 1)
    if (list?.length === 0) idle.delete(this.origin)
  }
}

function connection(url: URL, ca: string[] | undefined): Connection {
  const reuse = idle.get(url.origin)?.pop()
  if (reuse && !reuse.socket.destroyed) return reuse
  return new Connection(url.origin, url, ca)
}

/**
 * GET of bytes [start, end) of `url` (a chunk replica on a peer), asked as soon as it is made; its body
 * comes as pieces from `pieces()`, parts of buffers from `alloc` (the consumer hands them back).
 * Reading stops while two buffers wait, so a request asked ahead holds little. `sha256`: the
 * replica's checksum the answer must name (the peer holds those very bytes for this version).
 */
export class RangeRequest {
  private readonly conn: Connection
  private phase: 'head' | 'body' | 'done' = 'head'
  private head: Buffer = Buffer.allocUnsafe(MAX_RESPONSE_HEAD)
  private headFilled = 0
  private bodyLeft: number
  private filling: Buffer | undefined
  private filled = 0
  private first = true
  private readonly ready: Buffer[] = []
  private readyBytes = 0
  private paused = false
  private failure: Error | undefined
  private wake: (() => void) | undefined
  private keepAlive = true
  private readonly timer: NodeJS.Timeout
  private readonly onAbort = () => this.fail(new ChunkyError('NODE_UNREACHABLE', 'the request was aborted'))

  constructor(url: URL, readonly start: number, readonly end: number, private readonly sha256: string, private readonly opts: PeerRangeOptions) {
    this.bodyLeft = end - start
    this.conn = connection(url, opts.ca)
    this.conn.take(this)
    this.timer = setTimeout(() => this.fail(new ChunkyError('NODE_UNREACHABLE', `no answer from ${url.origin} within ${ANSWER_TIMEOUT_MS} ms`)), ANSWER_TIMEOUT_MS)
    if (opts.signal.aborted) {
      this.onAbort()
      return
    }
    opts.signal.addEventListener('abort', this.onAbort, {once: true})
    const path = `${url.pathname}${url.search}`
    if (/[\r\n]/.test(path + opts.token)) {
      this.fail(new ChunkyError('BAD_REQUEST', 'a peer request header holds a line break'))
      return
    }
    this.conn.socket.write(`GET ${path} HTTP/1.1\r\nhost: ${url.host}\r\nauthorization: Bearer ${opts.token}\r\nrange: bytes=${start}-${end - 1}\r\n\r\n`)
  }

  /** Where the next socket read lands. */
  readInto(): Buffer {
    if (this.phase !== 'body') return this.head.subarray(this.headFilled)
    if (!this.filling) {
      this.filling = this.opts.alloc(this.opts.pieceBytes)
      this.filled = 0
    }
    return this.filling.subarray(this.filled, Math.min(this.filling.length, this.filled + this.bodyLeft))
  }

  /**
   * `n` bytes were read into `buf`; false pauses the socket. `buf` is what readInto gave, except for a
   * read chosen before this request took the connection (or, on TLS, one that came while paused):
   * those bytes are copied where they belong.
   */
  got(n: number, buf: Buffer): boolean {
    if (this.over()) return false
    const mine = this.phase === 'head' ? this.head : this.filling
    if (buf.buffer === mine?.buffer && buf.byteOffset === mine.byteOffset + (this.phase === 'head' ? this.headFilled : this.filled)) this.advance(n)
    else this.accept(buf.subarray(0, n))
    if (this.over()) return false
    if (this.readyBytes >= 2 * this.opts.pieceBytes) {
      this.paused = true
      return false
    }
    return true
  }

  /** The body is whole, or the request failed: nothing more is read for it. */
  private over(): boolean {
    return this.phase === 'done' || this.failure !== undefined
  }

  /** Bytes read somewhere else: copied into place. */
  private accept(bytes: Buffer): void {
    while (bytes.length > 0 && !this.over()) {
      const n = bytes.copy(this.readInto())
      if (n === 0) throw new ChunkyError('NODE_UNREACHABLE', 'the peer sent more than the range')
      bytes = bytes.subarray(n)
      this.advance(n)
    }
  }

  /** `n` more bytes are where readInto said. */
  private advance(n: number): void {
    if (this.phase === 'head') {
      this.headFilled += n
      return this.parseHead()
    }
    this.filled += n
    this.bodyLeft -= n
    // passed on when the buffer is full, the body ends, or it is the range's first read (a seek waits
    // for nothing); a buffer partly passed on is not read into again: it goes back as a whole
    if (this.filled === this.filling!.length || this.bodyLeft === 0 || this.first) {
      this.ready.push(this.filling!.subarray(0, this.filled))
      this.readyBytes += this.filled
      this.first = false
      this.filling = undefined
      this.notify()
    }
    if (this.bodyLeft === 0) {
      this.phase = 'done'
      this.finish(true)
    }
  }

  private parseHead(): void {
    const end = this.head.subarray(0, this.headFilled).indexOf('\r\n\r\n')
    if (end < 0) {
      if (this.headFilled === this.head.length) throw new ChunkyError('NODE_UNREACHABLE', 'the peer answered with a head too large')
      return
    }
    clearTimeout(this.timer)
    const text = this.head.subarray(0, end).toString('latin1')
    const header = (name: string) => new RegExp(`\\r\\n${name}:[ \\t]*([^\\r]*)`, 'i').exec(text)?.[1]?.trim()
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0)
    this.keepAlive = text.startsWith('HTTP/1.1') && !/close/i.test(header('connection') ?? '')
    if (status !== 206) throw new ChunkyError('NODE_UNREACHABLE', `HTTP ${status}`)
    if (header(HEADER_SHA256) !== this.sha256) throw new ChunkyError('NODE_UNREACHABLE', 'the peer holds other bytes for this version')
    const range = `bytes ${this.start}-${this.end - 1}/`
    if (header('transfer-encoding') !== undefined || Number(header('content-length')) !== this.end - this.start || !header('content-range')?.startsWith(range)) {
      throw new ChunkyError('NODE_UNREACHABLE', 'the peer answered another range than asked')
    }
    const rest = this.head.subarray(end + 4, this.headFilled)
    this.head = Buffer.alloc(0)
    this.phase = 'body'
    this.accept(rest)
  }

  fail(err: Error): void {
    if (this.phase === 'done' && !this.failure) return // already whole
    this.failure ??= err
    this.finish(false)
    this.notify()
  }

  private finish(whole: boolean): void {
    clearTimeout(this.timer)
    this.opts.signal.removeEventListener('abort', this.onAbort)
    if (this.conn.user !== this) return
    if (whole) this.conn.release(this.keepAlive)
    else {
      this.conn.user = undefined
      this.conn.socket.destroy() // mid-answer: closing it is what stops the peer
    }
    this.notify()
  }

  private notify(): void {
    this.wake?.()
    this.wake = undefined
  }

  /** The body, as pieces (parts of read buffers); throws if it is not the bytes asked for, or is cut short. */
  async *pieces(): AsyncGenerator<Buffer[]> {
    try {
      for (;;) {
        if (this.ready.length > 0) {
          const piece = this.ready.splice(0)
          this.readyBytes = 0
          if (this.paused && !this.failure && this.phase !== 'done') {
            this.paused = false
            this.conn.socket.resume()
          }
          yield piece
        } else if (this.failure) throw this.failure
        else if (this.phase === 'done') return
        else await new Promise<void>((resolve) => (this.wake = resolve))
      }
    } finally {
      this.cancel()
    }
  }

  /** Not needed (any more): a connection mid-answer is closed, which stops the peer. */
  cancel(): void {
    if (!this.over()) this.fail(new ChunkyError('NODE_UNREACHABLE', 'the range was dropped'))
  }
}
