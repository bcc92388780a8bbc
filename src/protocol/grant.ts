import {createHmac, timingSafeEqual} from 'node:crypto'
import {z} from 'zod'
import {ChunkyError} from './errors.js'
import {ByteCount, ChunkId, NodeId, Sha256Hex, Version} from './names.js'

// A write grant: the master's signed permission to store exactly these bytes (id, version, size,
// SHA-256) on exactly these nodes, until `exp`. Nodes learn the key in `welcome` over their
// authenticated link, so a client can never write a version the master did not plan.
// Format: base64url(JSON payload) "." base64url(HMAC-SHA256(key, first part)).

export const GrantPayload = z.object({
  chunkId: ChunkId,
  version: Version,
  size: ByteCount,
  sha256: Sha256Hex,
  nodes: z.array(NodeId).min(1).max(16),
  /** Expiry, epoch milliseconds. */
  exp: z.number().int().positive(),
})
export type GrantPayload = z.infer<typeof GrantPayload>

export function signGrant(payload: GrantPayload, keyHex: string): string {
  const body = Buffer.from(JSON.stringify(payload)).toString('base64url')
  return `${body}.${mac(body, keyHex)}`
}

/** Checks the signature and expiry; the caller still checks the payload against the request. */
export function verifyGrant(grant: string, keyHex: string, now = Date.now()): GrantPayload {
  const [body, sig, extra] = grant.split('.')
  if (!body || !sig || extra !== undefined) throw new ChunkyError('FORBIDDEN', 'write grant is malformed')
  const expected = Buffer.from(mac(body, keyHex))
  const given = Buffer.from(sig)
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new ChunkyError('FORBIDDEN', 'write grant signature is invalid')
  }
  let json: unknown
  try {
    json = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'))
  } catch {
    throw new ChunkyError('FORBIDDEN', 'write grant is malformed')
  }
  const parsed = GrantPayload.safeParse(json)
  if (!parsed.success) throw new ChunkyError('FORBIDDEN', 'write grant is malformed')
  if (parsed.data.exp < now) throw new ChunkyError('FORBIDDEN', 'write grant has expired: ask the master for a new plan')
  return parsed.data
}

function mac(body: string, keyHex: string): string {
  return createHmac('sha256', Buffer.from(keyHex, 'hex')).update(body).digest('base64url')
}
