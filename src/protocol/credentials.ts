import {createHash, createHmac, timingSafeEqual} from 'node:crypto'
import {z} from 'zod'

// Credential kinds. Everything is derived from the one cluster secret, so nothing new is stored:
// `<kind>-<hex HMAC-SHA256(secret, "chunky credential <kind>")>`. The prefix makes a credential of the
// wrong kind recognisable (403 with a message saying which one to use) instead of merely "wrong" (401).
//
//   admin  the cluster secret itself: everything (kept valid so one token still runs a whole cluster)
//   node   join the master's WebSocket, chain-forward chunk writes, pull repair transfers
//   rw     clients: status, ls, download, upload, rm
//   ro     clients: status, ls, download

export const DERIVED_KINDS = ['node', 'rw', 'ro'] as const
export type DerivedKind = (typeof DERIVED_KINDS)[number]
export type CredentialKind = 'admin' | DerivedKind

export function deriveCredential(secret: string, kind: DerivedKind): string {
  return `${kind}-${createHmac('sha256', secret).update(`chunky credential ${kind}`).digest('hex')}`
}

export function deriveCredentials(secret: string): Record<DerivedKind, string> {
  return {node: deriveCredential(secret, 'node'), rw: deriveCredential(secret, 'rw'), ro: deriveCredential(secret, 'ro')}
}

/** SHA-256 (hex) of a credential: what the master gives nodes so they can check credentials without knowing them. */
export function credentialHash(credential: string): string {
  return createHash('sha256').update(credential).digest('hex')
}

const HashHex = z.string().regex(/^[0-9a-f]{64}$/)
/** The hash of every accepted credential, by kind (sent to nodes in `welcome`). */
export const CredentialHashes = z.object({admin: HashHex, node: HashHex, rw: HashHex, ro: HashHex})
export type CredentialHashes = z.infer<typeof CredentialHashes>

export function credentialHashes(secret: string): CredentialHashes {
  const derived = deriveCredentials(secret)
  return {admin: credentialHash(secret), node: credentialHash(derived.node), rw: credentialHash(derived.rw), ro: credentialHash(derived.ro)}
}

/**
 * Which kind `given` is, or undefined when it matches none. Every kind is compared, in constant time,
 * whatever matched first, so the time taken says nothing about the credential.
 */
export function credentialKindOf(given: string, hashes: CredentialHashes): CredentialKind | undefined {
  const digest = createHash('sha256').update(given).digest()
  let found: CredentialKind | undefined
  for (const kind of ['admin', 'node', 'rw', 'ro'] as const) {
    if (timingSafeEqual(digest, Buffer.from(hashes[kind], 'hex')) && found === undefined) found = kind
  }
  return found
}

/** The kind a credential claims by its prefix (only to word a refusal; proves nothing). */
export function claimedKind(given: string): DerivedKind | undefined {
  const prefix = /^(node|rw|ro)-[0-9a-f]{64}$/.exec(given)?.[1]
  return prefix as DerivedKind | undefined
}
