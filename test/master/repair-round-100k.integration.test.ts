import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, expect, it} from 'vitest'
import {openDatabase} from '../../src/master/db.js'
import {startMaster, type RunningMaster} from '../../src/master/index.js'
import {messageLogger} from '../../src/util/log.js'
import {FakeNode, until} from './fake-node.js'
import {sha} from './helpers.js'

// Issue 16: repair rounds used to block the master for a time proportional to chunks × nodes, and a
// long round made live nodes look dead. At 100,000 chunks, neither the first look at every chunk after
// a start nor the planning after a node dies may delay anything past half the node timeout.

const TOKEN = 't'
const CHUNKS = 100_000
const NODE_TIMEOUT_MS = 4000
const chunkId = (i: number) => i.toString(16).padStart(24, '0')

let dir: string | undefined
let master: RunningMaster | undefined
const nodes: FakeNode[] = []
afterAll(async () => {
  for (const node of nodes) await node.close()
  await master?.close()
  if (dir) await rm(dir, {recursive: true, force: true})
})

it('a repair round at 100,000 chunks never delays a heartbeat past half the node timeout', async () => {
  dir = await mkdtemp(join(tmpdir(), 'chunky-round-'))
  const dataDir = join(dir, 'm')
  const db = openDatabase(dataDir)
  db.transaction(() => {
    db.prepare("INSERT INTO files VALUES ('big.mp4', ?, 65536, ?, '2026-01-01T00:00:00.000Z')").run(CHUNKS * 65_536, CHUNKS)
    const ids = db.prepare("INSERT INTO chunk_ids VALUES ('big.mp4', ?, ?)")
    const chunks = db.prepare('INSERT INTO chunks VALUES (?, 1, 1, 65536, ?)')
    const replica = db.prepare("INSERT INTO replicas (chunk_id, node_id, version, sha256, corrupt, seen) VALUES (?, ?, 1, ?, 0, 'seed')")
    for (let i = 0; i < CHUNKS; i++) {
      ids.run(i, chunkId(i))
      chunks.run(chunkId(i), sha(`c${i}`))
      for (const node of ['n1', 'n2', 'n3']) replica.run(chunkId(i), node, sha(`c${i}`))
    }
  })()
  db.close()

  const lines: string[] = []
  master = await startMaster({
    host: '127.0.0.1', port: 0, dataDir, replicas: 3, minReplicas: 2, nodeTimeoutMs: NODE_TIMEOUT_MS,
    repairIntervalMs: 200, token: TOKEN, log: messageLogger((line) => void lines.push(line)),
  })
  // The first look at every chunk starts now, while the nodes join (they send no report: their rows stand).
  let slowest = 0
  let probing = true
  const probe = (async () => {
    while (probing) {
      const t = performance.now()
      await fetch(`${master!.url}/healthz`)
      slowest = Math.max(slowest, performance.now() - t)
      await new Promise((r) => setTimeout(r, 5))
    }
  })()
  for (const id of ['n1', 'n2', 'n3', 'n4', 'n5']) nodes.push(await FakeNode.connect(master.url, TOKEN, id, {heartbeatMs: 100}))

  // n3 dies: every chunk is one copy short, and the master plans repairs from that set in slices.
  const n3 = nodes[2]!
  await n3.close()
  await until(() => lines.includes('node n3 is dead (no heartbeat for 4s)'), 10_000, 'n3 dead')
  const n4 = nodes[3]!
  await until(() => n4.inbox.some((m) => m.type === 'replicate'), 20_000, 'repairs planned')
  await new Promise((r) => setTimeout(r, 2 * NODE_TIMEOUT_MS)) // keep probing while rounds run
  probing = false
  await probe

  console.log(`100,000 chunks: slowest /healthz during the first look and the repair of a dead node: ${Math.round(slowest)} ms`)
  expect(slowest).toBeLessThan(NODE_TIMEOUT_MS / 2)
  const dead = lines.filter((l) => / is dead /.test(l))
  expect(dead).toEqual(['node n3 is dead (no heartbeat for 4s)']) // no live node was ever marked dead
}, 120_000)
