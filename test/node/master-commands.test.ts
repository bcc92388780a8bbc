import {randomBytes} from 'node:crypto'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import type {RunningNode} from '../../src/node/index.js'
import {flipByte} from '../chaos/flip-byte.js'
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
  TOKEN,
} from './helpers.js'

// Commands the master sends over the link (issue 3): delete, verify, replicate, report-request; the
// scrubber; and a link that survives garbage.

let dir: string
let master: FakeMaster
let a: RunningNode, b: RunningNode
const dataDir = (id: string) => join(dir, id)

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chunky-node-cmd-'))
  master = await startFakeMaster()
  a = await startTestNode(master, dataDir('ma'), 'ma', {scrubIntervalMs: 300})
  b = await startTestNode(master, dataDir('mb'), 'mb')
})

afterAll(async () => {
  await Promise.all([a, b].map((n) => n?.close()))
  await master?.close()
  await rm(dir, {recursive: true, force: true})
})

async function storeOn(nodeUrl: string, nodeId: string, label: string, version = 1, size = 100_000) {
  const bytes = randomBytes(size)
  const chunkId = chunkIdOf(label)
  const reply = await putChunk(nodeUrl, chunkId, version, bytes, {grant: grantFor(master, chunkId, version, bytes, [nodeId])})
  expect(reply.status).toBe(200)
  return {chunkId, version, bytes, replica: {chunkId, version, size: bytes.length, sha256: sha256(bytes)}}
}


describe('master commands', () => {
  it('delete removes the file and answers deleted', async () => {
    const {chunkId, bytes} = await storeOn(a.url, 'ma', 'to-delete', 2)
    expect(await chunkFiles(dataDir('ma'))).toContain(expectedFile(chunkId, 2, bytes))
    master.send('ma', {type: 'delete', chunkId, version: 2, reason: 'stale'})
    await master.waitFor((m) => m.type === 'deleted' && m.chunkId === chunkId && m.version === 2, 'deleted')
    expect(await chunkFiles(dataDir('ma'))).not.toContain(expectedFile(chunkId, 2, bytes))
    const gone = await send(new URL(`/chunks/${chunkId}/2`, a.url), 'GET', {authorization: `Bearer ${TOKEN}`})
    expect(gone.status).toBe(404)
  })

  it('replicate pulls a tar transfer from another node and the bytes land verified and acked', async () => {
    const first = await storeOn(a.url, 'ma', 'repair-1', 3, 1024 * 1024 + 5)
    const second = await storeOn(a.url, 'ma', 'repair-2', 1, 0)
    const missing = {chunkId: chunkIdOf('not-on-source'), version: 1, size: 10, sha256: sha256(Buffer.alloc(10))}
    master.send('mb', {type: 'replicate', taskId: 't1', source: {id: 'ma', url: a.url}, replicas: [first.replica, second.replica, missing]})
    const done = await master.waitFor((m) => m.type === 'replicated' && m.taskId === 't1', 'replicated')
    expect(done).toMatchObject({ok: [first.replica, second.replica], failed: [{chunkId: missing.chunkId, version: 1}]})
    expect(await chunkFiles(dataDir('mb'))).toEqual(expect.arrayContaining([expectedFile(first.chunkId, 3, first.bytes), expectedFile(second.chunkId, 1, second.bytes)]))
    expect(master.received.some((m) => m.type === 'stored' && m.from === 'mb' && m.replica.chunkId === first.chunkId)).toBe(true)
    const copy = await send(new URL(`/chunks/${first.chunkId}/3`, b.url), 'GET', {authorization: `Bearer ${TOKEN}`})
    expect(copy.body.equals(first.bytes)).toBe(true)
  })

  it('replicate copies several entries at once; a rotten one in the middle fails alone', async () => {
    const held = await Promise.all([0, 1, 2, 3, 4].map((i) => storeOn(a.url, 'ma', `repair-many-${i}`, 1, 300_000 + i)))
    await flipByte(join(dataDir('ma'), 'chunks', expectedFile(held[2]!.chunkId, 1, held[2]!.bytes)), 1000) // rotten on the source
    master.send('mb', {type: 'replicate', taskId: 't-many', source: {id: 'ma', url: a.url}, replicas: held.map((h) => h.replica)})
    const done = await master.waitFor((m) => m.type === 'replicated' && m.taskId === 't-many', 'replicated t-many')
    const good = held.filter((_, i) => i !== 2)
    expect(done).toMatchObject({ok: good.map((h) => h.replica), failed: [{chunkId: held[2]!.chunkId, version: 1}]})
    expect((done as {failed: {error: string}[]}).failed[0]!.error).toMatch(/SHA-256/)
    for (const h of good) {
      expect(master.received.some((m) => m.type === 'stored' && m.from === 'mb' && m.replica.chunkId === h.chunkId)).toBe(true)
      const copy = await send(new URL(`/chunks/${h.chunkId}/1`, b.url), 'GET', {authorization: `Bearer ${TOKEN}`})
      expect(copy.body.equals(h.bytes)).toBe(true)
    }
    expect((await chunkFiles(dataDir('mb'))).filter((f) => f.includes(held[2]!.chunkId))).toEqual([])
  })

  it('replicate refuses bytes that differ from what the master expects', async () => {
    const held = await storeOn(a.url, 'ma', 'repair-wrong-sum', 1, 5000)
    const claimed = {...held.replica, sha256: sha256(randomBytes(8))}
    master.send('mb', {type: 'replicate', taskId: 't2', source: {id: 'ma', url: a.url}, replicas: [claimed]})
    const done = await master.waitFor((m) => m.type === 'replicated' && m.taskId === 't2', 'replicated t2')
    expect(done).toMatchObject({ok: [], failed: [{chunkId: held.chunkId, version: 1}]})
    expect((await chunkFiles(dataDir('mb'))).filter((f) => f.includes(held.chunkId))).toEqual([])
  })

  it('replicate from an unreachable source fails every replica, and the node carries on', async () => {
    const replica = {chunkId: chunkIdOf('nowhere'), version: 1, size: 1, sha256: sha256(Buffer.alloc(1))}
    master.send('mb', {type: 'replicate', taskId: 't3', source: {id: 'gone', url: 'http://127.0.0.1:1'}, replicas: [replica]})
    const done = await master.waitFor((m) => m.type === 'replicated' && m.taskId === 't3', 'replicated t3')
    expect(done).toMatchObject({ok: [], failed: [{chunkId: replica.chunkId}]})
  })

  it('the scrubber reports a flipped byte as corrupt, and verify does too', async () => {
    const {chunkId, bytes} = await storeOn(a.url, 'ma', 'rot', 1, 64 * 1024)
    await flipByte(join(dataDir('ma'), 'chunks', expectedFile(chunkId, 1, bytes)), 4321)
    await master.waitFor((m) => m.type === 'corrupt' && m.from === 'ma' && m.chunkId === chunkId, 'a corrupt report from the scrubber', 5000)

    const other = await storeOn(b.url, 'mb', 'rot-verify', 1, 1000) // mb does not scrub: only verify can find it
    await flipByte(join(dataDir('mb'), 'chunks', expectedFile(other.chunkId, 1, other.bytes)), 10)
    master.send('mb', {type: 'verify', chunkId: other.chunkId, version: 1})
    await master.waitFor((m) => m.type === 'corrupt' && m.from === 'mb' && m.chunkId === other.chunkId, 'a corrupt report from verify')
  })

  it('report-request sends the whole inventory again, ending with done', async () => {
    const held = await storeOn(b.url, 'mb', 'inventory', 5, 10)
    const before = master.received.length
    master.send('mb', {type: 'report-request'})
    const last = await master.waitFor((m) => m.type === 'report' && m.from === 'mb' && m.done && master.received.indexOf(m) >= before, 'a report')
    expect(last.type === 'report' && last.replicas).toContainEqual(held.replica)
  })

  it('garbage on the link is ignored: the node stays up and keeps obeying', async () => {
    for (const junk of ['not json', '{"type":"nope"}', '{"type":"delete","chunkId":"../../etc","version":1,"reason":"stale"}', '[]', 'null']) {
      master.sendRaw('ma', junk)
    }
    master.sendRaw('ma', randomBytes(64), true)
    const {chunkId} = await storeOn(a.url, 'ma', 'after-garbage', 1, 10)
    master.send('ma', {type: 'delete', chunkId, version: 1, reason: 'unreferenced'})
    await master.waitFor((m) => m.type === 'deleted' && m.chunkId === chunkId, 'deleted after garbage')
    expect((await send(new URL('/healthz', a.url), 'GET', {})).status).toBe(200)
  })

  it('sends heartbeats with its space', async () => {
    const beat = await master.waitFor((m) => m.type === 'heartbeat' && m.from === 'mb', 'a heartbeat')
    expect(beat).toMatchObject({usedBytes: expect.any(Number), chunkCount: expect.any(Number)})
    expect(beat.type === 'heartbeat' && beat.freeBytes).toBeGreaterThan(0)
  })
})
