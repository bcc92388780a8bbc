import {afterEach, expect, it} from 'vitest'
import {RepairLoop} from '../../src/master/repair-loop.js'
import {ReplicaRecords} from '../../src/master/replicas.js'
import {Uploads} from '../../src/master/uploads.js'
import {planRequest, testContext} from './helpers.js'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup()
})

async function setup(R: number, nodeIds: string[]) {
  const s = await testContext({replicas: R, minReplicas: Math.min(2, R)})
  cleanups.push(s.cleanup)
  nodeIds.forEach((id, i) => s.addNode(id, `z${i}`))
  const uploads = new Uploads(s.ctx)
  const records = new ReplicaRecords(s.ctx)
  const loop = new RepairLoop(s.ctx, (age) => uploads.expire(age))
  const commit = (tag: string, holders: string[]) => {
    const plan = uploads.plan(planRequest('f', 1000, tag))
    const c = plan.chunks[0]!
    for (const node of holders) expect(records.stored(node, 'L1', {chunkId: c.chunkId, version: c.version, size: c.size, sha256: c.sha256}).ok).toBe(true)
    uploads.commit(plan.uploadId)
    return c
  }
  const inbox = (id: string) => s.sent.get(id)!
  return {...s, uploads, records, loop, commit, inbox}
}

it('sends one replicate task for an under-replicated chunk and does not schedule it twice', async () => {
  const s = await setup(3, ['n1', 'n2', 'n3'])
  const c = s.commit('a', ['n1', 'n2'])
  s.loop.run()
  s.loop.run()
  const tasks = s.inbox('n3').filter((m) => m.type === 'replicate')
  expect(tasks).toHaveLength(1)
  expect(tasks[0]).toMatchObject({replicas: [{chunkId: c.chunkId, version: 1}]})
  expect(s.loop.loadOf('n3')).toBe(1)
})

it('trims a replica beyond R from the fullest holder, once', async () => {
  const s = await setup(2, ['n1', 'n2', 'n3'])
  s.nodes.heartbeat('n2', {freeBytes: 10, usedBytes: 5, chunkCount: 1}) // the fullest
  const c = s.commit('a', ['n1', 'n2', 'n3'])
  s.loop.run()
  s.loop.run()
  const deletes = [...s.sent.values()].flat().filter((m) => m.type === 'delete')
  expect(deletes).toEqual([{type: 'delete', chunkId: c.chunkId, version: 1, reason: 'excess'}])
  expect(s.inbox('n2')).toContainEqual(deletes[0])
})

it('does not resend an excess delete once the copy is reported again and counts toward R', async () => {
  const s = await setup(2, ['n1', 'n2', 'n3'])
  s.nodes.heartbeat('n2', {freeBytes: 10, usedBytes: 5, chunkCount: 1}) // the fullest: its copy is trimmed
  const c = s.commit('a', ['n1', 'n2', 'n3'])
  s.loop.run()
  const excessTo = (id: string) => s.inbox(id).filter((m) => m.type === 'delete' && m.reason === 'excess')
  expect(excessTo('n2')).toHaveLength(1)
  // n2 never got the delete (its link dropped) and reports the copy again; meanwhile n1 lost its copy.
  const replica = {chunkId: c.chunkId, version: c.version, size: c.size, sha256: c.sha256}
  expect(s.records.stored('n2', 'L2', replica).ok).toBe(true)
  s.records.deleted('n1', c.chunkId, c.version)
  s.loop.run()
  s.clock.t += 31_000
  s.loop.run()
  expect(excessTo('n2')).toHaveLength(1) // the old decision is not sent again: n2's copy is one of the R now
  expect(excessTo('n3')).toHaveLength(0)
  expect([...s.sent.values()].flat().filter((m) => m.type === 'delete' && m.reason === 'excess')).toHaveLength(1)
})

it('resends a stale delete that was not confirmed, after a while, not on every round', async () => {
  const s = await setup(2, ['n1', 'n2'])
  const v1 = s.commit('a', ['n1', 'n2'])
  s.commit('b', ['n1', 'n2']) // v1 rows are stale now; the deletes went out with the commit
  const staleDeletes = () => s.inbox('n1').filter((m) => m.type === 'delete' && m.chunkId === v1.chunkId && m.version === 1)
  expect(staleDeletes()).toHaveLength(1)
  s.loop.run()
  s.clock.t += 10_000
  s.loop.run()
  expect(staleDeletes()).toHaveLength(1)
  s.clock.t += 31_000
  s.loop.run()
  expect(staleDeletes()).toHaveLength(2)
  s.records.deleted('n1', v1.chunkId, 1)
  s.clock.t += 31_000
  s.loop.run()
  expect(staleDeletes()).toHaveLength(2) // confirmed: nothing more to resend
})

it('rebalances while nothing needs repair: copies to the emptiest node, then deletes the copy on the node it moved from', async () => {
  const s = await setup(3, ['n1', 'n2', 'n3'])
  const chunks = Array.from({length: 12}, (_, i) => {
    const plan = s.uploads.plan(planRequest(`f${i}`, 1000, `t${i}`))
    const c = plan.chunks[0]!
    for (const node of ['n1', 'n2', 'n3']) s.records.stored(node, 'L1', {chunkId: c.chunkId, version: c.version, size: c.size, sha256: c.sha256})
    s.uploads.commit(plan.uploadId)
    return c
  })
  for (const id of ['n1', 'n2', 'n3']) s.nodes.heartbeat(id, {freeBytes: 88_000, usedBytes: 12_000, chunkCount: 12})
  s.addNode('n4', 'z3', 100_000)
  s.loop.countCommittedBytes() // the master's timer does this; the table fits one step
  s.loop.run()
  const move = s.inbox('n4').find((m) => m.type === 'replicate')
  expect(move).toBeDefined()
  if (move?.type !== 'replicate') return
  expect(move.replicas.length).toBeGreaterThan(0)
  expect(move.replicas.length).toBeLessThanOrEqual(3) // no more than brings the source to the mean (36 copies over 4 nodes: 9 of its 12)
  for (const replica of move.replicas) s.records.stored('n4', 'L2', replica)
  s.loop.finish(move.taskId, move.replicas, 0)
  s.loop.run()
  const deletes = [...s.sent.entries()].flatMap(([node, inbox]) => inbox.filter((m) => m.type === 'delete').map((m) => ({node, m})))
  expect(deletes.map((d) => d.node)).toEqual(move.replicas.map(() => move.source.id)) // from where it moved, one per copy
  expect(deletes.every((d) => d.m.type === 'delete' && d.m.reason === 'excess')).toBe(true)
  expect(chunks).toHaveLength(12)
})

it('does not rebalance while a chunk is below R', async () => {
  const s = await setup(3, ['n1', 'n2', 'n3', 'n4'])
  s.commit('a', ['n1', 'n2']) // under-replicated: repair first
  for (const id of ['n1', 'n2']) s.nodes.heartbeat(id, {freeBytes: 1000, usedBytes: 9000, chunkCount: 1})
  s.loop.run()
  const tasks = [...s.sent.values()].flat().filter((m) => m.type === 'replicate')
  expect(tasks).toHaveLength(1) // the repair copy, not a move
  expect(s.loop.balance().waiting).toMatch(/repairs first/)
})

it('balances on committed copies: bytes of an upload not yet committed neither count nor make moves', async () => {
  const s = await setup(3, ['n1', 'n2', 'n3', 'n4'])
  // Four committed chunks of 1000 bytes spread evenly, three copies each: 3 per node.
  const spread = [['n1', 'n2', 'n3'], ['n2', 'n3', 'n4'], ['n3', 'n4', 'n1'], ['n4', 'n1', 'n2']]
  spread.forEach((holders, i) => {
    const committed = s.uploads.plan(planRequest(`f${i}`, 1000, `c${i}`))
    const c = committed.chunks[0]!
    for (const node of holders) s.records.stored(node, 'L1', {chunkId: c.chunkId, version: c.version, size: c.size, sha256: c.sha256})
    s.uploads.commit(committed.uploadId)
  })
  // An upload that never commits (its client was killed): a 40,000-byte chunk pending on n1..n3, kept for a resume.
  const plan = s.uploads.plan(planRequest('unfinished', 40_000, 'u'))
  for (const c of plan.chunks) for (const node of ['n1', 'n2', 'n3']) s.records.stored(node, 'L1', {chunkId: c.chunkId, version: c.version, size: c.size, sha256: c.sha256})
  for (const id of ['n1', 'n2', 'n3']) s.nodes.heartbeat(id, {freeBytes: 57_000, usedBytes: 43_000, chunkCount: 43})
  s.nodes.heartbeat('n4', {freeBytes: 97_000, usedBytes: 3000, chunkCount: 3})
  expect(s.loop.balance()).toMatchObject({balanced: false, waiting: 'counting the copies on 4 nodes'})
  s.loop.countCommittedBytes()
  s.loop.run()
  const report = s.loop.balance()
  expect(report.nodes.map((n) => [n.id, n.committedBytes])).toEqual([['n1', 3000], ['n2', 3000], ['n3', 3000], ['n4', 3000]])
  expect(report).toMatchObject({balanced: true, moving: 0})
  expect(report.waiting).toBeUndefined()
  expect([...s.sent.values()].flat().filter((m) => m.type === 'replicate')).toEqual([])

  // Committing it makes the copies count: now n4 is the empty one and a move starts toward it.
  s.uploads.commit(plan.uploadId)
  s.clock.t += 10_000
  s.loop.countCommittedBytes()
  s.loop.run()
  expect(s.loop.balance().nodes.find((n) => n.id === 'n1')?.committedBytes).toBe(43_000)
  expect(s.inbox('n4').filter((m) => m.type === 'replicate').length).toBeGreaterThan(0)
})
