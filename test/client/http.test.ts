import {createHash, randomBytes} from 'node:crypto'
import {mkdtemp, rm, truncate, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {NetworkError, send, sendForText} from '../../src/client/http.js'
import {putChunk} from '../../src/client/put-chunk.js'
import {ChunkyError, type PlannedChunk} from '../../src/protocol/index.js'
import {fakeServer, json, type FakeServer} from './fake-http.js'

// The client's own HTTP (node:http, no library): answers, no answers, timeouts, and a chunk PUT that
// streams its file range through reused buffers.
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

let dir: string
let server: FakeServer
let closedUrl: string
const received: {url: string; body: Buffer; length: string | undefined}[] = []

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chunky-http-'))
  server = await fakeServer(async (req, res, body) => {
    if (req.url === '/slow') return // never answers
    if (req.url === '/big') {
      res.writeHead(200)
      return res.end(Buffer.alloc(2048))
    }
    if (req.method === 'PUT') {
      received.push({url: req.url ?? '', body, length: req.headers['content-length']})
      return json(res, 200, {stored: [{node: 'n1', version: 3, sha256: sha(body)}], failed: []})
    }
    json(res, 200, {echo: body.toString()})
  })
  const closed = await fakeServer(() => {})
  closedUrl = closed.url
  await closed.close()
})

afterAll(async () => {
  await server?.close()
  await rm(dir, {recursive: true, force: true})
})

const planned = (size: number): PlannedChunk => ({
  index: 0,
  chunkId: 'a'.repeat(24),
  version: 3,
  size,
  sha256: 'b'.repeat(64),
  skip: false,
  targets: [{id: 'n1', url: server.url, zone: ''}],
  grant: 'grant',
})

describe('client http', () => {
  it('sends a body and reads the whole answer', async () => {
    const answer = await sendForText(new URL('/x', server.url), {method: 'POST', body: 'hello', headers: {'content-length': '5'}})
    expect(answer).toEqual({statusCode: 200, body: '{"echo":"hello"}'})
  })

  it('says ECONNREFUSED when nothing listens, and ETIMEDOUT when no answer comes in time', async () => {
    const refused = await send(new URL('/', closedUrl), {method: 'GET'}).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(NetworkError)
    expect(refused).toMatchObject({code: 'ECONNREFUSED'})
    const started = performance.now()
    await expect(sendForText(new URL('/slow', server.url), {method: 'GET', responseTimeoutMs: 200})).rejects.toMatchObject({code: 'ETIMEDOUT'})
    await expect(sendForText(new URL('/slow', server.url), {method: 'GET', totalTimeoutMs: 200})).rejects.toMatchObject({code: 'ETIMEDOUT'})
    expect(performance.now() - started).toBeLessThan(5_000)
  })

  it('rejects with the body writer’s own error', async () => {
    const own = new Error('disk gone')
    await expect(sendForText(new URL('/x', server.url), {method: 'PUT', body: async () => Promise.reject(own)})).rejects.toBe(own)
  })

  it('puts a chunk’s exact byte range, larger than one read buffer', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 12_345)
    const path = join(dir, 'video.bin')
    await writeFile(path, data)
    const range = {index: 0, start: 1_000, end: data.length - 7}
    const sent: number[] = []
    const result = await putChunk({path, range, chunk: planned(range.end - range.start), token: 't', onSent: (b) => sent.push(b)})
    const got = received.at(-1)!
    expect(got.body.equals(data.subarray(range.start, range.end))).toBe(true)
    expect(got.length).toBe(String(range.end - range.start))
    expect(result.stored[0]).toMatchObject({node: 'n1', version: 3})
    expect(sent.at(-1)).toBe(range.end - range.start)
  })

  it('says the file changed when it shrank under the upload, and that it is gone when it is', async () => {
    const path = join(dir, 'shrinks.bin')
    await writeFile(path, randomBytes(2 * 1024 * 1024))
    await truncate(path, 1024 * 1024)
    const range = {index: 0, start: 0, end: 2 * 1024 * 1024}
    const shrunk = await putChunk({path, range, chunk: planned(range.end), token: 't', onSent: () => {}}).catch((e: unknown) => e)
    expect(shrunk).toBeInstanceOf(ChunkyError)
    expect((shrunk as Error).message).toMatch(/changed while it was being uploaded/)
    await expect(putChunk({path: join(dir, 'none.bin'), range, chunk: planned(range.end), token: 't', onSent: () => {}})).rejects.toMatchObject({
      code: 'BAD_REQUEST',
      message: expect.stringMatching(/it is gone/),
    })
  })
})
