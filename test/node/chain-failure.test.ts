import {randomBytes} from 'node:crypto'
import {mkdtemp, rm} from 'node:fs/promises'
import {request, type IncomingMessage} from 'node:http'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, expect, it} from 'vitest'
import type {RunningNode} from '../../src/node/index.js'
import {HEADER_CHAIN, HEADER_GRANT} from '../../src/protocol/index.js'
import {chunkFiles, chunkIdOf, expectedFile, type FakeMaster, grantFor, startFakeMaster, startTestNode, targetOf, TOKEN, waitUntil} from './helpers.js'

// What happens when part of a chain goes away mid-body: the nodes that can still store do, the answer
// lists who failed, and nobody keeps a partial file.

let dir: string
let master: FakeMaster
const nodes: RunningNode[] = []
const dataDir = (id: string) => join(dir, id)

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chunky-node-chain-'))
  master = await startFakeMaster()
})

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.close()))
  await master?.close()
  await rm(dir, {recursive: true, force: true})
})

/** Starts a PUT whose body the test feeds by hand. */
function openPut(url: string, chunkId: string, size: number, grant: string, chain: unknown) {
  const req = request(new URL(`/chunks/${chunkId}/1`, url), {
    method: 'PUT',
    headers: {authorization: `Bearer ${TOKEN}`, 'content-length': String(size), [HEADER_GRANT]: grant, [HEADER_CHAIN]: JSON.stringify(chain)},
  })
  const response = new Promise<{status: number; body: any}>((resolve, reject) => {
    req.on('error', reject)
    req.on('response', async (res: IncomingMessage) => {
      const parts: Buffer[] = []
      for await (const p of res) parts.push(p as Buffer)
      resolve({status: res.statusCode!, body: JSON.parse(Buffer.concat(parts).toString('utf8'))})
    })
  })
  return {req, response}
}

const hasTemp = (id: string) => async () => (await chunkFiles(dataDir(id))).some((f) => f.endsWith('.tmp'))

it('a downstream node closed mid-chain: the entry node still stores its copy and lists the failures', async () => {
  const [a, b, c] = await Promise.all(['ca', 'cb', 'cc'].map((id) => startTestNode(master, dataDir(id), id)))
  nodes.push(a!, c!) // b is closed by the test
  const bytes = randomBytes(4 * 1024 * 1024)
  const id = chunkIdOf('chain-break')
  const put = openPut(a!.url, id, bytes.length, grantFor(master, id, 1, bytes, ['ca', 'cb', 'cc']), [targetOf(b!), targetOf(c!)])
  put.req.write(bytes.subarray(0, 1024 * 1024))
  await waitUntil(hasTemp('cc'), 'the last node of the chain to start writing') // bytes flow a -> b -> c while still arriving

  await b!.close() // b goes away with its write unfinished
  put.req.end(bytes.subarray(1024 * 1024))
  const reply = await put.response

  expect(reply.status).toBe(200)
  expect(reply.body.stored.map((s: {node: string}) => s.node)).toEqual(['ca'])
  expect(reply.body.failed.map((f: {node: string}) => f.node).sort()).toEqual(['cb', 'cc'])
  expect(await chunkFiles(dataDir('ca'))).toEqual([expectedFile(id, 1, bytes)])
  expect(await chunkFiles(dataDir('cb'))).toEqual([])
  await waitUntil(async () => (await chunkFiles(dataDir('cc'))).length === 0, 'the last node to remove its temp file')
})

it('a client that goes away mid-body leaves no temp file on any node of the chain', async () => {
  const [a, b] = await Promise.all(['da', 'db'].map((id) => startTestNode(master, dataDir(id), id)))
  nodes.push(a!, b!)
  const bytes = randomBytes(2 * 1024 * 1024)
  const id = chunkIdOf('client-gone')
  const put = openPut(a!.url, id, bytes.length, grantFor(master, id, 1, bytes, ['da', 'db']), [targetOf(b!)])
  put.response.catch(() => {}) // the connection is cut: no answer expected
  put.req.write(bytes.subarray(0, 512 * 1024))
  await waitUntil(hasTemp('db'), 'the downstream node to start writing')
  put.req.destroy()
  for (const node of ['da', 'db']) {
    await waitUntil(async () => (await chunkFiles(dataDir(node))).length === 0, `${node} to remove its temp file`)
  }
})
