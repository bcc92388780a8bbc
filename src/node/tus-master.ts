import {request as plainRequest} from 'node:http'
import {request as tlsRequest} from 'node:https'
import type {z} from 'zod'
import {
  ChunkyError,
  ErrorBody,
  isErrorCode,
  MAX_JSON_BODY,
  type PlannedChunk,
  type TusAdvanceRequest,
  TusChunkAnswer,
  type TusChunkRequest,
  type TusClaimRequest,
  type TusConcatRequest,
  type TusCreateRequest,
  TusSession,
} from '../protocol/index.js'
import {readBody} from './peer-get.js'

/** The master's tus session routes (protocol/tus.ts), called with this node's credential. */
export class TusMaster {
  constructor(private readonly opts: {masterUrl: string; token: string; ca?: string[]}) {}

  create(request: TusCreateRequest): Promise<TusSession> {
    return this.call('POST', '', request, TusSession)
  }

  concat(request: TusConcatRequest): Promise<TusSession> {
    return this.call('POST', '/concat', request, TusSession)
  }

  get(id: string): Promise<TusSession> {
    return this.call('GET', `/${id}`, undefined, TusSession)
  }

  claim(id: string, request: TusClaimRequest): Promise<TusSession> {
    return this.call('POST', `/${id}/claim`, request, TusSession)
  }

  planChunk(id: string, request: TusChunkRequest): Promise<PlannedChunk> {
    return this.call('POST', `/${id}/chunk`, request, TusChunkAnswer)
  }

  advance(id: string, request: TusAdvanceRequest): Promise<TusSession> {
    return this.call('POST', `/${id}/advance`, request, TusSession)
  }

  async terminate(id: string): Promise<void> {
    await this.call('DELETE', `/${id}`, undefined, undefined)
  }

  /** One JSON call; the master's refusals come back as ChunkyErrors with its code, a silent master as MASTER_UNREACHABLE. */
  private call<T>(method: string, path: string, body: unknown, schema: z.ZodType<T> | undefined): Promise<T> {
    const url = new URL(`/api/tus${path}`, this.opts.masterUrl)
    const text = body === undefined ? '' : JSON.stringify(body)
    return new Promise<T>((resolve, reject) => {
      const tls = url.protocol === 'https:'
      const req = (tls ? tlsRequest : plainRequest)(url, {
        method,
        headers: {authorization: `Bearer ${this.opts.token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text)},
        ...(tls && this.opts.ca ? {ca: this.opts.ca} : {}),
        timeout: 15_000,
      })
      req.on('timeout', () => req.destroy(new Error('no answer within 15 s')))
      req.on('error', (err) => reject(new ChunkyError('MASTER_UNREACHABLE', `this node cannot reach the master (${err.message}): try again shortly`)))
      req.on('response', (res) => {
        readBody(res, MAX_JSON_BODY)
          .then((answer) => {
            if (res.statusCode === 200) {
              resolve(schema ? schema.parse(JSON.parse(answer)) : (undefined as T))
              return
            }
            let error: {code: string; message: string} | undefined
            try {
              error = ErrorBody.parse(JSON.parse(answer)).error
            } catch {
              // no error body: the status says enough
            }
            const code = error && isErrorCode(error.code) ? error.code : 'MASTER_UNREACHABLE'
            reject(new ChunkyError(code, error?.message ?? `the master answered HTTP ${res.statusCode}`))
          })
          .catch(reject)
      })
      req.end(text)
    })
  }
}
