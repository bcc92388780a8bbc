import {randomBytes} from 'node:crypto'
import {writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, expect, it} from 'vitest'
import {deriveCredentials, ForgetResult, NodeInfo, NodeInfoList} from '../../src/protocol/index.js'
import {killAll, runCli, sha256File, spawnCli, startCluster, TOKEN, waitFor, type Cluster} from './harness.js'

// `chunky nodes`, `nodes drain/undrain/forget` (SPEC.md "Operating a cluster") on real processes:
// four nodes, R=2, small chunks so uploads and drains take a second or two.
let cluster: Cluster

beforeAll(async () => {
  cluster = await startCluster({nodes: 4, replicas: 2})
}, 120_000) // five processes on a shared two-core machine

afterAll(async () => {
  await cluster?.close()
  await killAll()
}, 120_000)

async function nodes(): Promise<NodeInfo[]> {
  const result = await runCli(['nodes', '--json'], cluster.env)
  if (result.code !== 0) throw new Error(`nodes exited ${result.code}: ${result.stderr}`)
  return NodeInfoList.parse(JSON.parse(result.stdout)).nodes
}

const node = async (id: string) => (await nodes()).find((n) => n.id === id)

it('lists the nodes on their own, as text and as one JSON document', async () => {
  const listed = await nodes()
  expect(listed.map((n) => [n.id, n.zone, n.state, n.alive, n.reachable])).toEqual([
    ['n1', 'z1', 'alive', true, true], ['n2', 'z2', 'alive', true, true], ['n3', 'z3', 'alive', true, true], ['n4', 'z4', 'alive', true, true],
  ])
  for (const n of listed) {
    expect(n.url).toBe(cluster.nodes.get(n.id)!.url)
    expect(n.freeBytes).toBeGreaterThan(0)
    expect(n.lastHeartbeatMsAgo).toBeLessThan(5_000)
    expect(n.drain).toBeUndefined()
  }
  const text = await runCli(['nodes'], cluster.env)
  expect(text.code, text.stderr).toBe(0)
  expect(text.stdout).toMatch(/^nodes: 4, 4 alive\nNODE +ZONE +STATE +LAST HEARD +CHUNKS +USED +FREE +REACHABLE +URL\nn1 +z1 +alive +\d/)
}, 120_000)

/** Kills a drained node and checks that nothing became under-replicated and no repair started. */
async function killDrained(id: string): Promise<void> {
  const mark = cluster.master.output().length
  await cluster.nodes.get(id)!.kill9()
  await waitFor(`${id} dead`, async () => (await cluster.status()).nodes.find((n) => n.id === id)?.state === 'dead', 15_000)
  const after = await cluster.status()
  expect(after.summary.underReplicated).toBe(0)
  expect(after.nodes.find((n) => n.id === id)).toMatchObject({state: 'dead', drain: 'drained'})
  expect(cluster.master.output().slice(mark)).not.toContain('"event":"repair.started"')
  expect(await node(id)).toMatchObject({state: 'drained', alive: false})
}

it('drains a node while an upload writes to it: once drained, killing it leaves nothing under-replicated and needs no repair', async () => {
  // The drain starts the moment the master has handed out the upload's versions (grants naming n1 too),
  // while the upload sends one small chunk at a time. n1 holds nothing yet: only the upload in flight
  // keeps the drain from being over at once.
  const big = join(cluster.dir, 'big.bin')
  await writeFile(big, randomBytes(8 * 1024 * 1024))
  let drainAnswer: Promise<Response> | undefined
  const planned = new Promise<void>((resolve) => {
    const onData = (data: Buffer) => {
      if (!/"event":"version.handed_out".*big\.bin/.test(data.toString())) return
      cluster.master.child.stdout!.off('data', onData)
      drainAnswer = fetch(`${cluster.master.url}/api/nodes/n1/drain`, {method: 'POST', headers: {authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json'}, body: '{}'})
      resolve()
    }
    cluster.master.child.stdout!.on('data', onData)
  })
  const upload = spawnCli(['upload', big, '--chunk-size', '256KiB', '--concurrency', '1', '--json'], cluster.env)
  await waitFor('the upload planned', () => planned.then(() => true), 60_000)
  const answer = await drainAnswer!
  expect(answer.status).toBe(200)
  const started = NodeInfo.parse(await answer.json())
  expect(started).toMatchObject({state: 'draining', drain: {chunksLeft: 0, uploadsInFlight: 1}}) // the upload was still open

  const waited = await runCli(['nodes', 'drain', 'n1', '--wait', '--json'], cluster.env, 90_000)
  expect(waited.code, waited.stderr).toBe(0)
  expect(NodeInfo.parse(JSON.parse(waited.stdout))).toMatchObject({id: 'n1', state: 'drained', drain: {chunksLeft: 0, pendingCopies: 0, uploadsInFlight: 0}})
  const uploaded = await upload.result
  expect(uploaded.code, uploaded.stderr).toBe(0)

  // The upload wrote to n1 under the grants it had before the drain, and those chunks have R copies elsewhere.
  const chunks = (await cluster.status('big.bin')).files[0]!.chunks
  expect(chunks.some((chunk) => chunk.replicas.some((r) => r.node === 'n1' && r.state === 'fresh'))).toBe(true)
  expect(Math.min(...chunks.map((chunk) => chunk.replicas.filter((r) => r.state === 'fresh' && r.node !== 'n1').length))).toBeGreaterThanOrEqual(2)

  await killDrained('n1')
  const check = await runCli(['status', '--check'], cluster.env)
  expect(check.code, check.stderr).toBe(0) // a drained node that was stopped is not a dead one
  const copy = join(cluster.dir, 'big.copy')
  const down = await runCli(['download', 'big.bin', '-o', copy], cluster.env)
  expect(down.code, down.stderr).toBe(0)
  expect(await sha256File(copy)).toBe(await sha256File(big))
}, 120_000)

it('drains a node holding chunks, across a master restart; with too few nodes left it says so, and undrain takes a node back', async () => {
  expect((await node('n2'))!.chunks).toBeGreaterThan(0)
  const drained = await runCli(['nodes', 'drain', 'n2'], cluster.env)
  expect(drained.code, drained.stderr).toBe(0)
  expect(drained.stdout).toMatch(/^n2 draining: \d+ chunks? left to copy/)

  await cluster.master.stop()
  await cluster.restartMaster()
  await waitFor('n2, n3, n4 back', async () => (await nodes()).filter((n) => n.alive).length === 3, 20_000)
  expect((await node('n2'))!.drain).toBeDefined()
  const waited = await runCli(['nodes', 'drain', 'n2', '--wait'], cluster.env, 90_000)
  expect(waited.code, waited.stderr).toBe(0)
  expect(waited.stdout).toBe('n2 drained: every chunk it holds has its fresh copies on other nodes; it can be stopped\n')
  await killDrained('n2')

  // n3 and n4 are left: draining n3 would leave one node to hold R=2 copies
  const stuck = await runCli(['nodes', 'drain', 'n3', '--json'], cluster.env)
  expect(stuck.code, stuck.stderr).toBe(0)
  expect(NodeInfo.parse(JSON.parse(stuck.stdout)).drain!.waiting).toBe('only 1 node can take copies and R is 2: start another node or undrain one')
  const back = await runCli(['nodes', 'undrain', 'n3', '--json'], cluster.env)
  expect(back.code, back.stderr).toBe(0)
  expect(NodeInfo.parse(JSON.parse(back.stdout))).toMatchObject({id: 'n3', state: 'alive', alive: true})
  expect((await node('n3'))!.drain).toBeUndefined()
  expect((await cluster.status()).summary.underReplicated).toBe(0)
}, 120_000)

it('forgets a dead node only: refused for a live one and an unknown one, and repair fills what it leaves', async () => {
  const live = await runCli(['nodes', 'forget', 'n3'], cluster.env)
  expect(live.code).toBe(1)
  expect(live.stderr).toBe('chunky: node n3 is alive: stop it first (or drain it with `./bin/run.js nodes drain n3`); only a dead node can be forgotten\n')
  const readOnly = await runCli(['nodes', 'drain', 'n3'], {...cluster.env, CHUNKY_TOKEN: deriveCredentials(TOKEN).ro})
  expect(readOnly.code).toBe(1)
  expect(readOnly.stderr).toMatch(/^chunky: this is a read-only credential \(ro-…\)/)
  expect((await node('n3'))!.drain).toBeUndefined()
  const unknown = await runCli(['nodes', 'forget', 'n9'], cluster.env)
  expect(unknown.code).toBe(1)
  expect(unknown.stderr).toBe('chunky: no node with id "n9": see `./bin/run.js nodes`\n')

  const forgot = await runCli(['nodes', 'forget', 'n1', '--json'], cluster.env)
  expect(forgot.code, forgot.stderr).toBe(0)
  expect(ForgetResult.parse(JSON.parse(forgot.stdout)).replicasDropped).toBeGreaterThan(0)
  expect((await nodes()).map((n) => n.id)).toEqual(['n2', 'n3', 'n4'])
  expect((await cluster.status()).files.flatMap((f) => f.chunks).flatMap((c) => c.replicas).some((r) => r.node === 'n1')).toBe(false)

  // a node that dies without a drain: forgotten, its chunks are repaired onto n3 and a new n5
  await cluster.startNode('n5')
  await cluster.nodes.get('n4')!.kill9()
  await waitFor('n4 dead', async () => (await node('n4'))?.state === 'dead', 15_000)
  const gone = await runCli(['nodes', 'forget', 'n4'], cluster.env)
  expect(gone.code, gone.stderr).toBe(0)
  expect(gone.stdout).toMatch(/^forgot n4 \(\d+ replica records? dropped\)\n$/)
  await waitFor('every chunk at R on n3 and n5', async () => {
    const doc = await cluster.status()
    return doc.summary.underReplicated === 0 && doc.nodes.map((n) => n.id).join() === 'n2,n3,n5'
  }, 30_000)
}, 120_000)
