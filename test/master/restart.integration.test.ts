import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, expect, it} from 'vitest'
import {startMaster, type MasterOptions, type RunningMaster} from '../../src/master/index.js'
import {StatusDoc, UploadPlan} from '../../src/protocol/index.js'
import {FakeNode} from './fake-node.js'
import {planRequest} from './helpers.js'

const TOKEN = 'restart-token'
let dir: string | undefined
const running: {master?: RunningMaster; nodes: FakeNode[]} = {nodes: []}
afterAll(async () => {
  await running.master?.close() // with nodes still linked: they get 1001
  for (const node of running.nodes) await node.close()
  if (dir) await rm(dir, {recursive: true, force: true})
})

const post = async (master: RunningMaster, path: string, body: unknown) =>
  (await fetch(`${master.url}${path}`, {method: 'POST', headers: {authorization: `Bearer ${TOKEN}`}, body: JSON.stringify(body)})).json()

it('keeps committed files and rising versions across a restart on the same data; nodes show as dead until they say hello', async () => {
  dir = await mkdtemp(join(tmpdir(), 'chunky-restart-'))
  const opts: MasterOptions = {host: '127.0.0.1', port: 0, dataDir: join(dir, 'm'), replicas: 2, minReplicas: 2, nodeTimeoutMs: 5000, repairIntervalMs: 1000, token: TOKEN}
  running.master = await startMaster(opts)
  for (const id of ['n1', 'n2']) running.nodes.push(await FakeNode.connect(running.master.url, TOKEN, id))
  const plan = UploadPlan.parse(await post(running.master, '/api/uploads', planRequest('a.mp4', 1000, 'x')))
  const c = plan.chunks[0]!
  for (const node of running.nodes) node.send({type: 'stored', reqId: 1, replica: {chunkId: c.chunkId, version: c.version, size: c.size, sha256: c.sha256}})
  for (const node of running.nodes) await node.waitFor((m) => m.type === 'ack')
  expect(await post(running.master, `/api/uploads/${plan.uploadId}/commit`, {})).toMatchObject({chunks: 1})
  // A version handed out and never committed must not be handed out again either.
  const abandoned = UploadPlan.parse(await post(running.master, '/api/uploads', planRequest('a.mp4', 1000, 'y')))
  expect(abandoned.chunks[0]!.version).toBe(2)

  for (const node of running.nodes.splice(0)) await node.close()
  const closing = performance.now()
  await running.master.close()
  expect(performance.now() - closing).toBeLessThan(3000)

  running.master = await startMaster(opts)
  const status = StatusDoc.parse(await (await fetch(`${running.master.url}/api/status`, {headers: {authorization: `Bearer ${TOKEN}`}})).json())
  expect(status.nodes.map((n) => [n.id, n.state])).toEqual([['n1', 'dead'], ['n2', 'dead']])
  expect(status.files[0]!.chunks[0]).toMatchObject({version: 1, sha256: c.sha256})
  for (const id of ['n1', 'n2']) running.nodes.push(await FakeNode.connect(running.master.url, TOKEN, id))
  const next = UploadPlan.parse(await post(running.master, '/api/uploads', planRequest('a.mp4', 1000, 'z')))
  expect(next.chunks[0]!.version).toBe(3)
})
