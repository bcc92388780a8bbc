import {createHmac, timingSafeEqual} from 'node:crypto'
import {z} from 'zod'
import {ChunkyError} from './errors.js'
import {FileName, fileNameProblem} from './names.js'

// A share link: the master's signed permission to read one committed name (or every name under a
// prefix) without a credential until `exp`. The token sits in the path, before the name:
//
//   {node-url}/v1/share/{token}/{name, percent-encoded per segment}
//   {node-url}/v1/share/{token}/{prefix}/ + the rest of a name      (a prefix link)
//
// so relative URLs inside a playlist resolve to links carrying the same token, and every node
// accepts the same path (nodes learn the key in `welcome`). Token: base64url(JSON payload) "."
// base64url(HMAC-SHA256(key, "share." + first part)). Write grants are MACed over the bare payload
// and transfer grants over "transfer." + payload; a base64url payload never contains ".", so none of
// the three can pass for another.

export const SHARE_PATH = '/v1/share/'
export const FILES_PATH = '/v1/files/'

export const SharePayload = z
  .object({
    /** Exactly this name… */
    n: FileName.optional(),
    /** …or every name under `p/`. */
    p: FileName.optional(),
    /** Expiry, epoch seconds. */
    exp: z.number().int().positive(),
  })
  .refine((s) => (s.n === undefined) !== (s.p === undefined), 'a share names a file or a prefix, not both')
export type SharePayload = z.infer<typeof SharePayload>

/** POST /api/share body: what to sign and for how long. */
export const ShareRequest = z
  .object({
    name: FileName.optional(),
    prefix: z.string().max(1024).optional(),
    /** Milliseconds from now; at most a year. */
    expiresInMs: z.number().int().positive().max(366 * 24 * 3600 * 1000),
  })
  .refine((s) => (s.name === undefined) !== (s.prefix === undefined), 'give a name or a prefix, not both')
export type ShareRequest = z.infer<typeof ShareRequest>

/** POST /api/share answer: the path to append to any node's URL, and when it stops working. */
export const ShareAnswer = z.object({
  name: z.string(),
  path: z.string().startsWith(SHARE_PATH),
  expiresAt: z.string(),
})
export type ShareAnswer = z.infer<typeof ShareAnswer>

const SHARE_DOMAIN = 'share.'

/** A prefix as a share scope: without trailing slashes, a valid name itself. */
export function normalizePrefix(prefix: string): string {
  const trimmed = prefix.replace(/\/+$/, '')
  const problem = fileNameProblem(trimmed)
  if (problem) throw new ChunkyError('BAD_NAME', `"${prefix}" is not a valid prefix: ${problem}`)
  return trimmed
}

export function signShare(payload: SharePayload, keyHex: string): string {
  const body = Buffer.from(JSON.stringify(payload)).toString('base64url')
  return `${body}.${mac(body, keyHex)}`
}

/** Checks signature and expiry (FORBIDDEN otherwise); the caller checks the name against the scope. */
export function verifyShare(token: string, keyHex: string, nowMs = Date.now()): SharePayload {
  const [body, sig, extra] = token.split('.')
  if (!body || !sig || extra !== undefined) throw new ChunkyError('FORBIDDEN', 'this share link is malformed')
  const expected = Buffer.from(mac(body, keyHex))
  const given = Buffer.from(sig)
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new ChunkyError('FORBIDDEN', 'this share link is not valid (altered, or not signed by this cluster)')
  let json: unknown
  try {
    json = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'))
  } catch {
    throw new ChunkyError('FORBIDDEN', 'this share link is malformed')
  }
  const parsed = SharePayload.safeParse(json)
  if (!parsed.success) throw new ChunkyError('FORBIDDEN', 'this share link is malformed')
  if (parsed.data.exp * 1000 <= nowMs) throw new ChunkyError('FORBIDDEN', `this share link expired at ${new Date(parsed.data.exp * 1000).toISOString()}: ask for a new one`)
  return parsed.data
}

/** Whether a verified share covers `name`. */
export function shareCovers(share: SharePayload, name: string): boolean {
  if (share.n !== undefined) return share.n === name
  return name.startsWith(`${share.p}/`)
}

/** A name as a URL path: each segment percent-encoded, joined by "/". */
export function encodeNamePath(name: string): string {
  return name.split('/').map(encodeURIComponent).join('/')
}

/** The path of a share link: SHARE_PATH + token + "/" + the name (or the prefix and a trailing "/"). */
export function sharePath(token: string, payload: SharePayload): string {
  return payload.n !== undefined ? `${SHARE_PATH}${token}/${encodeNamePath(payload.n)}` : `${SHARE_PATH}${token}/${encodeNamePath(payload.p!)}/`
}

function mac(body: string, keyHex: string): string {
  return createHmac('sha256', Buffer.from(keyHex, 'hex')).update(SHARE_DOMAIN + body).digest('base64url')
}
