import {createHash, randomBytes} from 'node:crypto'
import {mkdtemp, readdir, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {WebSocket} from 'ws'
import {downloadFile} from '../../src/client/download.js'
import {getStatus} from '../../src/client/operations.js'
import {uploadFile} from '../../src/client/upload.js'
import {silentView} from '../../src/client/view.js'
import {startMaster, type RunningMaster} from '../../src/master/index.js'
import {startNode, type RunningNode} from '../../src/node/index.js'
import {HEADER_CHAIN, HEADER_GRANT, UploadPlan} from '../../src/protocol/index.js'
import {silentLogger} from '../../src/util/log.js'
import {waitFor} from '../poll.js'

// Issue 2, integration: the real master and three real nodes in one process on ephemeral ports.
const TOKEN = 'integration-' + randomBytes(6).toString('hex')
const MiB = 1024 * 1024
let dir: string
let master: RunningMaster
const nodes: RunningNode[] = []

async function chunkFiles(nodeDir: string): Promise<string[]> {
  const entries = await readdir(join(nodeDir, 'chunks'), {recursive: true}).catch(() => [] as string[])
  return entries.map((e) => e.split('/').pop()!).filter((name) => name.includes('.') && !/^[0-9a-f]{2}$/.test(name))
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chunky-int-'))
  master = await startMaster({
    host: '127.0.0.1', port: 0, dataDir: join(dir, 'master'), replicas: 3, minReplicas: 2,
    nodeTimeoutMs: 5_000, repairIntervalMs: 60_000, token: TOKEN, log: silentLogger,
  })
  for (const id of ['n1', 'n2', 'n3']) {
    nodes.push(await startNode({
      masterUrl: master.url, host: '127.0.0.1', port: 0, id, zone: `zone-${id}`, dataDir: join(dir, id),
      heartbeatIntervalMs: 200, scrubIntervalMs: 0, token: TOKEN, log: silentLogger,
    }))
  }
  await waitFor('three nodes alive', async () => (await getStatus({master: master.url, token: TOKEN})).summary.aliveNodes === 3)
})

afterAll(async () => {
  for (const node of nodes) await node.close()
  await master?.close()
  await rm(dir, {recursive: true, force: true})
})

describe('a cluster of one master and three nodes in one process', () => {
  it('lands an upload on three distinct nodes at version 1 and gives it back byte for byte', async () => {
    const bytes = randomBytes(2 * MiB + 3)
    const file = join(dir, 'clip.bin')
    await writeFile(file, bytes)
    const result = await uploadFile({path: file, name: 'clip.bin', chunkSize: MiB, master: master.url, token: TOKEN}, silentView)
    expect(result).toMatchObject({chunks: 3, uploadedChunks: 3, skippedChunks: 0})

    const status = await getStatus({master: master.url, token: TOKEN}, 'clip.bin')
    for (const chunk of status.files[0]!.chunks) {
      expect(chunk.version).toBe(1)
      expect(chunk.replicas.filter((r) => r.state === 'fresh').map((r) => r.node).sort()).toEqual(['n1', 'n2', 'n3'])
      const expected = createHash('sha256').update(bytes.subarray(chunk.index * MiB, chunk.index * MiB + chunk.size)).digest('hex')
      expect(chunk.sha256).toBe(expected)
      for (const id of ['n1', 'n2', 'n3']) expect(await chunkFiles(join(dir, id))).toContain(`${chunk.id}.1.${expected}`)
    }
    const output = join(dir, 'clip.copy')
    await downloadFile({name: 'clip.bin', output, master: master.url, token: TOKEN}, silentView)
    const copy = await import('node:fs/promises').then((fs) => fs.readFile(output))
    expect(copy.equals(bytes)).toBe(true)
  })

  it('refuses a chunk whose bytes do not match the planned checksum (422) and leaves nothing on any disk', async () => {
    const before = await Promise.all(['n1', 'n2', 'n3'].map((id) => chunkFiles(join(dir, id))))
    const planned = Buffer.alloc(1000, 1)
    const sha256 = createHash('sha256').update(planned).digest('hex')
    const response = await fetch(`${master.url}/api/uploads`, {
      method: 'POST',
      headers: {authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json'},
      body: JSON.stringify({name: 'liar.bin', size: 1000, chunkSize: MiB, chunks: [{index: 0, size: 1000, sha256}]}),
    })
    expect(response.status).toBe(200)
    const plan = UploadPlan.parse(await response.json())
    const chunk = plan.chunks[0]!
    const [entry, ...chain] = chunk.targets
    const put = await fetch(`${entry!.url}/chunks/${chunk.chunkId}/${chunk.version}`, {
      method: 'PUT',
      headers: {authorization: `Bearer ${TOKEN}`, [HEADER_GRANT]: chunk.grant, [HEADER_CHAIN]: JSON.stringify(chain)},
      body: Buffer.alloc(1000, 2), // same length, other bytes
    })
    expect(put.status).toBe(422)
    expect(((await put.json()) as {error: {code: string}}).error.code).toBe('CHECKSUM_MISMATCH')
    const after = await Promise.all(['n1', 'n2', 'n3'].map((id) => chunkFiles(join(dir, id))))
    expect(after).toEqual(before)
    const commit = await fetch(`${master.url}/api/uploads/${plan.uploadId}/commit`, {
      method: 'POST',
      headers: {authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json'},
      body: '{}',
    })
    expect(commit.status).toBe(409) // nothing durable: the master refuses to commit
  })

  it('answers a wrong or missing token with 401, on the master, a node and the WebSocket', async () => {
    for (const headers of [{}, {authorization: 'Bearer wrong'}] as Record<string, string>[]) {
      const status = await fetch(`${master.url}/api/status`, {headers})
      expect(status.status).toBe(401)
      expect(((await status.json()) as {error: {message: string}}).error.message).toMatch(/credential/)
      const chunk = await fetch(`${nodes[0]!.url}/chunks/${'a'.repeat(24)}/1`, {headers})
      expect(chunk.status).toBe(401)
    }
    const ws = new WebSocket(`${master.url.replace('http', 'ws')}/ws`, {headers: {authorization: 'Bearer wrong'}})
    const code = await new Promise<number>((done) => {
      ws.on('unexpected-response', (_req, res) => done(res.statusCode ?? 0))
      ws.on('error', () => done(-1))
    })
    expect(code).toBe(401)
  })
})
