import {afterEach, expect, it} from 'vitest'
import {CommittedBytes} from '../../src/master/committed-bytes.js'
import {ReplicaRecords} from '../../src/master/replicas.js'
import {Uploads} from '../../src/master/uploads.js'
import {planRequest, testContext} from './helpers.js'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup()
})

// Seven committed files of 1..7 chunks (64 KiB, the last shorter) with copies on n1..n3 by a fixed
// pattern, plus one pending upload on n1: what each node holds fresh, counted by hand.
async function cluster() {
  const s = await testContext({replicas: 2, minReplicas: 1})
  cleanups.push(s.cleanup)
  for (const id of ['n1', 'n2', 'n3']) s.addNode(id)
  const uploads = new Uploads(s.ctx)
  const records = new ReplicaRecords(s.ctx)
  const expected = new Map([['n1', 0], ['n2', 0], ['n3', 0]])
  for (let f = 1; f <= 7; f++) {
    const plan = uploads.plan(planRequest(`f${f}`, f * 65_536 - 1000 * f, `t${f}`))
    plan.chunks.forEach((c, i) => {
      const holders = [['n1', 'n2'], ['n2', 'n3'], ['n3', 'n1']][(f + i) % 3]!
      for (const node of holders) {
        expect(records.stored(node, 'L1', {chunkId: c.chunkId, version: c.version, size: c.size, sha256: c.sha256}).ok).toBe(true)
        expected.set(node, expected.get(node)! + c.size)
      }
    })
    uploads.commit(plan.uploadId)
  }
  const pending = uploads.plan(planRequest('pending', 200_000, 'p'))
  for (const c of pending.chunks) records.stored('n1', 'L1', {chunkId: c.chunkId, version: c.version, size: c.size, sha256: c.sha256})
  return {...s, uploads, records, expected}
}

it('counts the fresh bytes on each node by pages, the same as in one step, and again after a change', async () => {
  const s = await cluster()
  const nodeIds = ['n1', 'n2', 'n3']
  const paged = new CommittedBytes(s.db, 3) // 3 chunks a step: many steps
  let steps = 0
  while (paged.of('n1') === undefined && steps < 1000) {
    paged.step()
    steps++
  }
  expect(steps).toBeGreaterThan(5)
  const counts = (cb: CommittedBytes) => Object.fromEntries(nodeIds.map((id) => [id, cb.of(id)]))
  expect(counts(paged)).toEqual(Object.fromEntries(s.expected))
  expect(paged.of('n9')).toBe(0) // a node holding nothing
  const whole = new CommittedBytes(s.db) // the table fits one step
  whole.step()
  expect(counts(whole)).toEqual(Object.fromEntries(s.expected))

  // n2 loses a copy: the counts stay as they were until a round after the change ends.
  const [chunkId, rows] = [...s.ctx.replicaTable.rawOfChunks(s.ctx.replicaTable.chunkIdsOfNode('n2', '', 1))][0]!
  const row = rows.find((r) => r.nodeId === 'n2')!
  const size = s.db.prepare('SELECT size FROM chunks WHERE chunk_id = ?').pluck().get(chunkId) as number
  s.records.deleted('n2', chunkId, row.version)
  paged.step() // nothing changed as far as it knows: no round
  expect(paged.of('n2')).toBe(s.expected.get('n2'))
  paged.changed()
  for (let i = 0; i < steps - 1; i++) paged.step()
  expect(paged.of('n2')).toBe(s.expected.get('n2')) // the round is not over yet
  for (let i = 0; i < 1000 && paged.of('n2') === s.expected.get('n2'); i++) paged.step()
  expect(counts(paged)).toEqual({...Object.fromEntries(s.expected), n2: s.expected.get('n2')! - size})
})
