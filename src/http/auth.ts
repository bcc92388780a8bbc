import type {IncomingMessage} from 'node:http'
import {ChunkyError, claimedKind, type CredentialHashes, type CredentialKind, credentialKindOf} from '../protocol/index.js'

// Who may do what. A route names the access it needs; the credential's kind decides. A missing or
// unknown credential is 401; a good credential of the wrong kind is 403 with a message saying which
// credential to use instead.

export type Access = 'read' | 'write' | 'chunk-write' | 'node' | 'node-read'

const ALLOWED: Record<Access, readonly CredentialKind[]> = {
  /** status, ls, manifests, downloading chunks, reporting a bad replica */
  read: ['admin', 'rw', 'ro'],
  /** planning and committing uploads, removing files */
  write: ['admin', 'rw'],
  /** PUT of chunk bytes: from a client (rw) or from the node before in the chain (node) */
  'chunk-write': ['admin', 'rw', 'node'],
  /** the master's WebSocket, repair transfers between nodes */
  node: ['admin', 'node'],
  /** a file's manifest and chunk bytes, also for a node serving a file read (issue 12) on a reader's behalf */
  'node-read': ['admin', 'rw', 'ro', 'node'],
}

/** The bearer credential of a request, or undefined when there is none. */
export function bearer(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization
  if (!header) return undefined
  return /^Bearer (.+)$/.exec(header)?.[1] ?? ''
}

/**
 * Checks the request's credential against the accepted hashes and the access the route needs.
 * Returns the credential's kind; throws UNAUTHORIZED (401) or FORBIDDEN (403) with what to do.
 */
export function authorize(req: IncomingMessage, hashes: CredentialHashes, access: Access): CredentialKind {
  const given = bearer(req)
  if (given === undefined) throw new ChunkyError('UNAUTHORIZED', 'missing credential: pass --token or set CHUNKY_TOKEN (`chunky master` prints the credentials)')
  const kind = credentialKindOf(given, hashes)
  if (!kind) {
    const claimed = claimedKind(given)
    throw new ChunkyError(
      'UNAUTHORIZED',
      claimed
        ? `wrong credential: this ${claimed}- credential is not one of this cluster's (was the cluster secret rotated?): use the ones \`chunky master\` prints now`
        : 'wrong credential: check --token or CHUNKY_TOKEN (`chunky master` prints the credentials)',
    )
  }
  if (!ALLOWED[access].includes(kind)) throw new ChunkyError('FORBIDDEN', wrongKind(kind, access))
  return kind
}

export function allows(kind: CredentialKind, access: Access): boolean {
  return ALLOWED[access].includes(kind)
}

function wrongKind(kind: CredentialKind, access: Access): string {
  if (kind === 'node') return 'this is a node credential (node-…): clients use the read-write (rw-…) or read-only (ro-…) credential that `chunky master` prints'
  if (access === 'node') return `this is a client credential (${kind}-…): nodes join with the node credential (node-…) from the join command \`chunky master\` prints`
  return 'this is a read-only credential (ro-…): uploading and removing need the read-write credential (rw-…) that `chunky master` prints'
}
