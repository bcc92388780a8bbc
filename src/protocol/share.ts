import {createHmac, timingSafeEqual} from 'node:crypto'
import {z} from 'zod'
import {ChunkyError} from './errors.js'
import {FileName, fileNameProblem} from './names.js'
import {TUS_LINK_SEGMENT, TUS_PATH} from './tus.js'

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
  /** SHARE_PATH…, or TUS_PATH… for an upload link (its tus endpoint). */
  path: z.string().refine((path) => path.startsWith(SHARE_PATH) || path.startsWith(TUS_PATH), 'a share path'),
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
  return `${body}.${mac(body, keyHex, SHARE_DOMAIN)}`
}

/** Checks signature and expiry (FORBIDDEN otherwise); the caller checks the name against the scope. */
export function verifyShare(token: string, keyHex: string, nowMs = Date.now()): SharePayload {
  return verifySignedLink(token, keyHex, SHARE_DOMAIN, SharePayload, 'share link', nowMs)
}

// A signed upload link (`chunky share --upload NAME`): the master's permission to upload exactly
// that name through tus, at most `max` bytes, until `exp`; a web page's own backend hands it out.
// Its tus endpoint is {node-url}/tus/u/{token}/ (tus.ts). MACed over "upload." + payload.

export const UploadLinkPayload = z.object({
  u: FileName,
  /** The most bytes the upload may have. */
  max: z.number().int().nonnegative().optional(),
  /** Expiry, epoch seconds. */
  exp: z.number().int().positive(),
})
export type UploadLinkPayload = z.infer<typeof UploadLinkPayload>

/** POST /api/share/upload body (needs the rw credential). */
export const UploadShareRequest = z.object({
  name: FileName,
  maxSize: z.number().int().nonnegative().optional(),
  expiresInMs: z.number().int().positive().max(366 * 24 * 3600 * 1000),
})
export type UploadShareRequest = z.infer<typeof UploadShareRequest>

const UPLOAD_DOMAIN = 'upload.'

export function signUploadLink(payload: UploadLinkPayload, keyHex: string): string {
  const body = Buffer.from(JSON.stringify(payload)).toString('base64url')
  return `${body}.${mac(body, keyHex, UPLOAD_DOMAIN)}`
}

export function uploadLinkPath(token: string): string {
  return `${TUS_PATH}${TUS_LINK_SEGMENT}/${token}/`
}

export function verifyUploadLink(token: string, keyHex: string, nowMs = Date.now()): UploadLinkPayload {
  return verifySignedLink(token, keyHex, UPLOAD_DOMAIN, UploadLinkPayload, 'upload link', nowMs)
}

function verifySignedLink<T extends {exp: number}>(token: string, keyHex: string, domain: string, schema: z.ZodType<T>, what: string, nowMs: number): T {
  const [body, sig, extra] = token.split('.')
  if (!body || !sig || extra !== undefined) throw new ChunkyError('FORBIDDEN', `this ${what} is malformed`)
  const expected = Buffer.from(mac(body, keyHex, domain))
  const given = Buffer.from(sig)
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new ChunkyError('FORBIDDEN', `this ${what} is not valid (altered, or not signed by this cluster)`)
  let json: unknown
  try {
    json = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'))
  } catch {
    throw new ChunkyError('FORBIDDEN', `this ${what} is malformed`)
  }
  const parsed = schema.safeParse(json)
  if (!parsed.success) throw new ChunkyError('FORBIDDEN', `this ${what} is malformed`)
  if (parsed.data.exp * 1000 <= nowMs) throw new ChunkyError('FORBIDDEN', `this ${what} expired at ${new Date(parsed.data.exp * 1000).toISOString()}: ask for a new one`)
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

function mac(body: string, keyHex: string, domain: string): string {
  return createHmac('sha256', Buffer.from(keyHex, 'hex')).update(domain + body).digest('base64url')
}
