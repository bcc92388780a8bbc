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
  /** The signing master's leader epoch and store (messages.ts `fence`): a node refuses a grant of an older leader. */
  fence: z.object({storeId: z.string().min(1).max(64), epoch: z.number().int().nonnegative()}).optional(),
})
export type GrantPayload = z.infer<typeof GrantPayload>

export function signGrant(payload: GrantPayload, keyHex: string): string {
  const body = Buffer.from(JSON.stringify(payload)).toString('base64url')
  return `${body}.${mac(body, keyHex)}`
}

/** Checks the signature and expiry; the caller still checks the payload against the request. */
export function verifyGrant(grant: string, keyHex: string, now = Date.now()): GrantPayload {
  return verifySigned(grant, keyHex, '', GrantPayload, 'write grant', now)
}

// A transfer grant: the master's signed permission for node `target` to pull exactly these replicas
// from node `source` (repair), until `exp`. Signed with the same key over a different domain
// ("transfer."), so a write grant can never pass as a transfer grant or the other way round.

export const TransferGrantPayload = z.object({
  kind: z.literal('transfer'),
  source: NodeId,
  target: NodeId,
  replicas: z.array(z.object({chunkId: ChunkId, version: Version})).min(1).max(1000),
  /** Expiry, epoch milliseconds. */
  exp: z.number().int().positive(),
})
export type TransferGrantPayload = z.infer<typeof TransferGrantPayload>

const TRANSFER_DOMAIN = 'transfer.'

export function signTransferGrant(payload: TransferGrantPayload, keyHex: string): string {
  const body = Buffer.from(JSON.stringify(payload)).toString('base64url')
  return `${body}.${mac(TRANSFER_DOMAIN + body, keyHex)}`
}

export function verifyTransferGrant(grant: string, keyHex: string, now = Date.now()): TransferGrantPayload {
  return verifySigned(grant, keyHex, TRANSFER_DOMAIN, TransferGrantPayload, 'transfer grant', now)
}

function verifySigned<T extends {exp: number}>(grant: string, keyHex: string, domain: string, schema: z.ZodType<T>, what: string, now: number): T {
  const [body, sig, extra] = grant.split('.')
  if (!body || !sig || extra !== undefined) throw new ChunkyError('FORBIDDEN', `${what} is malformed`)
  const expected = Buffer.from(mac(domain + body, keyHex))
  const given = Buffer.from(sig)
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new ChunkyError('FORBIDDEN', `${what} signature is invalid`)
  }
  let json: unknown
  try {
    json = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'))
  } catch {
    throw new ChunkyError('FORBIDDEN', `${what} is malformed`)
  }
  const parsed = schema.safeParse(json)
  if (!parsed.success) throw new ChunkyError('FORBIDDEN', `${what} is malformed`)
  if (parsed.data.exp < now) throw new ChunkyError('GRANT_EXPIRED', `${what} has expired: ask the master for a new plan`)
  return parsed.data
}

function mac(body: string, keyHex: string): string {
  return createHmac('sha256', Buffer.from(keyHex, 'hex')).update(body).digest('base64url')
}
