import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, expect, it} from 'vitest'
import {startMaster, type RunningMaster} from '../../src/master/index.js'
import {StatusDoc} from '../../src/protocol/index.js'
import {FakeNode, until} from './fake-node.js'

// Many nodes behind one address (a NAT) used to fill that address's connection limit with their links
// and then lock it out of everything, `status` included. Node links now count apart from client requests.

const TOKEN = 'links-token'
let dir: string | undefined
let master: RunningMaster | undefined
const nodes: FakeNode[] = []
afterAll(async () => {
  for (const node of nodes) await node.close()
  await master?.close()
  if (dir) await rm(dir, {recursive: true, force: true})
})

it('takes more node links from one address than its client connection limit, and still answers status from it', async () => {
  dir = await mkdtemp(join(tmpdir(), 'chunky-links-'))
  master = await startMaster({
    host: '127.0.0.1', port: 0, dataDir: join(dir, 'm'), replicas: 3, minReplicas: 2, nodeTimeoutMs: 5000, repairIntervalMs: 1000,
    token: TOKEN, limits: {maxConnectionsPerPeer: 4, maxNodeLinksPerPeer: 12},
  })
  for (let i = 0; i < 12; i++) nodes.push(await FakeNode.connect(master.url, TOKEN, `n${i}`))
  const res = await fetch(`${master.url}/api/status`, {headers: {authorization: `Bearer ${TOKEN}`}})
  expect(res.status).toBe(200)
  expect(StatusDoc.parse(await res.json()).summary.aliveNodes).toBe(12)
  // The node-link limit holds: a thirteenth link from this address is refused with 503, the rest stay.
  const extra = await FakeNode.connect(master.url, TOKEN, 'n12', {hello: false}).catch((err: Error) => err)
  expect(extra).toBeInstanceOf(Error)
  expect(String(extra)).toMatch(/503/)
  await until(() => nodes.every((n) => n.closed === undefined), 1000, 'links untouched')
})
