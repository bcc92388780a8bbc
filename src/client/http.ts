import {request as plainRequest, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders} from 'node:http'
import {request as tlsRequest} from 'node:https'
import type {Readable} from 'node:stream'

// The client's HTTP, on node:http directly. A 10 MiB chunk goes through one request with no extra
// stream layers, and Node's global agents keep connections alive between chunks (and carry the
// --ca of tls-files.ts). It also keeps start-up short: no HTTP library to import.

/** No answer came (refused, reset, timed out, TLS refused…): `code` says which, like ECONNREFUSED. */
export class NetworkError extends Error {
  override name = 'NetworkError'
  constructor(
    readonly code: string,
    message = code,
  ) {
    super(message)
  }
}

/** Writes a request body (without ending it); a rejection aborts the request with that error. */
export type BodyWriter = (request: ClientRequest) => Promise<void>

export interface SendOptions {
  method: string
  headers?: OutgoingHttpHeaders
  /** A string or buffer, a stream piped into the request, or a writer (their own errors reject as they are). */
  body?: string | Buffer | Readable | BodyWriter
  /** Until the connection is made (a reused keep-alive connection is already made). */
  connectTimeoutMs?: number
  /** Longest silence on the connection, sending or receiving. */
  idleTimeoutMs?: number
  /** Until the response headers arrive: the whole exchange for a small body, the server's work for a PUT. */
  responseTimeoutMs?: number
  signal?: AbortSignal
  /** Body bytes handed to the connection so far (a stream body only). */
  onSent?: (bytes: number) => void
}

/**
 * Sends one request and resolves with the response once its headers arrive (any status). Rejects
 * with NetworkError when no answer came. The idle timeout keeps watching while the caller reads the
 * body; reading errors then surface on the response stream.
 */
export function send(url: URL, opts: SendOptions): Promise<IncomingMessage> {
  return new Promise<IncomingMessage>((resolve, reject) => {
    if (opts.signal?.aborted) return reject(new NetworkError('ABORTED', 'the request was aborted'))
    const request = (url.protocol === 'https:' ? tlsRequest : plainRequest)(url, {method: opts.method, headers: opts.headers})
    let answered = false
    let bodyError: Error | undefined
    const timers: NodeJS.Timeout[] = []
    const fail = (code: string, message: string) => request.destroy(new NetworkError(code, message))
    const after = (ms: number | undefined, code: string, message: string) => {
      if (ms !== undefined) timers.push(setTimeout(() => fail(code, message), ms))
    }
    const clearTimers = () => timers.splice(0).forEach(clearTimeout)
    const onAbort = () => fail('ABORTED', 'the request was aborted')
    opts.signal?.addEventListener('abort', onAbort, {once: true})
    const done = () => {
      clearTimers()
      opts.signal?.removeEventListener('abort', onAbort)
    }

    after(opts.responseTimeoutMs, 'ETIMEDOUT', `no answer within ${opts.responseTimeoutMs} ms`)
    if (opts.idleTimeoutMs !== undefined) request.setTimeout(opts.idleTimeoutMs, () => fail('ETIMEDOUT', `the connection was idle for ${opts.idleTimeoutMs} ms`))
    request.on('socket', (socket) => {
      if (!socket.connecting || opts.connectTimeoutMs === undefined) return
      const timer = setTimeout(() => fail('ETIMEDOUT', `no connection within ${opts.connectTimeoutMs} ms`), opts.connectTimeoutMs)
      socket.once('connect', () => clearTimeout(timer))
      socket.once('close', () => clearTimeout(timer))
    })
    request.on('response', (response) => {
      answered = true
      clearTimers() // the idle timeout (on the socket) stays while the body is read
      response.once('close', done)
      resolve(response)
    })
    request.on('error', (err: Error & {code?: string}) => {
      done()
      if (answered) return // the response stream reports it to whoever reads the body
      if (bodyError) return reject(bodyError)
      reject(err instanceof NetworkError ? err : new NetworkError(err.code ?? 'network error', err.message))
    })
    request.on('close', () => {
      if (!answered) done()
    })

    const body = opts.body
    if (body === undefined || typeof body === 'string' || Buffer.isBuffer(body)) {
      request.end(body)
      return
    }
    if (typeof body === 'function') {
      body(request).then(
        () => request.end(),
        (err: Error) => {
          bodyError = err
          request.destroy(err)
        },
      )
      return
    }
    let sent = 0
    body.on('data', (part: Buffer) => {
      sent += part.length
      opts.onSent?.(sent)
    })
    body.once('error', (err) => {
      bodyError = err
      request.destroy(err)
    })
    request.once('close', () => body.destroy())
    body.pipe(request)
  })
}

/**
 * Writes `data` and resolves once the connection has taken it (the buffer may then be reused);
 * rejects if the request closes first.
 */
export function writeBody(request: ClientRequest, data: Buffer): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onClose = () => reject(new NetworkError('ECONNRESET', 'the connection closed while the body was being sent'))
    request.once('close', onClose)
    request.write(data, (err) => {
      request.off('close', onClose)
      if (err) reject(err)
      else resolve()
    })
  })
}

/** The whole response body as text, refusing more than `limit` bytes. */
export async function readText(response: IncomingMessage, limit = 64 * 1024 * 1024): Promise<string> {
  const parts: Buffer[] = []
  let length = 0
  try {
    for await (const part of response as AsyncIterable<Buffer>) {
      length += part.length
      if (length > limit) {
        response.destroy()
        throw new NetworkError('ETOOBIG', `the answer is larger than ${limit} bytes`)
      }
      parts.push(part)
    }
  } catch (err) {
    if (err instanceof NetworkError) throw err
    const code = (err as {code?: string}).code
    throw new NetworkError(code ?? 'ECONNRESET', `the answer was cut short (${err instanceof Error ? err.message : String(err)})`)
  }
  return Buffer.concat(parts).toString('utf8')
}

/** Sends and reads the whole answer, within `totalTimeoutMs` for both. */
export async function sendForText(url: URL, opts: SendOptions & {totalTimeoutMs?: number}): Promise<{statusCode: number; body: string}> {
  const deadline = new AbortController()
  const timer = opts.totalTimeoutMs === undefined ? undefined : setTimeout(() => deadline.abort(), opts.totalTimeoutMs)
  const signal = opts.signal ? AbortSignal.any([opts.signal, deadline.signal]) : deadline.signal
  const onDeadline = () => response?.destroy(new NetworkError('ETIMEDOUT', `no full answer within ${opts.totalTimeoutMs} ms`))
  let response: IncomingMessage | undefined
  deadline.signal.addEventListener('abort', onDeadline, {once: true})
  try {
    response = await send(url, {...opts, signal})
    const body = await readText(response)
    return {statusCode: response.statusCode ?? 0, body}
  } catch (err) {
    if (deadline.signal.aborted && !opts.signal?.aborted) throw new NetworkError('ETIMEDOUT', `no full answer within ${opts.totalTimeoutMs} ms`)
    throw err
  } finally {
    clearTimeout(timer)
    deadline.signal.removeEventListener('abort', onDeadline)
  }
}
