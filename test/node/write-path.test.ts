import {randomBytes} from 'node:crypto'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import type {RunningNode} from '../../src/node/index.js'
import {signGrant} from '../../src/protocol/index.js'
import {
  chunkFiles,
  chunkIdOf,
  expectedFile,
  type FakeMaster,
  grantFor,
  putChunk,
  send,
  sha256,
  startFakeMaster,
  startTestNode,
  targetOf,
  TOKEN,
} from './helpers.js'

// The write path of issue 2 on real nodes (port 0) linked to a fake master: grants are checked before
// the body is read, bytes land durably under their versioned name, and a chain of three stores on all.

let dir: string
let master: FakeMaster
let a: RunningNode, b: RunningNode, c: RunningNode
const dataDir = (id: string) => join(dir, id)

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chunky-node-write-'))
  master = await startFakeMaster()
  a = await startTestNode(master, dataDir('na'), 'na')
  b = await startTestNode(master, dataDir('nb'), 'nb')
  c = await startTestNode(master, dataDir('nc'), 'nc')
})

afterAll(async () => {
  await Promise.all([a, b, c].map((n) => n?.close()))
  await master?.close()
  await rm(dir, {recursive: true, force: true})
})

describe('PUT /chunks/:id/:version', () => {
  it('stores a granted chunk durably under <id>.<version>.<sha256>, acked by the master', async () => {
    const bytes = randomBytes(300_000)
    const id = chunkIdOf('single')
    const reply = await putChunk(a.url, id, 1, bytes, {grant: grantFor(master, id, 1, bytes, ['na'])})
    expect(reply.status).toBe(200)
    expect(reply.json()).toEqual({stored: [{node: 'na', version: 1, sha256: sha256(bytes)}], failed: []})
    expect(await chunkFiles(dataDir('na'))).toContain(expectedFile(id, 1, bytes))
    const stored = await master.waitFor((m) => m.type === 'stored' && m.from === 'na' && m.replica.chunkId === id)
    expect(stored).toMatchObject({replica: {chunkId: id, version: 1, size: bytes.length, sha256: sha256(bytes)}})
  })

  it('pushes along a chain of three: every node stores it and is listed in stored', async () => {
    const bytes = randomBytes(3 * 1024 * 1024 + 17)
    const id = chunkIdOf('chain')
    const grant = grantFor(master, id, 4, bytes, ['na', 'nb', 'nc'])
    const reply = await putChunk(a.url, id, 4, bytes, {grant, chain: [targetOf(b), targetOf(c)]})
    expect(reply.status).toBe(200)
    const result = reply.json()
    expect(result.failed).toEqual([])
    expect(result.stored.map((s: {node: string}) => s.node)).toEqual(['na', 'nb', 'nc'])
    for (const node of ['na', 'nb', 'nc']) expect(await chunkFiles(dataDir(node))).toContain(expectedFile(id, 4, bytes))
  })

  it('refuses a wrong checksum with 422 and leaves nothing on any node of the chain', async () => {
    const bytes = randomBytes(1024 * 1024)
    const id = chunkIdOf('bad-checksum')
    const grant = grantFor(master, id, 1, bytes, ['na', 'nb', 'nc'])
    const other = randomBytes(bytes.length)
    const reply = await putChunk(a.url, id, 1, other, {grant, chain: [targetOf(b), targetOf(c)]})
    expect(reply.status).toBe(422)
    expect(reply.json().error.code).toBe('CHECKSUM_MISMATCH')
    expect(reply.json().error.message).toContain(sha256(bytes))
    for (const node of ['na', 'nb', 'nc']) {
      expect((await chunkFiles(dataDir(node))).filter((f) => f.includes(id))).toEqual([])
    }
  })

  it('refuses a body whose length differs from the grant before reading it', async () => {
    const bytes = randomBytes(1000)
    const id = chunkIdOf('length')
    const grant = grantFor(master, id, 1, bytes, ['na'])
    const longer = await putChunk(a.url, id, 1, randomBytes(1001), {grant})
    expect(longer.status).toBe(413)
    expect(longer.json().error.code).toBe('CHUNK_TOO_LARGE')
    const shorter = await putChunk(a.url, id, 1, randomBytes(999), {grant})
    expect(shorter.status).toBe(422)
    expect(shorter.json().error.code).toBe('LENGTH_MISMATCH')
    expect((await chunkFiles(dataDir('na'))).filter((f) => f.includes(id))).toEqual([])
  })

  it('refuses a wrong or missing token with 401', async () => {
    const bytes = randomBytes(10)
    const id = chunkIdOf('token')
    const grant = grantFor(master, id, 1, bytes, ['na'])
    const wrong = await putChunk(a.url, id, 1, bytes, {grant, token: 'not-the-token'})
    expect(wrong.status).toBe(401)
    expect(wrong.json().error.code).toBe('UNAUTHORIZED')
    const missing = await send(new URL(`/chunks/${id}/1`, a.url), 'GET', {})
    expect(missing.status).toBe(401)
  })

  it('refuses forged, expired, missing and mismatched grants with 403', async () => {
    const bytes = randomBytes(100)
    const id = chunkIdOf('grants')
    const payload = {chunkId: id, version: 2, size: bytes.length, sha256: sha256(bytes), nodes: ['na'], exp: Date.now() + 60_000}
    const cases: Array<[string, string | undefined]> = [
      ['forged', signGrant(payload, randomBytes(32).toString('hex'))],
      ['expired', signGrant({...payload, exp: Date.now() - 1}, master.grantKey)],
      ['missing', undefined],
      ['garbage', 'not.a.grant'],
      ['other version', signGrant({...payload, version: 3}, master.grantKey)],
      ['other chunk', signGrant({...payload, chunkId: chunkIdOf('other')}, master.grantKey)],
      ['node not in grant', signGrant({...payload, nodes: ['nb']}, master.grantKey)],
    ]
    for (const [label, grant] of cases) {
      const reply = await putChunk(a.url, id, 2, bytes, {grant})
      expect(reply.status, label).toBe(403)
      expect(reply.json().error.code, label).toBe(label === 'expired' ? 'GRANT_EXPIRED' : 'FORBIDDEN')
    }
    const outsider = await putChunk(a.url, id, 2, bytes, {
      grant: signGrant(payload, master.grantKey),
      chain: [{id: 'intruder', url: 'http://127.0.0.1:1', zone: ''}],
    })
    expect(outsider.status).toBe(403)
    expect(outsider.json().error.message).toContain('intruder')
    expect((await chunkFiles(dataDir('na'))).filter((f) => f.includes(id))).toEqual([])
  })

  it('refuses bad paths and a malformed chain header with 400', async () => {
    const bytes = randomBytes(10)
    const id = chunkIdOf('paths')
    const grant = grantFor(master, id, 1, bytes, ['na'])
    expect((await putChunk(a.url, '..%2F..%2Fetc', 1, bytes, {grant})).status).toBe(400)
    expect((await putChunk(a.url, id, 0, bytes, {grant})).status).toBe(400)
    expect((await putChunk(a.url, id, 1, bytes, {grant, chain: '{not json'})).status).toBe(400)
    expect((await putChunk(a.url, id, 1, bytes, {grant, chain: '[{"id":1}]'})).status).toBe(400)
  })
})

describe('GET /chunks/:id/:version and /healthz', () => {
  it('returns exactly the stored bytes with their checksum, and 404 for a version not held', async () => {
    const bytes = randomBytes(200_000)
    const id = chunkIdOf('read-back')
    expect((await putChunk(a.url, id, 7, bytes, {grant: grantFor(master, id, 7, bytes, ['na'])})).status).toBe(200)
    const reply = await send(new URL(`/chunks/${id}/7`, a.url), 'GET', {authorization: `Bearer ${TOKEN}`})
    expect(reply.status).toBe(200)
    expect(reply.headers['x-chunky-sha256']).toBe(sha256(bytes))
    expect(reply.headers['content-length']).toBe(String(bytes.length))
    expect(reply.body.equals(bytes)).toBe(true)
    for (const version of [6, 8]) {
      const missing = await send(new URL(`/chunks/${id}/${version}`, a.url), 'GET', {authorization: `Bearer ${TOKEN}`})
      expect(missing.status).toBe(404)
      expect(missing.json().error.code).toBe('CHUNK_NOT_FOUND')
    }
  })

  it('refuses a malformed transfer request and unknown routes', async () => {
    const auth = {authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json'}
    const garbage = await send(new URL('/transfer', a.url), 'POST', auth, Buffer.from('{"replicas": "all of them"}'))
    expect(garbage.status).toBe(400)
    expect(garbage.json().error.code).toBe('BAD_REQUEST')
    expect((await send(new URL('/transfer', a.url), 'POST', auth, Buffer.from('not json'))).status).toBe(400)
    expect((await send(new URL('/nothing/here', a.url), 'GET', auth)).status).toBe(404)
    expect((await send(new URL('/transfer', a.url), 'POST', {}, Buffer.from('{}'))).status).toBe(401)
  })

  it('answers /healthz without a credential', async () => {
    const reply = await send(new URL('/healthz', a.url), 'GET', {})
    expect(reply.status).toBe(200)
    expect(reply.json()).toEqual({ok: true, role: 'node', id: 'na'})
  })
})
