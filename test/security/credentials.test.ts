import type {IncomingMessage} from 'node:http'
import {describe, expect, it} from 'vitest'
import {allows, authorize, type Access} from '../../src/http/auth.js'
import {VersionFloor} from '../../src/node/version-floor.js'
import {claimedKind, credentialHashes, credentialKindOf, deriveCredentials} from '../../src/protocol/index.js'

// Unit level: which credential is which kind, what each kind may do, and the node's replay floor.
const SECRET = 'unit-secret'
const CREDS = deriveCredentials(SECRET)
const HASHES = credentialHashes(SECRET)
const reqWith = (authorization?: string) => ({headers: authorization === undefined ? {} : {authorization}}) as IncomingMessage

describe('credential kinds', () => {
  it('recognises each kind by its hash, and nothing else', () => {
    expect(credentialKindOf(SECRET, HASHES)).toBe('admin')
    expect(credentialKindOf(CREDS.node, HASHES)).toBe('node')
    expect(credentialKindOf(CREDS.rw, HASHES)).toBe('rw')
    expect(credentialKindOf(CREDS.ro, HASHES)).toBe('ro')
    expect(credentialKindOf(CREDS.rw + 'x', HASHES)).toBeUndefined()
    expect(credentialKindOf('', HASHES)).toBeUndefined()
    expect(credentialKindOf(deriveCredentials('other').rw, HASHES)).toBeUndefined()
    expect(claimedKind(CREDS.node)).toBe('node')
    expect(claimedKind('node-short')).toBeUndefined()
  })

  it('allows exactly the access table', () => {
    const table: Record<Access, string[]> = {
      read: ['admin', 'rw', 'ro'],
      write: ['admin', 'rw'],
      'chunk-write': ['admin', 'rw', 'node'],
      node: ['admin', 'node'],
      'node-read': ['admin', 'rw', 'ro', 'node'],
    }
    for (const [access, kinds] of Object.entries(table) as Array<[Access, string[]]>) {
      for (const kind of ['admin', 'node', 'rw', 'ro'] as const) expect(allows(kind, access), `${kind} ${access}`).toBe(kinds.includes(kind))
    }
  })

  it('throws 401 for missing, malformed or unknown credentials and 403 for the wrong kind', () => {
    expect(() => authorize(reqWith(), HASHES, 'read')).toThrow(expect.objectContaining({code: 'UNAUTHORIZED'}))
    expect(() => authorize(reqWith('Basic abc'), HASHES, 'read')).toThrow(expect.objectContaining({code: 'UNAUTHORIZED'}))
    expect(() => authorize(reqWith('Bearer nope'), HASHES, 'read')).toThrow(expect.objectContaining({code: 'UNAUTHORIZED'}))
    expect(() => authorize(reqWith(`Bearer ${CREDS.ro}`), HASHES, 'write')).toThrow(expect.objectContaining({code: 'FORBIDDEN'}))
    expect(authorize(reqWith(`Bearer ${CREDS.rw}`), HASHES, 'write')).toBe('rw')
  })
})

describe('the replay floor', () => {
  it('refuses versions below what the node holds or was told is stale; the same version passes', () => {
    const floor = new VersionFloor()
    const id = 'a'.repeat(24)
    floor.held(id, 3)
    expect(() => floor.checkWrite(id, 3)).not.toThrow()
    expect(() => floor.checkWrite(id, 4)).not.toThrow()
    expect(() => floor.checkWrite(id, 2)).toThrow(expect.objectContaining({code: 'VERSION_CONFLICT'}))
    floor.superseded(id, 4)
    expect(() => floor.checkWrite(id, 4)).toThrow(expect.objectContaining({code: 'VERSION_CONFLICT'}))
    expect(() => floor.checkWrite(id, 5)).not.toThrow()
    expect(() => floor.checkWrite('b'.repeat(24), 1)).not.toThrow()
  })
})
