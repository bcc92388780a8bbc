import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, expect, it} from 'vitest'
import {startMaster, type MasterOptions, type RunningMaster} from '../../src/master/index.js'
import {StatusDoc, UploadPlan, type MasterToNode, type ReplicaInfo} from '../../src/protocol/index.js'
import {messageLogger} from '../../src/util/log.js'
import {FakeNode, until} from './fake-node.js'
import {planRequest} from './helpers.js'

// Bugs a fault campaign found in the master's bookkeeping of replicas, each pinned by a test that
// failed before its fix: phantom copies, rows surviving restarts, stalled and spinning repair, and
// nodes that leave or collide.

const TOKEN = 'faults-token'
type Replicate = Extract<MasterToNode, {type: 'replicate'}>

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function setup(opts: Partial<MasterOptions> & {nodes?: string[]; dir?: string} = {}) {
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'chunky-faults-')))
  if (!opts.dir) cleanups.push(() => rm(dir, {recursive: true, force: true}))
  const lines: string[] = []
  const master = await startMaster({
    host: '127.0.0.1', port: 0, dataDir: join(dir, 'm'), replicas: 3, minReplicas: 2, nodeTimeoutMs: 1000,
    repairIntervalMs: 100, token: TOKEN, log: messageLogger((line) => void lines.push(line)), ...opts,
  })
  cleanups.push(() => master.close())
  const nodes = new Map<string, FakeNode>()
  for (const id of opts.nodes ?? ['n1', 'n2', 'n3']) nodes.set(id, await connect(master, id))
  return {dir, master, lines, nodes, node: (id: string) => nodes.get(id)!}
}

async function connect(master: RunningMaster, id: string): Promise<FakeNode> {
  const node = await FakeNode.connect(master.url, TOKEN, id, {zone: id})
  cleanups.push(() => node.close())
  return node
}

async function api(master: RunningMaster, method: string, path: string, body?: unknown) {
  const res = await fetch(`${master.url}${path}`, {
    method,
    headers: {authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : {'content-type': 'application/json'})},
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  return {status: res.status, body: (await res.json()) as any}
}

const status = async (master: RunningMaster) => StatusDoc.parse((await api(master, 'GET', '/api/status')).body)
const holdersOf = (doc: StatusDoc, chunkId: string) =>
  doc.files.flatMap((f) => f.chunks).find((c) => c.id === chunkId)!.replicas.filter((r) => r.state === 'fresh').map((r) => r.node).sort()

/** Commits a one-chunk file with its chunk stored on `holders` (as their `stored` messages say). */
async function commitOn(master: RunningMaster, nodes: Map<string, FakeNode>, holders: string[], name = 'f.mp4', tag = 'a'): Promise<ReplicaInfo> {
  const plan = UploadPlan.parse((await api(master, 'POST', '/api/uploads', planRequest(name, 1000, tag))).body)
  const chunk = plan.chunks[0]!
  const replica = {chunkId: chunk.chunkId, version: chunk.version, size: chunk.size, sha256: chunk.sha256}
  for (const id of holders) nodes.get(id)!.send({type: 'stored', reqId: 1, replica})
  await until(async () => (await api(master, 'POST', `/api/uploads/${plan.uploadId}/commit`, {})).status === 200, 5000, 'commit')
  return replica
}

it('a transfer summary does not bring back a copy that was trimmed and deleted meanwhile (no phantom replica)', async () => {
  const s = await setup({nodes: ['n1', 'n2', 'n3'], replicas: 2, minReplicas: 1})
  const replica = await commitOn(s.master, s.nodes, ['n1'])
  // Repair plans the second copy onto n2 (the first of the non-holders) ...
  const task = (await s.node('n2').waitFor((m) => m.type === 'replicate')) as Replicate
  s.node('n2').send({type: 'stored', reqId: 7, replica})
  await until(() => s.node('n2').inbox.some((m) => m.type === 'ack' && m.reqId === 7), 5000, 'ack')
  // ... a node that was away comes back holding a copy too: one of three is trimmed, n2's (highest id of the holders) ...
  const n0 = await connect(s.master, 'n0')
  n0.send({type: 'report', reportId: 'r0', done: true, replicas: [replica]})
  await s.node('n2').waitFor((m) => m.type === 'delete' && m.reason === 'excess')
  s.node('n2').send({type: 'deleted', chunkId: replica.chunkId, version: replica.version})
  // ... n0 dies for good ...
  await n0.close()
  await until(async () => (await status(s.master)).nodes.find((n) => n.id === 'n0')?.state === 'dead', 5000, 'n0 dead')
  // ... and only then does n2's transfer summary arrive, listing the copy it no longer holds.
  s.node('n2').send({type: 'replicated', taskId: task.taskId, ok: [replica], failed: []})
  await until(() => s.lines.some((l) => l.startsWith(`repair ${task.taskId} finished`)), 5000, 'repair finished')
  // The master must not count n2: the one copy on an alive node is n1's (recording n2 again made it 2 of 2, "healthy").
  expect(holdersOf(await status(s.master), replica.chunkId)).toEqual(['n0', 'n1']) // n0's is on record, on a dead node
})

it('a row the node no longer has is forgotten by its report after a master restart (link ids are unique across restarts)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'chunky-faults-restart-'))
  cleanups.push(() => rm(dir, {recursive: true, force: true}))
  const first = await setup({dir, replicas: 2, minReplicas: 2, nodes: ['n1', 'n2']})
  const replica = await commitOn(first.master, first.nodes, ['n1', 'n2'])
  for (const node of first.nodes.values()) await node.close()
  await first.master.close()

  // Same data dir: the first link of the new run gets the same number as the old link that stored the row.
  const again = await setup({dir, replicas: 2, minReplicas: 2, nodes: []})
  const n1 = await connect(again.master, 'n1')
  const n2 = await connect(again.master, 'n2')
  // n1 lost the chunk while the master was down (disk replaced): its report does not list it.
  n1.send({type: 'report', reportId: 'r1', done: true, replicas: []})
  n2.send({type: 'report', reportId: 'r2', done: true, replicas: [replica]})
  await until(async () => holdersOf(await status(again.master), replica.chunkId).join() === 'n2', 5000, 'the row of n1 forgotten')
})

it('cancels a transfer as soon as its target\'s link closes, and plans the chunk again at once', async () => {
  const s = await setup({nodes: ['n1', 'n2', 'n3']})
  const replica = await commitOn(s.master, s.nodes, ['n1', 'n2'])
  const first = (await s.node('n3').waitFor((m) => m.type === 'replicate')) as Replicate
  expect(first.replicas[0]!.chunkId).toBe(replica.chunkId)
  await s.node('n3').close() // the target dies mid-transfer
  const n3 = await connect(s.master, 'n3')
  const second = (await n3.waitFor((m) => m.type === 'replicate', 5000)) as Replicate // not after a 120 s timeout
  expect(second.taskId).not.toBe(first.taskId)
  expect(s.lines.some((l) => l.includes(`repair ${first.taskId}`) && l.includes('cancelled'))).toBe(true)
})

it('backs off a source→target pair whose transfer copied nothing instead of retrying it in a loop', async () => {
  const s = await setup({nodes: ['n1', 'n2', 'n3'], repairIntervalMs: 50})
  const replica = await commitOn(s.master, s.nodes, ['n1', 'n2'])
  const n3 = s.node('n3')
  const answered = new Set<string>()
  // n3 cannot reach any source's data port: every transfer fails at once.
  const failAll = setInterval(() => {
    for (const m of n3.inbox) {
      if (m.type !== 'replicate' || answered.has(m.taskId)) continue
      answered.add(m.taskId)
      n3.send({type: 'replicated', taskId: m.taskId, ok: [], failed: m.replicas.map((r) => ({chunkId: r.chunkId, version: r.version, error: 'connect ECONNREFUSED'}))})
    }
  }, 5)
  cleanups.push(async () => clearInterval(failAll))
  const started = Date.now()
  await until(() => answered.size >= 2 || Date.now() - started > 1500, 3000, 'two failed tasks (both sources tried)')
  await new Promise((r) => setTimeout(r, 1500)) // a window to count retries in (the thing measured is how many happen)
  // Without backoff this was a transfer every round (hundreds per second); with it: 1 s, 2 s, … per pair.
  expect(answered.size).toBeLessThanOrEqual(6)
  const sources = new Set(n3.inbox.filter((m): m is Replicate => m.type === 'replicate').map((m) => m.source.id))
  expect([...sources].sort()).toEqual(['n1', 'n2']) // the other source was tried while one pair waited
  expect(s.lines.some((l) => l.includes('could not copy') || l.includes('is alive but'))).toBe(false) // one target only: not "unreachable"
  expect(replica.version).toBe(1)
})

it('a node that says it is leaving is dead at once; its transfers are cancelled', async () => {
  const s = await setup({nodes: ['n1', 'n2', 'n3'], nodeTimeoutMs: 60_000})
  await commitOn(s.master, s.nodes, ['n1', 'n2'])
  await s.node('n3').waitFor((m) => m.type === 'replicate')
  s.node('n3').send({type: 'leaving'})
  await until(async () => (await status(s.master)).nodes.find((n) => n.id === 'n3')?.state === 'dead', 2000, 'n3 dead at once (timeout is 60 s)')
  expect(s.lines).toContain('node n3 is dead (it is stopping)')
})

it('refuses a second master on the same data dir, naming it, and leaves the first running', async () => {
  const s = await setup({nodes: ['n1']})
  await expect(startMaster({host: '127.0.0.1', port: 0, dataDir: join(s.dir, 'm'), replicas: 3, minReplicas: 2, nodeTimeoutMs: 1000, repairIntervalMs: 100, token: TOKEN}))
    .rejects.toThrow(/another master is running on the data dir .*\/m /)
  expect((await api(s.master, 'GET', '/api/status')).status).toBe(200)
})

it('shows a node whose data port two others cannot reach as unreachable in status', async () => {
  const s = await setup({nodes: ['n1', 'n2', 'n3'], replicas: 3, minReplicas: 1})
  const replica = await commitOn(s.master, s.nodes, ['n1'])
  for (const id of ['n2', 'n3']) {
    const task = (await s.node(id).waitFor((m) => m.type === 'replicate')) as Replicate
    expect(task.source.id).toBe('n1')
    s.node(id).send({type: 'replicated', taskId: task.taskId, ok: [], failed: [{chunkId: replica.chunkId, version: replica.version, error: 'connect ECONNREFUSED'}]})
  }
  await until(async () => (await status(s.master)).nodes.find((n) => n.id === 'n1')?.reachable === false, 5000, 'n1 unreachable')
  expect(s.lines.some((l) => l.startsWith('node n1 is alive but n2 and n3 could not copy from it'))).toBe(true)
  expect((await status(s.master)).nodes.find((n) => n.id === 'n2')?.reachable).toBe(true)
})
