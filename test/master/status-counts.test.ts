import {afterEach, expect, it} from 'vitest'
import {RepairLoop} from '../../src/master/repair-loop.js'
import {ReplicaRecords} from '../../src/master/replicas.js'
import {Uploads} from '../../src/master/uploads.js'
import {Views} from '../../src/master/views.js'
import type {UploadPlan} from '../../src/protocol/index.js'
import {planRequest, testContext} from './helpers.js'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup()
})

// The status summary is kept by the repair loop's looks instead of one query over every chunk (which
// blocked a master with a million chunks for seconds). Kept and queried counts must agree after
// every kind of change: commits, lost and stale and corrupt copies, deaths, removals, re-uploads.
it('keeps the status counts the summary query would give, through every kind of change', async () => {
  const setup = await testContext({replicas: 3, minReplicas: 2})
  cleanups.push(setup.cleanup)
  for (const id of ['n1', 'n2', 'n3', 'n4']) setup.addNode(id, id)
  const uploads = new Uploads(setup.ctx)
  const records = new ReplicaRecords(setup.ctx)
  const loop = new RepairLoop(setup.ctx, () => 0, false)
  loop.stop() // the test drives it: no timers, no kicks
  const views = new Views(setup.ctx, () => 0, () => false, undefined, () => loop.counts())
  const store = (plan: UploadPlan, copies: number) => {
    for (const chunk of plan.chunks.filter((c) => !c.skip)) {
      for (const target of chunk.targets.slice(0, copies)) records.stored(target.id, 'L1', {chunkId: chunk.chunkId, version: chunk.version, size: chunk.size, sha256: chunk.sha256})
    }
  }
  const upload = (name: string, size: number, tag: string, copies: number) => {
    const plan = uploads.plan(planRequest(name, size, tag))
    store(plan, copies)
    uploads.commit(plan.uploadId)
    return plan
  }
  const alive = () => setup.nodes.all().filter((n) => setup.nodes.isAlive(n.id)).map((n) => n.id)
  const check = (expected: {underReplicated: number; stale: number; corrupt: number; files: number; chunks: number}) => {
    const kept = views.status().summary
    const queried = views.countByQuery(alive(), 3)
    expect(queried).toEqual(expected) // the scenario did what it meant to
    expect({files: kept.files, chunks: kept.chunks, underReplicated: kept.underReplicated, stale: kept.stale, corrupt: kept.corrupt}).toEqual(queried)
  }

  // before the first look after a start, the counts come from the query
  expect(loop.counts()).toBeUndefined()
  while (loop.hasChangesToLookAt()) loop.run()
  check({files: 0, chunks: 0, underReplicated: 0, stale: 0, corrupt: 0})

  const a = upload('a.mp4', 3 * 65_536, 'a', 3)
  upload('b.mp4', 2 * 65_536, 'b', 2)
  upload('empty.mp4', 0, 'e', 3)
  check({files: 3, chunks: 5, underReplicated: 2, stale: 0, corrupt: 0})

  // a corrupt copy found by a scrub
  const a0 = a.chunks[0]!
  records.corrupt(a0.targets[0]!.id, a0.chunkId, a0.version)
  check({files: 3, chunks: 5, underReplicated: 3, stale: 0, corrupt: 1})

  // a node dies: every chunk it held counts one fresh copy less (counted by query until the loop has looked)
  const victim = a.chunks[1]!.targets[0]!.id
  setup.clock.t += 60_000
  for (const id of ['n1', 'n2', 'n3', 'n4']) if (id !== victim) setup.nodes.heartbeat(id, {freeBytes: 1e12, usedBytes: 0, chunkCount: 0})
  expect(setup.nodes.sweep()).toEqual([victim])
  while (loop.hasChangesToLookAt()) loop.run()
  const underAfterDeath = views.countByQuery(alive(), 3).underReplicated
  expect(underAfterDeath).toBeGreaterThan(3)
  check({files: 3, chunks: 5, underReplicated: underAfterDeath, stale: 0, corrupt: 1})

  // a re-upload of a.mp4 with its first chunk changed: the old copies of that chunk become stale
  const request = planRequest('a.mp4', 3 * 65_536, 'a')
  const edit = uploads.plan({...request, chunks: request.chunks.map((c, i) => (i === 0 ? {...c, sha256: 'f'.repeat(64)} : c))})
  store(edit, 3)
  uploads.commit(edit.uploadId)
  const afterEdit = views.countByQuery(alive(), 3)
  expect(afterEdit.stale).toBeGreaterThan(0)
  check(afterEdit)

  // a removal takes its chunks out of every count
  uploads.remove('b.mp4')
  check({...views.countByQuery(alive(), 3), files: 2, chunks: 3})
})
