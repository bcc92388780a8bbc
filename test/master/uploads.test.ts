import {afterEach, describe, expect, it} from 'vitest'
import {NodeRegistry} from '../../src/master/nodes.js'
import {ReplicaRecords} from '../../src/master/replicas.js'
import {Uploads} from '../../src/master/uploads.js'
import {verifyGrant, type UploadPlan} from '../../src/protocol/index.js'
import {planRequest, testContext} from './helpers.js'

type Setup = Awaited<ReturnType<typeof testContext>>
const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup()
})

async function cluster(opts: {replicas?: number; minReplicas?: number; dir?: string; durable?: () => Promise<void>} = {}) {
  const setup = await testContext(opts)
  cleanups.push(setup.cleanup)
  for (const [id, zone] of [['n1', 'a'], ['n2', 'b'], ['n3', 'c']] as const) setup.addNode(id, zone)
  return {...setup, uploads: new Uploads(setup.ctx), records: new ReplicaRecords(setup.ctx)}
}

/** Every non-skipped chunk stored on its first `copies` targets, as nodes would report it. */
function store(setup: Setup & {records: ReplicaRecords}, plan: UploadPlan, copies: number) {
  for (const chunk of plan.chunks.filter((c) => !c.skip)) {
    for (const target of chunk.targets.slice(0, copies)) {
      const answer = setup.records.stored(target.id, 'L1', {chunkId: chunk.chunkId, version: chunk.version, size: chunk.size, sha256: chunk.sha256})
      expect(answer).toEqual({ok: true})
    }
  }
}

describe('deletes after a commit, with a metadata store apart from the working copy', () => {
  /** A store write the test finishes by hand: resolve, or fail as a lost leadership would. */
  function heldStore() {
    const writes: {resolve(): void; reject(err: Error): void}[] = []
    return {writes, durable: () => new Promise<void>((resolve, reject) => void writes.push({resolve, reject}))}
  }
  const deletesSent = (setup: Setup) => [...setup.sent.values()].flat().filter((m) => m.type === 'delete')
  const until = async (check: () => boolean) => {
    for (let i = 0; i < 100 && !check(); i++) await new Promise((resolve) => setImmediate(resolve))
  }

  async function committedTwice(held: ReturnType<typeof heldStore>) {
    const setup = await cluster({durable: held.durable})
    const plan1 = setup.uploads.plan(planRequest('v.mp4', 100_000))
    store(setup, plan1, 3)
    setup.uploads.commit(plan1.uploadId)
    const changed = planRequest('v.mp4', 100_000, 'b') // both chunks change: v1 of each becomes stale
    const plan2 = setup.uploads.plan(changed)
    store(setup, plan2, 3)
    setup.uploads.commit(plan2.uploadId)
    await until(() => held.writes.length > 0)
    return setup
  }

  it('are sent only once the store holds the commit', async () => {
    const held = heldStore()
    const setup = await committedTwice(held)
    expect(held.writes.length).toBeGreaterThan(0)
    expect(deletesSent(setup)).toEqual([]) // a leader killed now leaves v1 named in the store and on every disk
    for (const write of held.writes.splice(0)) write.resolve()
    await until(() => deletesSent(setup).length === 6)
    expect(deletesSent(setup)).toHaveLength(6) // v1 of 2 chunks on 3 nodes
    expect(deletesSent(setup).every((m) => m.type === 'delete' && m.version === 1 && m.reason === 'stale')).toBe(true)
  })

  it('are never sent when the store write fails (this master no longer leads)', async () => {
    const held = heldStore()
    const setup = await committedTwice(held)
    for (const write of held.writes.splice(0)) write.reject(new Error('lost the leader lock'))
    await until(() => setup.ctx.pendingDeletes.due(0, 100).length === 0)
    expect(deletesSent(setup)).toEqual([])
    expect(setup.ctx.pendingDeletes.due(0, 100)).toEqual([]) // nothing left to resend either
  })
})

describe('version hand-out', () => {
  it('is persisted before the plan is answered: after a reopen the next version is higher', async () => {
    const first = await cluster()
    const plan1 = first.uploads.plan(planRequest('v.mp4', 100_000))
    expect(plan1.chunks.map((c) => c.version)).toEqual([1, 1])
    first.db.close() // nothing committed, nothing stored: only the hand-out itself was persisted

    const second = await cluster({dir: first.dir})
    const plan2 = second.uploads.plan(planRequest('v.mp4', 100_000))
    expect(plan2.chunks.map((c) => c.chunkId)).toEqual(plan1.chunks.map((c) => c.chunkId)) // same identity
    expect(plan2.chunks.map((c) => c.version)).toEqual([2, 2])
  })

  it('signs a grant for exactly the planned bytes and targets, entry node first', async () => {
    const setup = await cluster()
    const plan = setup.uploads.plan(planRequest('v.mp4', 1000, 'a', {entryNode: 'n3'}))
    const chunk = plan.chunks[0]!
    expect(chunk.targets.map((t) => t.id)).toEqual(['n3', 'n1', 'n2'])
    const grant = verifyGrant(chunk.grant, setup.ctx.grantKey, setup.clock.now())
    expect(grant).toMatchObject({chunkId: chunk.chunkId, version: 1, size: 1000, sha256: chunk.sha256, nodes: ['n3', 'n1', 'n2']})
  })

  it('skips unchanged chunks at their version and gives a changed chunk a higher one', async () => {
    const setup = await cluster()
    const plan1 = setup.uploads.plan(planRequest('v.mp4', 200_000))
    store(setup, plan1, 3)
    setup.uploads.commit(plan1.uploadId)

    const changed = planRequest('v.mp4', 200_000)
    changed.chunks[1]!.sha256 = 'f'.repeat(64)
    const plan2 = setup.uploads.plan(changed)
    expect(plan2.chunks.map((c) => [c.skip, c.version])).toEqual([[true, 1], [false, 2], [true, 1], [true, 1]])
    expect(plan2.chunks[0]!.targets).toEqual([])
    expect(plan2.chunks[0]!.grant).toBe('')
  })

  it('resumes an interrupted upload: a planned version with W replicas recorded is skipped', async () => {
    const setup = await cluster()
    const plan1 = setup.uploads.plan(planRequest('v.mp4', 100_000))
    store(setup, {...plan1, chunks: plan1.chunks.slice(0, 1)}, 2) // the client died after chunk 0
    const plan2 = setup.uploads.plan(planRequest('v.mp4', 100_000))
    expect(plan2.chunks.map((c) => [c.skip, c.version])).toEqual([[true, 1], [false, 2]])
    store(setup, plan2, 2)
    expect(setup.uploads.commit(plan2.uploadId)).toMatchObject({name: 'v.mp4', chunks: 2})
  })

  it('hands out nothing when there are fewer than W nodes (NO_NODES rolls the plan back)', async () => {
    const setup = await testContext()
    cleanups.push(setup.cleanup)
    setup.addNode('n1')
    const uploads = new Uploads(setup.ctx)
    expect(() => uploads.plan(planRequest('v.mp4', 1000))).toThrow(expect.objectContaining({code: 'NO_NODES'}))
    expect(setup.db.prepare('SELECT count(*) FROM planned').pluck().get()).toBe(0)
    expect(setup.db.prepare('SELECT count(*) FROM uploads').pluck().get()).toBe(0)
  })
})

describe('commit', () => {
  it('refuses with NOT_DURABLE naming the chunk while it has fewer than W replicas', async () => {
    const setup = await cluster()
    const plan = setup.uploads.plan(planRequest('v.mp4', 100_000))
    store(setup, plan, 1)
    expect(() => setup.uploads.commit(plan.uploadId)).toThrow(expect.objectContaining({code: 'NOT_DURABLE', message: expect.stringContaining('chunk 0 has 1 of the 2')}))
    expect(setup.db.prepare('SELECT count(*) FROM files').pluck().get()).toBe(0)
    store(setup, plan, 2)
    expect(setup.uploads.commit(plan.uploadId).chunks).toBe(2)
    expect(() => setup.uploads.commit(plan.uploadId)).toThrow(expect.objectContaining({code: 'UPLOAD_NOT_FOUND'}))
  })

  it('tells holders of the old version to delete it as stale, and keeps the rows until they confirm', async () => {
    const setup = await cluster()
    const plan1 = setup.uploads.plan(planRequest('v.mp4', 1000, 'a'))
    store(setup, plan1, 3)
    setup.uploads.commit(plan1.uploadId)
    const plan2 = setup.uploads.plan(planRequest('v.mp4', 1000, 'b'))
    store(setup, plan2, 2)
    setup.uploads.commit(plan2.uploadId)
    const deletes = [...setup.sent.values()].flat().filter((m) => m.type === 'delete')
    expect(deletes).toHaveLength(3)
    expect(deletes.every((m) => m.type === 'delete' && m.reason === 'stale' && m.version === 1)).toBe(true)
    expect(setup.db.prepare('SELECT count(*) FROM replicas WHERE version = 1').pluck().get()).toBe(3)
    setup.records.deleted('n1', plan1.chunks[0]!.chunkId, 1)
    expect(setup.db.prepare('SELECT count(*) FROM replicas WHERE version = 1').pluck().get()).toBe(2)
  })

  it('drops the tail of a file that became shorter and has its replicas deleted as unreferenced', async () => {
    const setup = await cluster()
    const plan1 = setup.uploads.plan(planRequest('v.mp4', 200_000))
    store(setup, plan1, 3)
    setup.uploads.commit(plan1.uploadId)
    const plan2 = setup.uploads.plan(planRequest('v.mp4', 65_536))
    expect(plan2.chunks).toHaveLength(1)
    expect(setup.uploads.commit(plan2.uploadId).chunks).toBe(1) // chunk 0 unchanged: skipped
    const tail = plan1.chunks.slice(1).map((c) => c.chunkId)
    const unreferenced = [...setup.sent.values()].flat().filter((m) => m.type === 'delete' && m.reason === 'unreferenced')
    expect(unreferenced).toHaveLength(3 * 3)
    // Retired, not forgotten: no committed version, but the highest version handed out stays.
    const rows = setup.db.prepare(`SELECT committed_version, max_version FROM chunks WHERE chunk_id IN (${tail.map(() => '?').join(',')})`).all(...tail)
    expect(rows).toEqual(tail.map(() => ({committed_version: 0, max_version: 1})))
    expect(setup.db.prepare("SELECT chunk_count FROM files WHERE name = 'v.mp4'").pluck().get()).toBe(1)
  })

  it('versions of (name, index) go on rising when a file is cut short and grows back, or is removed and uploaded again', async () => {
    const setup = await cluster()
    const commit = (size: number, tag: string) => {
      const plan = setup.uploads.plan(planRequest('grow.mp4', size, tag))
      store(setup, plan, 3)
      setup.uploads.commit(plan.uploadId)
      return plan.chunks.map((c) => c.version)
    }
    expect(commit(200_000, 'a')).toEqual([1, 1, 1, 1])
    expect(commit(65_536, 'a')).toEqual([1]) // cut to one chunk: the tail is retired
    expect(commit(200_000, 'b')).toEqual([2, 2, 2, 2]) // grows back: indexes 1-3 continue above v1, not at v1 again
    setup.uploads.remove('grow.mp4')
    expect(commit(200_000, 'c')).toEqual([3, 3, 3, 3])
  })

  it('refuses to lower a version: an older plan committed after a newer one gets VERSION_CONFLICT', async () => {
    const setup = await cluster()
    const older = setup.uploads.plan(planRequest('v.mp4', 1000, 'a'))
    const newer = setup.uploads.plan(planRequest('v.mp4', 1000, 'b'))
    store(setup, older, 2)
    store(setup, newer, 2)
    setup.uploads.commit(newer.uploadId)
    expect(() => setup.uploads.commit(older.uploadId)).toThrow(expect.objectContaining({code: 'VERSION_CONFLICT'}))
  })

  it('refuses a stored replica the master did not plan', async () => {
    const setup = await cluster()
    const plan = setup.uploads.plan(planRequest('v.mp4', 1000, 'a'))
    const chunk = plan.chunks[0]!
    const answer = setup.records.stored('n1', 'L1', {chunkId: chunk.chunkId, version: chunk.version, size: chunk.size, sha256: 'e'.repeat(64)})
    expect(answer.ok).toBe(false)
    expect(setup.sent.get('n1')).toContainEqual({type: 'delete', chunkId: chunk.chunkId, version: 1, reason: 'unreferenced'})
  })

  it('removes a file and asks every holder to delete its replicas', async () => {
    const setup = await cluster()
    const plan = setup.uploads.plan(planRequest('v.mp4', 100_000))
    store(setup, plan, 3)
    setup.uploads.commit(plan.uploadId)
    expect(setup.uploads.remove('v.mp4')).toEqual({name: 'v.mp4', removedChunks: 2})
    expect([...setup.sent.values()].flat().filter((m) => m.type === 'delete')).toHaveLength(6)
    expect(() => setup.uploads.remove('v.mp4')).toThrow(expect.objectContaining({code: 'FILE_NOT_FOUND'}))
  })
})

// NodeRegistry survives a restart: nodes are known but dead until they say hello.
it('remembers nodes across a restart, as dead', async () => {
  const setup = await cluster()
  setup.db.close()
  const again = await testContext({dir: setup.dir})
  cleanups.push(again.cleanup)
  const nodes = new NodeRegistry(again.db, again.clock, 10_000)
  expect(nodes.all().map((n) => [n.id, nodes.isAlive(n.id)])).toEqual([['n1', false], ['n2', false], ['n3', false]])
})

describe('placement over a plan', () => {
  it('spreads several uploads from one client over 8 nodes within 10 % of the mean; the nearest node does not hold everything', async () => {
    const setup = await testContext({replicas: 3, minReplicas: 2})
    cleanups.push(setup.cleanup)
    const ids = Array.from({length: 8}, (_, i) => `n${i + 1}`)
    for (const id of ids) setup.addNode(id, 'z', 1e9)
    const uploads = new Uploads(setup.ctx)
    const records = new ReplicaRecords(setup.ctx)
    const held = new Map(ids.map((id) => [id, 0]))
    for (let u = 0; u < 6; u++) {
      const plan = uploads.plan(planRequest(`talk-${u}.mp4`, 20 * 65_536, `t${u}`, {entryNode: 'n1'}))
      store({...setup, records}, plan, 3)
      uploads.commit(plan.uploadId)
      for (const chunk of plan.chunks) for (const target of chunk.targets) held.set(target.id, held.get(target.id)! + 1)
      for (const id of ids) setup.nodes.heartbeat(id, {freeBytes: 1e9 - held.get(id)! * 65_536, usedBytes: held.get(id)! * 65_536, chunkCount: held.get(id)!})
    }
    const mean = (6 * 20 * 3) / 8
    for (const [id, count] of held) expect(Math.abs(count - mean), `${id} holds ${count}, mean ${mean}`).toBeLessThanOrEqual(0.1 * mean)
    expect(held.get('n1')).toBeLessThan(6 * 20)
  })
})
