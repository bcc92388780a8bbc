import {Agent as PlainAgent, request as plainRequest, type IncomingMessage, type OutgoingHttpHeaders} from 'node:http'
import {Agent as TlsAgent, request as tlsRequest} from 'node:https'
import {ChunkyError} from '../protocol/index.js'

// Connections kept open between requests (a file read asks a peer once per chunk), closed after 2 s
// idle: before the peer's own 5 s keep-alive timeout, so a request never goes out on a socket the
// peer is closing.
const IDLE_MS = 2000
const agents = {plain: new PlainAgent({keepAlive: true, timeout: IDLE_MS}), tls: new TlsAgent({keepAlive: true, timeout: IDLE_MS})}

/**
 * One GET (or HEAD) to the master or another node; resolves with the response once its headers
 * arrive. Aborting `signal` destroys the request, so a reader that left stops the transfer at once.
 */
export function peerGet(url: URL, opts: {headers?: OutgoingHttpHeaders; ca?: string[]; signal?: AbortSignal; timeoutMs?: number}): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) return reject(new ChunkyError('NODE_UNREACHABLE', 'the request was aborted'))
    const tls = url.protocol === 'https:'
    const request = (tls ? tlsRequest : plainRequest)(url, {method: 'GET', headers: opts.headers, agent: tls ? agents.tls : agents.plain, ...(tls && opts.ca ? {ca: opts.ca} : {})})
    const onAbort = () => request.destroy(new ChunkyError('NODE_UNREACHABLE', 'the request was aborted'))
    opts.signal?.addEventListener('abort', onAbort, {once: true})
    const timer = setTimeout(() => request.destroy(new ChunkyError('NODE_UNREACHABLE', `no answer from ${url.origin} within ${opts.timeoutMs ?? 5000} ms`)), opts.timeoutMs ?? 5000)
    request.on('response', (response) => {
      clearTimeout(timer)
      response.once('close', () => opts.signal?.removeEventListener('abort', onAbort))
      resolve(response)
    })
    request.on('error', (err) => {
      clearTimeout(timer)
      opts.signal?.removeEventListener('abort', onAbort)
      reject(err)
    })
    request.end()
  })
}

/** The whole (small) body of a response as text; refuses more than `limit` bytes. */
export async function readBody(response: IncomingMessage, limit: number): Promise<string> {
  const parts: Buffer[] = []
  let seen = 0
  for await (const part of response as AsyncIterable<Buffer>) {
    seen += part.length
    if (seen > limit) {
      response.destroy()
      throw new ChunkyError('BODY_TOO_LARGE', `answer larger than ${limit} bytes`)
    }
    parts.push(part)
  }
  return Buffer.concat(parts).toString('utf8')
}
