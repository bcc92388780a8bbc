import {randomBytes} from 'node:crypto'
import {mkdtemp, rm} from 'node:fs/promises'
import {request} from 'node:http'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, expect, it} from 'vitest'
import type {RunningNode} from '../../src/node/index.js'
import {HEADER_GRANT, signTransferGrant} from '../../src/protocol/index.js'
import {chunkIdOf, type FakeMaster, grantFor, putChunk, send, startFakeMaster, startTestNode, TOKEN, waitUntil} from './helpers.js'

// A repair source used to crash when the node pulling from it went away mid-entry: the tar entry being
// written emitted 'error' with no listener (ERR_STREAM_PREMATURE_CLOSE), and one dead node took down
// the node sending to it, whose death took down the next.

let dir: string
let master: FakeMaster
let source: RunningNode
const uncaught: Error[] = []
const onUncaught = (err: Error) => uncaught.push(err)

beforeAll(async () => {
  process.on('uncaughtException', onUncaught)
  dir = await mkdtemp(join(tmpdir(), 'chunky-transfer-abort-'))
  master = await startFakeMaster()
  source = await startTestNode(master, join(dir, 'src'), 'src')
})

afterAll(async () => {
  process.off('uncaughtException', onUncaught)
  await source?.close()
  await master?.close()
  await rm(dir, {recursive: true, force: true})
})

it('a puller that disconnects mid-transfer leaves the source up and serving', async () => {
  const replicas: {chunkId: string; version: number}[] = []
  for (let i = 0; i < 3; i++) {
    const bytes = randomBytes(8 * 1024 * 1024)
    const chunkId = chunkIdOf(`abort-${i}`)
    const reply = await putChunk(source.url, chunkId, 1, bytes, {grant: grantFor(master, chunkId, 1, bytes, ['src'])})
    expect(reply.status).toBe(200)
    replicas.push({chunkId, version: 1})
  }
  const grant = signTransferGrant({kind: 'transfer', source: 'src', target: 'other', replicas, exp: Date.now() + 60_000}, master.grantKey)

  for (let round = 0; round < 3; round++) {
    const received = await new Promise<number>((resolve, reject) => {
      const body = JSON.stringify({replicas})
      const req = request(new URL('/transfer', source.url), {
        method: 'POST',
        headers: {authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), [HEADER_GRANT]: grant},
      })
      req.on('error', reject)
      req.on('response', (res) => {
        expect(res.statusCode).toBe(200)
        let bytes = 0
        res.on('data', (part: Buffer) => {
          bytes += part.length
          if (bytes > 256 * 1024) {
            req.destroy() // the puller dies in the middle of the first entry
            resolve(bytes)
          }
        })
        res.on('error', () => {})
      })
      req.end(body)
    })
    expect(received).toBeGreaterThan(256 * 1024)
  }

  // The source notices the closed sockets, stays up and keeps serving.
  await waitUntil(async () => (await send(new URL('/healthz', source.url), 'GET', {})).status === 200, 'the source to answer')
  await new Promise((r) => setTimeout(r, 300)) // let the destroyed streams settle: an unhandled 'error' would surface here
  expect(uncaught.map((e) => e.message)).toEqual([])
})
