import {afterEach, expect, it} from 'vitest'
import {ChunkCountPasses} from '../../src/master/chunk-counts.js'
import {ReplicaRecords} from '../../src/master/replicas.js'
import {Uploads} from '../../src/master/uploads.js'
import {until} from './fake-node.js'
import {planRequest, testContext} from './helpers.js'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup()
})

// A large cluster's counts are made in passes of a few chunks per event-loop turn instead of one query
// that blocks the master (a million chunks took a second). Here every cluster counts as large (no
// query on the spot) and a step is 2 chunks, so a pass over 7 chunks takes several turns.
it('counts a large cluster in passes: unknown first, then what the query says, and a death shows at once', async () => {
  const setup = await testContext({replicas: 3, minReplicas: 2})
  cleanups.push(setup.cleanup)
  for (const id of ['n1', 'n2', 'n3', 'n4']) setup.addNode(id, id)
  const uploads = new Uploads(setup.ctx)
  const records = new ReplicaRecords(setup.ctx)
  const upload = (name: string, size: number, tag: string, copies: number) => {
    const plan = uploads.plan(planRequest(name, size, tag))
    for (const chunk of plan.chunks) {
      for (const target of chunk.targets.slice(0, copies)) records.stored(target.id, 'L1', {chunkId: chunk.chunkId, version: chunk.version, size: chunk.size, sha256: chunk.sha256})
    }
    uploads.commit(plan.uploadId)
    return plan
  }
  const a = upload('a.mp4', 4 * 65_536, 'a', 3)
  upload('b.mp4', 3 * 65_536, 'b', 2)
  const alive = () => setup.nodes.all().filter((n) => setup.nodes.isAlive(n.id)).map((n) => n.id)
  const passes = new ChunkCountPasses(setup.ctx.db, 0, 2)
  const reference = new ChunkCountPasses(setup.ctx.db)

  // before the first pass ends, no chunk is known to be at R
  expect(passes.get(alive(), 3, 7)).toEqual({underReplicated: 7, stale: 0, corrupt: 0})
  const exact = reference.exact(alive(), 3)
  expect(exact).toEqual({chunks: 7, underReplicated: 3, stale: 0, corrupt: 0})
  await until(() => passes.get(alive(), 3, 7).underReplicated === 3, 5000, 'the first pass')
  expect(passes.get(alive(), 3, 7)).toEqual({underReplicated: 3, stale: 0, corrupt: 0})

  // a node dies: before a pass has counted again, its copies count as lost (at most that many chunks)
  const victim = a.chunks[0]!.targets[0]!.id
  setup.clock.t += 60_000
  for (const id of ['n1', 'n2', 'n3', 'n4']) if (id !== victim) setup.nodes.heartbeat(id, {freeBytes: 1e12, usedBytes: 0, chunkCount: 0})
  expect(setup.nodes.sweep()).toEqual([victim])
  const afterDeath = reference.exact(alive(), 3).underReplicated
  expect(afterDeath).toBeGreaterThan(3)
  expect(passes.get(alive(), 3, 7).underReplicated).toBeGreaterThanOrEqual(afterDeath)
  await until(() => passes.get(alive(), 3, 7).underReplicated === afterDeath, 5000, 'the pass after the death')
})
