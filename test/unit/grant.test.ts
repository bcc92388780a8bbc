import {randomBytes} from 'node:crypto'
import {describe, expect, it} from 'vitest'
import {signGrant, verifyGrant, type GrantPayload} from '../../src/protocol/index.js'

const key = randomBytes(32).toString('hex')
const payload: GrantPayload = {
  chunkId: 'aaaaaaaaaaaaaaaaaaaaaaaa',
  version: 3,
  size: 10,
  sha256: 'b'.repeat(64),
  nodes: ['n1', 'n2'],
  exp: 2_000_000_000_000,
}

describe('write grants', () => {
  it('round-trips a grant signed with the same key', () => {
    expect(verifyGrant(signGrant(payload, key), key, 1_000)).toEqual(payload)
  })

  it('refuses a grant signed with another key', () => {
    const other = randomBytes(32).toString('hex')
    expect(() => verifyGrant(signGrant(payload, other), key, 1_000)).toThrow(/signature/)
  })

  it('refuses an altered payload (a higher version spliced in)', () => {
    const [, sig] = signGrant(payload, key).split('.')
    const forged = Buffer.from(JSON.stringify({...payload, version: 4})).toString('base64url')
    expect(() => verifyGrant(`${forged}.${sig}`, key, 1_000)).toThrow(/signature/)
  })

  it('refuses an expired grant', () => {
    expect(() => verifyGrant(signGrant(payload, key), key, payload.exp + 1)).toThrow(/expired/)
  })

  it.each(['', 'abc', 'a.b.c', '.', 'eyJ9.x'])('refuses malformed %j with a FORBIDDEN error', (grant) => {
    expect(() => verifyGrant(grant, key, 1_000)).toThrow(expect.objectContaining({code: 'FORBIDDEN'}))
  })
})
