import type {IncomingMessage, ServerResponse} from 'node:http'
import {z} from 'zod'
import {ChunkyError, isErrorCode, MAX_JSON_BODY} from '../protocol/index.js'

// Helpers both daemons use at their HTTP edge: bounded JSON bodies and the one place where errors
// become responses (credentials are checked in auth.ts).

export async function readJson<T>(req: IncomingMessage, schema: z.ZodType<T>, limit = MAX_JSON_BODY): Promise<T> {
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > limit) throw new ChunkyError('BODY_TOO_LARGE', `JSON bodies are at most ${limit} bytes`)
  const parts: Buffer[] = []
  let seen = 0
  for await (const part of req as AsyncIterable<Buffer>) {
    seen += part.length
    if (seen > limit) throw new ChunkyError('BODY_TOO_LARGE', `JSON bodies are at most ${limit} bytes`)
    parts.push(part)
  }
  const text = Buffer.concat(parts).toString('utf8')
  let json: unknown
  try {
    json = text === '' ? {} : JSON.parse(text)
  } catch {
    throw new ChunkyError('BAD_REQUEST', 'body is not JSON')
  }
  const result = schema.safeParse(json)
  if (!result.success) throw new ChunkyError('BAD_REQUEST', z.prettifyError(result.error))
  return result.data
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, {'content-type': 'application/json', 'content-length': Buffer.byteLength(text)})
  res.end(text)
}

/** The one place an error becomes a response. Unknown errors are 500 with their message. */
export function sendError(res: ServerResponse, err: unknown): void {
  const known = toChunkyError(err)
  if (res.headersSent) {
    res.destroy(known) // too late for a status: cut the body so the reader sees it incomplete
    return
  }
  // A request whose body we did not read: close after answering so the rest is not parsed as a request.
  res.setHeader('connection', 'close')
  sendJson(res, known.status, {error: {code: known.code, message: known.message}})
}

export function toChunkyError(err: unknown): ChunkyError {
  if (err instanceof ChunkyError) return err
  const code = (err as {code?: unknown})?.code
  if (isErrorCode(code)) return new ChunkyError(code, (err as Error).message)
  return new ChunkyError('INTERNAL', err instanceof Error ? err.message : String(err))
}

/** Path segments of the request URL, percent-decoded one by one; undefined if any is malformed. */
export function pathSegments(req: IncomingMessage): string[] | undefined {
  const path = (req.url ?? '/').split('?')[0]!
  try {
    return path.split('/').slice(1).map((segment) => decodeURIComponent(segment))
  } catch {
    return undefined
  }
}

export function queryParam(req: IncomingMessage, name: string): string | undefined {
  return new URL(req.url ?? '/', 'http://x').searchParams.get(name) ?? undefined
}
