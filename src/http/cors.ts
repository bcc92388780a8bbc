import type {IncomingMessage, ServerResponse} from 'node:http'
import {TUS_REQUEST_HEADERS, TUS_RESPONSE_HEADERS} from '../protocol/index.js'

// Cross-origin access for pages of other origins (`chunky node --cors-origin ORIGIN`): players built
// on Media Source Extensions fetch ranges with fetch()/XHR and must be allowed to send Range and
// Authorization and to read Content-Range and friends. Only the origins given get anything; the
// lists below are the one place to add headers (tus adds its own request and response headers).

export const CORS_ALLOWED_METHODS = ['GET', 'HEAD', 'OPTIONS', 'POST', 'PATCH', 'DELETE']
export const CORS_ALLOWED_HEADERS = ['Authorization', 'Range', 'If-Range', 'If-None-Match', 'If-Modified-Since', 'Content-Type', ...TUS_REQUEST_HEADERS]
export const CORS_EXPOSED_HEADERS = ['Content-Range', 'Content-Length', 'Accept-Ranges', 'ETag', 'Last-Modified', 'Content-Type', ...TUS_RESPONSE_HEADERS]
const PREFLIGHT_MAX_AGE_S = 600

export interface CorsPolicy {
  /** Origins as the browser sends them (`https://app.example`); '*' allows any. */
  origins: readonly string[]
}

/**
 * Sets the CORS headers a request from an allowed origin needs. Answers a preflight (OPTIONS with
 * Access-Control-Request-Method) itself, without a credential, as browsers send none on it, and
 * returns true; the caller then does nothing more.
 */
export function applyCors(policy: CorsPolicy | undefined, req: IncomingMessage, res: ServerResponse): boolean {
  const origin = req.headers.origin
  const preflight = req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined
  const allowed = origin !== undefined && policy !== undefined && (policy.origins.includes(origin) || policy.origins.includes('*'))
  if (policy && policy.origins.length > 0) res.setHeader('vary', 'Origin') // the answer depends on it: caches must know
  if (allowed) {
    res.setHeader('access-control-allow-origin', origin)
    res.setHeader('access-control-expose-headers', CORS_EXPOSED_HEADERS.join(', '))
  }
  if (!preflight) return false
  if (allowed) {
    res.setHeader('access-control-allow-methods', CORS_ALLOWED_METHODS.join(', '))
    res.setHeader('access-control-allow-headers', CORS_ALLOWED_HEADERS.join(', '))
    res.setHeader('access-control-max-age', String(PREFLIGHT_MAX_AGE_S))
  }
  res.writeHead(204, {'content-length': 0}) // a refused origin gets no allow headers: the browser blocks the request
  res.end()
  return true
}
