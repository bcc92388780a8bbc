import {afterEach, describe, expect, it} from 'vitest'
import {judgeReplica, type ChunkRecord} from '../../src/master/report.js'
import {ReplicaRecords} from '../../src/master/replicas.js'
import {Uploads} from '../../src/master/uploads.js'
import {planRequest, sha, testContext} from './helpers.js'

const id = 'a'.repeat(24)
const committed: ChunkRecord = {committedVersion: 3, maxVersion: 4, size: 10, sha256: sha('v3')}
const replica = (version: number, sha256 = sha(`v${version}`), size = 10) => ({chunkId: id, version, size, sha256})
const none = {planned: undefined, knownCorrupt: false}

describe('judgeReplica', () => {
  it('classifies against the committed record', () => {
    expect(judgeReplica(replica(3), {chunk: committed, ...none})).toBe('fresh')
    expect(judgeReplica(replica(3, sha('rot')), {chunk: committed, ...none})).toBe('corrupt')
    expect(judgeReplica(replica(3), {chunk: committed, planned: undefined, knownCorrupt: true})).toBe('corrupt')
    expect(judgeReplica(replica(2), {chunk: committed, ...none})).toBe('stale')
    expect(judgeReplica(replica(3), {chunk: undefined, ...none})).toBe('unreferenced')
  })

  it('keeps planned versions as pending and treats abandoned or unknown-newer versions by the GFS rule', () => {
    const planned = {size: 10, sha256: sha('v4')}
    expect(judgeReplica(replica(4), {chunk: committed, planned, knownCorrupt: false})).toBe('pending')
    expect(judgeReplica(replica(4, sha('other')), {chunk: committed, planned, knownCorrupt: false})).toBe('unreferenced')
    expect(judgeReplica(replica(4), {chunk: committed, ...none})).toBe('unreferenced') // handed out, abandoned
    expect(judgeReplica(replica(9), {chunk: committed, ...none})).toBe('ahead') // above max_version
    const never = {committedVersion: 0, maxVersion: 1, size: 0, sha256: ''}
    expect(judgeReplica(replica(1), {chunk: never, planned: {sha256: sha('v1')}, knownCorrupt: false})).toBe('pending')
    expect(judgeReplica(replica(1), {chunk: never, ...none})).toBe('unreferenced')
  })
})

describe('chunk reports', () => {
  const cleanups: (() => Promise<void>)[] = []
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup()
  })

  async function committedFile() {
    const setup = await testContext({replicas: 2, minReplicas: 2})
    cleanups.push(setup.cleanup)
    setup.addNode('n1', 'a')
    setup.addNode('n2', 'b')
    const uploads = new Uploads(setup.ctx)
    const records = new ReplicaRecords(setup.ctx)
    const commitVersion = (tag: string) => {
      const plan = uploads.plan(planRequest('f', 1000, tag))
      const c = plan.chunks[0]!
      for (const node of ['n1', 'n2']) records.stored(node, 'L1', {chunkId: c.chunkId, version: c.version, size: c.size, sha256: c.sha256})
      uploads.commit(plan.uploadId)
      return c
    }
    return {...setup, uploads, records, commitVersion}
  }

  it('records fresh, flags stale and unreferenced with deletes, and forgets what the report left out', async () => {
    const s = await committedFile()
    const v1 = s.commitVersion('a')
    const v2 = s.commitVersion('b')
    s.records.deleted('n2', v1.chunkId, 1) // n2 already dropped v1
    s.sent.get('n2')!.length = 0
    // n2 reports: the current chunk, a stale copy of v1 (back from a backup, say), and garbage
    const garbage = {chunkId: 'b'.repeat(24), version: 1, size: 5, sha256: sha('x')}
    expect(s.records.reportBatch('n2', 'L7', {reportId: 'r1', done: false, replicas: [{...v2, size: 1000}]})).toBe(false)
    expect(s.records.reportBatch('n2', 'L7', {reportId: 'r1', done: true, replicas: [{...v1, size: 1000}, garbage]})).toBe(true)
    expect(s.sent.get('n2')).toEqual([
      {type: 'delete', chunkId: v1.chunkId, version: 1, reason: 'stale'},
      {type: 'delete', chunkId: garbage.chunkId, version: 1, reason: 'unreferenced'},
    ])
    expect(s.lines.some((l) => l.includes(`chunk ${v1.chunkId} on node n2 is stale (v1 < v2)`))).toBe(true)

    // n1 reports nothing: every row of n1 is forgotten (its disk was wiped)
    s.records.reportBatch('n1', 'L8', {reportId: 'r2', done: true, replicas: []})
    const rows = s.db.prepare('SELECT node_id, version FROM replicas ORDER BY node_id, version').all()
    expect(rows).toEqual([{node_id: 'n2', version: 1}, {node_id: 'n2', version: 2}])
  })

  it('forgets an unreported row even when a reported row was removed while the report was under way', async () => {
    const s = await committedFile()
    const f = s.commitVersion('a')
    const plan = s.uploads.plan(planRequest('g', 1000, 'g'))
    const g = plan.chunks[0]!
    for (const node of ['n1', 'n2']) s.records.stored(node, 'L1', {chunkId: g.chunkId, version: g.version, size: 1000, sha256: g.sha256})
    s.uploads.commit(plan.uploadId)
    const rowsOfN1 = () => s.db.prepare("SELECT chunk_id FROM replicas WHERE node_id = 'n1' ORDER BY chunk_id").pluck().all()

    // A reconnect listing everything on record: nothing is forgotten (the row count matches: no scan needed).
    s.records.reportBatch('n1', 'L2', {reportId: 'r0', done: true, replicas: [{...f, size: 1000}, {...g, size: 1000}]})
    expect(rowsOfN1()).toEqual([f.chunkId, g.chunkId].sort())

    // n1 lists f but no longer holds g; f's row goes away mid-report (its delete confirmed): the count of
    // rows (1: g) equals the count of reported rows (1: f), yet g must be forgotten.
    s.records.reportBatch('n1', 'L3', {reportId: 'r1', done: false, replicas: [{...f, size: 1000}]})
    s.records.deleted('n1', f.chunkId, f.version)
    s.records.reportBatch('n1', 'L3', {reportId: 'r1', done: true, replicas: []})
    expect(rowsOfN1()).toEqual([])
  })

  it('keeps a replica stored on the same link while a report was being listed', async () => {
    const s = await committedFile()
    const v1 = s.commitVersion('a')
    const plan = s.uploads.plan(planRequest('f', 1000, 'b'))
    const v2 = plan.chunks[0]!
    s.records.stored('n1', 'L9', {chunkId: v2.chunkId, version: 2, size: 1000, sha256: v2.sha256}) // during the report, link 9
    s.records.reportBatch('n1', 'L9', {reportId: 'r', done: true, replicas: [{...v1, size: 1000}]})
    expect(s.db.prepare("SELECT version FROM replicas WHERE node_id = 'n1' ORDER BY version").pluck().all()).toEqual([1, 2])
  })

  it('raises max_version above a version the master never handed out, and keeps the replica pending', async () => {
    const s = await committedFile()
    const v1 = s.commitVersion('a')
    s.records.reportBatch('n1', 'L1', {reportId: 'r', done: true, replicas: [{chunkId: v1.chunkId, version: 7, size: 1000, sha256: sha('lost')}]})
    expect(s.db.prepare('SELECT max_version FROM chunks WHERE chunk_id = ?').pluck().get(v1.chunkId)).toBe(7)
    const next = s.uploads.plan(planRequest('f', 1000, 'c'))
    expect(next.chunks[0]!.version).toBe(8)
    expect(s.sent.get('n1')!.filter((m) => m.type === 'delete')).toEqual([])
  })

  it('does not turn a replica recorded as corrupt back into fresh when the node reports its old checksum', async () => {
    const s = await committedFile()
    const v1 = s.commitVersion('a')
    s.records.corrupt('n1', v1.chunkId, 1)
    expect(s.sent.get('n1')).toContainEqual({type: 'delete', chunkId: v1.chunkId, version: 1, reason: 'corrupt'})
    s.records.reportBatch('n1', 'L1', {reportId: 'r', done: true, replicas: [{...v1, size: 1000}]})
    expect(s.db.prepare("SELECT corrupt FROM replicas WHERE node_id = 'n1'").pluck().get()).toBe(1)
  })
})
