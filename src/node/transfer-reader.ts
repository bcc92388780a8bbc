import {connect as tcpConnect, isIP, type Socket} from 'node:net'
import {type ConnectionOptions, connect as tlsConnect} from 'node:tls'
import {
  ChunkyError,
  decodeTransferFrame,
  ErrorBody,
  HEADER_GRANT,
  MAX_TRANSFER_FRAME_HEAD,
  TRANSFER_CONTENT_TYPE,
  type TransferFrame,
  type TransferRequest,
} from '../protocol/index.js'

// The pulling end of a repair transfer (POST /transfer, frames in src/protocol/api.ts). The socket is
// read with Node's `onread` into memory this side chooses for every read: a replica's bytes land in
// one of a few reused buffers, lent to the store's write piece by piece, and frame heads in a small
// one, so no read allocates (fresh buffers for every 64 KiB read, the HTTP body and the archive
// parsing were most of a target's main-thread CPU). TLS sockets honour `onread` too, in reads of one
// TLS record (16 KiB) each.

const READ_BUFFERS = 4
const READ_BUFFER_BYTES = 1024 * 1024
const MAX_RESPONSE_HEAD = 16 * 1024
const MAX_ERROR_BODY = 64 * 1024
const SPARE_READ_BYTES = 64 * 1024

export interface TransferAuth {
  /** This node's credential. */
  token: string
  /** The master's transfer grant from the `replicate` command. */
  grant?: string
  ca?: string[]
}

/**
 * Called for each replica in the order sent, with its bytes as they arrive (lent: ReplicaBody). A
 * returned promise holds the next bytes back until it settles.
 */
export type OnReplica = (replica: TransferFrame, body: ReplicaBody) => Promise<unknown> | void

/**
 * Asks `url` for the replicas in `request` and hands each one to `onReplica`. Resolves at the end
 * frame; rejects when the source refuses (NODE_UNREACHABLE with its reason), the link breaks before
 * the end frame, or `signal` aborts; the replica being received then fails too.
 */
export function pullTransfer(url: URL, auth: TransferAuth, request: TransferRequest, signal: AbortSignal, onReplica: OnReplica): Promise<void> {
  return new Promise((resolve, reject) => {
    const free: Buffer[] = Array.from({length: READ_BUFFERS}, () => Buffer.allocUnsafeSlow(READ_BUFFER_BYTES))
    const small: Buffer = Buffer.allocUnsafeSlow(MAX_RESPONSE_HEAD) // the response head, then each frame's length and JSON
    // 'response': the HTTP status and headers; 'refused': an error body; 'length', 'head', 'body': a
    // frame; 'end': after the end frame.
    let phase: 'response' | 'refused' | 'length' | 'head' | 'body' | 'end' = 'response'
    let filled = 0 // bytes of `small` holding the current part
    let want = MAX_RESPONSE_HEAD // bytes the current part of `small` takes
    let body: ReplicaBody | undefined
    let bodyLeft = 0
    const refusal: Buffer[] = []
    let status = 0
    let armed: Buffer = small.subarray(0, want) // where the next read lands
    let armedBuffer: Buffer | undefined // the read buffer `armed` is part of
    let holds = 0 // onReplica promises not settled
    let paused = false
    let settled = false

    const fail = (err: Error) => {
      if (settled) return
      settled = true
      body?.fail(err)
      socket.destroy()
      reject(err)
    }
    const release = (buffer: Buffer) => {
      free.push(buffer)
      resumeIfReady()
    }
    const resumeIfReady = () => {
      if (!paused || settled || free.length === 0 || holds > 0) return
      paused = false
      socket.resume()
    }

    const startFrame = () => {
      phase = 'length'
      filled = 0
      want = 4
    }
    /** `n` more bytes of the current part are in `small`. */
    const gotSmall = (n: number) => {
      const from = filled
      filled += n
      if (phase === 'response') {
        const end = small.subarray(0, filled).indexOf('\r\n\r\n', Math.max(0, from - 3))
        if (end < 0) {
          if (filled === want) fail(new ChunkyError('NODE_UNREACHABLE', 'the source answered a transfer with a head too large'))
          return
        }
        const head = small.subarray(0, end).toString('latin1')
        status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0)
        const rest = Buffer.from(small.subarray(end + 4, filled)) // `small` is reused for the frames
        if (status !== 200) {
          phase = 'refused'
          refusal.push(rest)
          return
        }
        const type = /\r\ncontent-type:[ \t]*([^\r]*)/i.exec(head)?.[1]?.trim()
        if (type !== TRANSFER_CONTENT_TYPE) return fail(new ChunkyError('NODE_UNREACHABLE', `the source answered a transfer with ${type ?? 'no content type'}`))
        startFrame()
        feed(rest)
        return
      }
      if (filled < want) return
      if (phase === 'length') {
        const length = small.readUInt32BE(0)
        if (length === 0) {
          phase = 'end'
          settled = true
          socket.destroy() // the source closes it too; nothing more is read
          resolve()
          return
        }
        if (length > MAX_TRANSFER_FRAME_HEAD) return fail(new ChunkyError('NODE_UNREACHABLE', `the source sent a transfer frame head of ${length} bytes`))
        phase = 'head'
        filled = 0
        want = length
        return
      }
      const replica = decodeTransferFrame(small.subarray(0, want)) // throws BAD_MESSAGE: the caller fails the transfer
      body = new ReplicaBody(release)
      bodyLeft = replica.size
      const held = onReplica(replica, body)
      if (held) {
        holds++
        void Promise.resolve(held).catch(() => {}).finally(() => {
          holds--
          resumeIfReady()
        })
      }
      if (bodyLeft === 0) endBody()
      else phase = 'body'
    }
    const endBody = () => {
      body!.end()
      body = undefined
      startFrame()
    }
    /** `piece` is the next part of the current replica; `buffer`, the read buffer it lies in (lent), if any. */
    const gotBody = (piece: Buffer, buffer: Buffer | undefined) => {
      bodyLeft -= piece.length
      body!.push(piece, buffer)
      if (bodyLeft === 0) endBody()
    }
    /** Bytes read into somewhere else (the response head's buffer): copied where they belong. */
    const feed = (bytes: Buffer) => {
      while (bytes.length > 0 && !settled) {
        if (phase === 'refused') return void refusal.push(Buffer.from(bytes))
        if (phase === 'end') return fail(new ChunkyError('NODE_UNREACHABLE', 'the source sent bytes after the end of a transfer'))
        if (phase === 'body') {
          const take = Math.min(bodyLeft, bytes.length)
          gotBody(Buffer.from(bytes.subarray(0, take)), undefined)
          bytes = bytes.subarray(take)
          continue
        }
        const take = Math.min(want - filled, bytes.length)
        bytes.copy(small, filled, 0, take)
        bytes = bytes.subarray(take)
        gotSmall(take)
      }
    }
    /** Chooses where the next read lands; false: stop reading until a read buffer is free and no hold is left. */
    const arm = (): boolean => {
      armedBuffer = undefined
      if (phase === 'body') {
        // One is free whenever reading goes on (below), except after a read that came while paused:
        // a TLS socket hands over every record it has decrypted. Such a read gets memory of its own.
        armedBuffer = free.pop()
        armed = armedBuffer ? armedBuffer.subarray(0, Math.min(bodyLeft, READ_BUFFER_BYTES)) : Buffer.allocUnsafe(Math.min(bodyLeft, SPARE_READ_BYTES))
      } else if (phase === 'refused' || phase === 'end') armed = small
      else armed = small.subarray(filled, want)
      return free.length > 0 && holds === 0
    }
    const onRead = (n: number): boolean => {
      if (settled) return false
      try {
        if (phase === 'body') gotBody(armed.subarray(0, n), armedBuffer)
        else if (phase === 'refused') {
          if (refusal.reduce((sum, b) => sum + b.length, 0) < MAX_ERROR_BODY) refusal.push(Buffer.from(armed.subarray(0, n)))
        } else if (phase === 'end') fail(new ChunkyError('NODE_UNREACHABLE', 'the source sent bytes after the end of a transfer'))
        else gotSmall(n)
        if (settled) return false
        if (arm()) return true
      } catch (err) {
        fail(err as Error) // a throw here would take the node down
        return false
      }
      paused = true
      return false
    }

    const onread = {buffer: () => armed, callback: onRead}
    const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80)
    const host = url.hostname.replace(/^\[|\]$/g, '')
    const socket: Socket =
      url.protocol === 'https:'
        ? // the typings leave `onread` out of tls.connect's options, but it is passed on to the socket
          tlsConnect({host, port, onread, ...(auth.ca ? {ca: auth.ca} : {}), ...(isIP(host) ? {} : {servername: host})} as ConnectionOptions)
        : tcpConnect({host, port, onread})
    socket.on('error', fail)
    socket.on('end', () => {
      if (phase !== 'refused') return fail(new ChunkyError('NODE_UNREACHABLE', 'the source closed the transfer before its end'))
      let reason = `HTTP ${status}`
      try {
        const parsed = ErrorBody.safeParse(JSON.parse(Buffer.concat(refusal).toString('utf8')))
        if (parsed.success) reason = `${parsed.data.error.code}: ${parsed.data.error.message}`
      } catch {
        // not JSON: the status says enough
      }
      fail(new ChunkyError('NODE_UNREACHABLE', `source refused the transfer: ${reason}`))
    })
    socket.on('close', () => fail(new ChunkyError('NODE_UNREACHABLE', 'the link to the source closed before the end of the transfer')))
    const onAbort = () => fail(signal.reason as Error)
    if (signal.aborted) return onAbort()
    signal.addEventListener('abort', onAbort, {once: true})
    socket.once('close', () => signal.removeEventListener('abort', onAbort))

    const text = JSON.stringify(request)
    const headers: Record<string, string | number> = {
      host: url.host,
      authorization: `Bearer ${auth.token}`,
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      connection: 'close',
      ...(auth.grant ? {[HEADER_GRANT]: auth.grant} : {}),
    }
    const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}`)
    if (lines.some((line) => /[\r\n]/.test(line))) return fail(new ChunkyError('BAD_REQUEST', 'a transfer header holds a line break'))
    // write, not end: an HTTP server drops the request of a client that half-closes its side
    socket.write(`POST ${url.pathname}${url.search} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n${text}`)
  })
}

/**
 * The bytes of one replica of a transfer, as an async iterable of pieces. Each piece may lie in a read
 * buffer of the transfer, which is read into again once the next piece is asked for (ChunkBody). A
 * consumer that stops early calls drop(), or the pieces it never took would hold the transfer back.
 */
export class ReplicaBody implements AsyncIterable<Buffer> {
  private readonly queue: {piece: Buffer; buffer: Buffer | undefined}[] = []
  private lent: Buffer | undefined
  private waiter: {resolve: (r: IteratorResult<Buffer>) => void; reject: (err: Error) => void} | undefined
  private ended = false
  private failure: Error | undefined
  private dropped = false

  constructor(private readonly release: (buffer: Buffer) => void) {}

  push(piece: Buffer, buffer: Buffer | undefined): void {
    if (this.dropped) return void (buffer && this.release(buffer))
    this.queue.push({piece, buffer})
    this.serve()
  }

  end(): void {
    this.ended = true
    this.serve()
  }

  fail(err: Error): void {
    this.failure ??= err
    this.serve()
  }

  /** Gives every buffer back and takes no more pieces. */
  drop(): void {
    this.dropped = true
    this.giveBack()
    for (const {buffer} of this.queue.splice(0)) if (buffer) this.release(buffer)
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return {
      next: () => {
        this.giveBack() // the consumer is done with the last piece
        return new Promise((resolve, reject) => {
          this.waiter = {resolve, reject}
          this.serve()
        })
      },
      return: async () => {
        this.drop()
        return {done: true, value: undefined}
      },
    }
  }

  private giveBack(): void {
    if (this.lent) this.release(this.lent)
    this.lent = undefined
  }

  private serve(): void {
    const waiter = this.waiter
    if (!waiter) return
    const next = this.queue.shift()
    if (next) {
      this.waiter = undefined
      this.lent = next.buffer
      return waiter.resolve({done: false, value: next.piece})
    }
    if (this.failure || this.dropped) {
      this.waiter = undefined
      return waiter.reject(this.failure ?? new Error('the body was dropped'))
    }
    if (this.ended) {
      this.waiter = undefined
      waiter.resolve({done: true, value: undefined})
    }
  }
}
