import {afterEach, describe, expect, it} from 'vitest'
import {ReplicaRecords} from '../../src/master/replicas.js'
import {TusSessions} from '../../src/master/tus-sessions.js'
import {Uploads} from '../../src/master/uploads.js'
import {DEFAULT_CHUNK_SIZE, type PlannedChunk} from '../../src/protocol/index.js'
import {testContext} from './helpers.js'

// The master's half of tus (tus-sessions.ts): the durable offset moves only past chunks on W nodes,
// the last chunk commits like a CLI upload, and expiry and termination forget the session.
const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup()
})

async function setup(expiryMs = 60_000) {
  const s = await testContext({replicas: 3, minReplicas: 2})
  cleanups.push(s.cleanup)
  for (const [id, zone] of [['n1', 'a'], ['n2', 'b'], ['n3', 'c']] as const) s.addNode(id, zone)
  const uploads = new Uploads(s.ctx)
  return {...s, uploads, records: new ReplicaRecords(s.ctx), tus: new TusSessions(s.ctx, uploads, {expiryMs, maxOpenPerNode: 2})}
}

const sha = (c: string) => c.repeat(64)

describe('tus sessions in the master', () => {
  it('advances only past chunks stored on W nodes, and commits on the last byte', async () => {
    const s = await setup()
    const length = DEFAULT_CHUNK_SIZE + 5
    const session = s.tus.create({name: 'up/a.bin', length, metadata: '', maxSize: null, node: 'n1'})
    expect(session).toMatchObject({offset: 0, holder: 'n1', state: 'open'})
    const store = (chunk: PlannedChunk, nodes: string[]) => {
      for (const node of nodes) s.records.stored(node, 'L1', {chunkId: chunk.chunkId, version: chunk.version, size: chunk.size, sha256: chunk.sha256})
    }
    const first = s.tus.planChunk(session.id, {node: 'n1', epoch: session.epoch, index: 0, size: DEFAULT_CHUNK_SIZE, sha256: sha('a')})
    expect(first.targets[0]!.id).toBe('n1')
    store(first, ['n1'])
    expect(() => s.tus.advance(session.id, {node: 'n1', epoch: session.epoch, index: 0})).toThrow(/not on 2 nodes/)
    expect(s.tus.get(session.id).offset).toBe(0)
    store(first, ['n2'])
    expect(s.tus.advance(session.id, {node: 'n1', epoch: session.epoch, index: 0}).offset).toBe(DEFAULT_CHUNK_SIZE)

    // another node takes over: the old holder's epoch can no longer plan or advance
    const taken = s.tus.claim(session.id, {node: 'n2'})
    expect(taken.epoch).toBe(session.epoch + 1)
    expect(() => s.tus.planChunk(session.id, {node: 'n1', epoch: session.epoch, index: 1, size: 5, sha256: sha('b')})).toThrow(/taken over/)
    expect(() => s.tus.planChunk(session.id, {node: 'n2', epoch: taken.epoch, index: 1, size: 4, sha256: sha('b')})).toThrow(/only the last chunk/)
    const last = s.tus.planChunk(session.id, {node: 'n2', epoch: taken.epoch, index: 1, size: 5, sha256: sha('b')})
    store(last, ['n2', 'n3'])
    expect(s.tus.advance(session.id, {node: 'n2', epoch: taken.epoch, index: 1})).toMatchObject({offset: length, state: 'done'})
    expect(s.db.prepare('SELECT size, chunk_count FROM files WHERE name = ?').get('up/a.bin')).toEqual({size: length, chunk_count: 2})
  })

  it('chunks written at once may be stored in any order: the offset moves past every stored chunk from it on, and commits once', async () => {
    const s = await setup()
    const length = 2 * DEFAULT_CHUNK_SIZE + 5
    const session = s.tus.create({name: 'up/b.bin', length, metadata: '', maxSize: null, node: 'n1'})
    const plan = (index: number, size: number, c: string) => s.tus.planChunk(session.id, {node: 'n1', epoch: session.epoch, index, size, sha256: sha(c)})
    const chunks = [plan(0, DEFAULT_CHUNK_SIZE, 'a'), plan(1, DEFAULT_CHUNK_SIZE, 'b'), plan(2, 5, 'c')]
    const store = (chunk: PlannedChunk) => {
      for (const node of ['n1', 'n2']) s.records.stored(node, 'L1', {chunkId: chunk.chunkId, version: chunk.version, size: chunk.size, sha256: chunk.sha256})
    }
    const advance = (index: number) => s.tus.advance(session.id, {node: 'n1', epoch: session.epoch, index})
    store(chunks[2]!)
    expect(advance(2)).toMatchObject({offset: 0, state: 'open'}) // chunk 0 is still on its way
    store(chunks[1]!)
    expect(advance(1)).toMatchObject({offset: 0, state: 'open'})
    store(chunks[0]!)
    expect(advance(0)).toMatchObject({offset: length, state: 'done'})
    expect(advance(1)).toMatchObject({offset: length, state: 'done'}) // a late answer to a chunk already counted
    expect(s.db.prepare('SELECT size, chunk_count FROM files WHERE name = ?').get('up/b.bin')).toEqual({size: length, chunk_count: 3})
    expect(() => plan(0, DEFAULT_CHUNK_SIZE, 'a')).toThrow(/complete and committed/)
  })

  it('a deferred length given once every chunk is stored (an empty last PATCH on a chunk boundary) commits', async () => {
    const s = await setup()
    const session = s.tus.create({name: 'up/deferred.bin', length: null, metadata: '', maxSize: null, node: 'n1'})
    const chunk = s.tus.planChunk(session.id, {node: 'n1', epoch: session.epoch, index: 0, size: DEFAULT_CHUNK_SIZE, sha256: sha('a')})
    for (const node of ['n1', 'n2']) s.records.stored(node, 'L1', {chunkId: chunk.chunkId, version: chunk.version, size: chunk.size, sha256: chunk.sha256})
    expect(s.tus.advance(session.id, {node: 'n1', epoch: session.epoch, index: 0})).toMatchObject({offset: DEFAULT_CHUNK_SIZE, length: null, state: 'open'})
    expect(s.tus.claim(session.id, {node: 'n1', length: DEFAULT_CHUNK_SIZE})).toMatchObject({offset: DEFAULT_CHUNK_SIZE, length: DEFAULT_CHUNK_SIZE, state: 'done'})
    expect(s.db.prepare('SELECT size, chunk_count FROM files WHERE name = ?').get('up/deferred.bin')).toEqual({size: DEFAULT_CHUNK_SIZE, chunk_count: 1})
  })

  it('expires an unfinished session (410 from then on) and refuses more open sessions than the cap', async () => {
    const s = await setup(1000)
    const a = s.tus.create({name: 'up/a.bin', length: 10, metadata: '', maxSize: null, node: 'n1'})
    s.tus.create({name: 'up/b.bin', length: 10, metadata: '', maxSize: null, node: 'n1'})
    expect(() => s.tus.create({name: 'up/c.bin', length: 10, metadata: '', maxSize: null, node: 'n1'})).toThrow(/unfinished uploads/)
    s.clock.t += 1001
    expect(() => s.tus.get(a.id)).toThrow(expect.objectContaining({code: 'UPLOAD_EXPIRED'}))
    expect(s.tus.expire()).toBe(2)
    expect(() => s.tus.get(a.id)).toThrow(expect.objectContaining({code: 'UPLOAD_EXPIRED'}))
    s.tus.create({name: 'up/c.bin', length: 10, metadata: '', maxSize: null, node: 'n1'}) // room again
  })

  it('refuses a length over the upload link limit, and forgets a terminated session (404)', async () => {
    const s = await setup()
    expect(() => s.tus.create({name: 'up/a.bin', length: 11, metadata: '', maxSize: 10, node: 'n1'})).toThrow(/at most 10 bytes/)
    const deferred = s.tus.create({name: 'up/a.bin', length: null, metadata: '', maxSize: 10, node: 'n1'})
    expect(() => s.tus.claim(deferred.id, {node: 'n1', length: 11})).toThrow(/at most 10 bytes/)
    s.tus.terminate(deferred.id)
    expect(() => s.tus.get(deferred.id)).toThrow(expect.objectContaining({code: 'UPLOAD_NOT_FOUND'}))
  })

  it('a final upload keeps its partial uploads, in order, for HEAD; the joined partials are gone', async () => {
    const s = await setup()
    const finished = (size: number, c: string) => {
      const partial = s.tus.create({name: null, partial: true, length: size, metadata: '', maxSize: null, node: 'n1'})
      const chunk = s.tus.planChunk(partial.id, {node: 'n1', epoch: partial.epoch, index: 0, size, sha256: sha(c)})
      for (const node of ['n1', 'n2']) s.records.stored(node, 'L1', {chunkId: chunk.chunkId, version: chunk.version, size, sha256: chunk.sha256})
      expect(s.tus.advance(partial.id, {node: 'n1', epoch: partial.epoch, index: 0})).toMatchObject({state: 'done', partial: true, parts: null})
      return partial.id
    }
    const [b, a] = [finished(3, 'b'), finished(5, 'a')]
    const final = s.tus.concat({name: 'up/joined.bin', parts: [a, b], metadata: '', maxSize: null, link: null, node: 'n2'})
    expect(s.tus.get(final.id)).toMatchObject({name: 'up/joined.bin', length: 8, offset: 8, state: 'done', partial: false, parts: [a, b]})
    expect(() => s.tus.get(a)).toThrow(expect.objectContaining({code: 'UPLOAD_NOT_FOUND'}))
  })
})
