import {createHash, randomBytes} from 'node:crypto'
import {mkdtemp, readdir, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {downloadFile} from '../../src/client/download.js'
import {silentView} from '../../src/client/view.js'
import {fakeServer, json, type FakeServer} from './fake-http.js'

// downloadFile against a fake master and two replicas: "rotten" serves wrong bytes for chunk 1,
// "good" serves the truth. The client must verify, report the bad copy, and use the next one.
const CHUNK = 1000
const file = randomBytes(2 * CHUNK + 10)
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')
const chunks = [0, 1, 2].map((index) => {
  const bytes = file.subarray(index * CHUNK, Math.min((index + 1) * CHUNK, file.length))
  return {index, chunkId: String(index).repeat(24), version: 3, size: bytes.length, sha256: sha(bytes), bytes}
})

let dir: string
let master: FakeServer
let rotten: FakeServer
let good: FakeServer
const badReports: unknown[] = []
let flakyAsks = 0

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chunky-download-'))
  const replica = (corrupt: boolean) =>
    fakeServer((req, res) => {
      const [, , id, version] = (req.url ?? '').split('/')
      const chunk = chunks.find((c) => c.chunkId === id && String(c.version) === version)
      if (!chunk) return json(res, 404, {error: {code: 'CHUNK_NOT_FOUND', message: 'no such replica'}})
      const bytes = Buffer.from(chunk.bytes)
      if (corrupt && chunk.index === 1) bytes[5] = bytes[5]! ^ 1
      res.end(bytes)
    })
  rotten = await replica(true)
  good = await replica(false)
  const replicas = [
    {id: 'rotten', url: rotten.url, zone: ''},
    {id: 'good', url: good.url, zone: ''},
  ]
  master = await fakeServer((req, res, body) => {
    if (req.url === '/api/files/video.mp4') {
      return json(res, 200, {
        name: 'video.mp4',
        size: file.length,
        chunkSize: CHUNK,
        committedAt: new Date().toISOString(),
        chunks: chunks.map(({bytes: _bytes, ...c}) => ({...c, replicas})),
      })
    }
    if (req.url === '/api/files/flaky.mp4') {
      if (flakyAsks++ === 0) return void req.socket.destroy() // the master restarting: no answer at all
      return json(res, 200, {name: 'flaky.mp4', size: CHUNK, chunkSize: CHUNK, committedAt: '', chunks: [{...chunks[0], bytes: undefined, replicas: [{id: 'good', url: good.url, zone: ''}]}]})
    }
    if (req.url === '/api/files/gone.mp4') {
      return json(res, 200, {name: 'gone.mp4', size: 5, chunkSize: CHUNK, committedAt: '', chunks: [{...chunks[0], size: 5, replicas: []}]})
    }
    if (req.url === '/api/bad-replica') {
      badReports.push(JSON.parse(body.toString()))
      return json(res, 200, {ok: true})
    }
    json(res, 404, {error: {code: 'FILE_NOT_FOUND', message: 'no such file'}})
  })
})

afterAll(async () => {
  await Promise.all([master?.close(), rotten?.close(), good?.close()])
  await rm(dir, {recursive: true, force: true})
})

describe('downloadFile', () => {
  it('skips a copy whose bytes do not match, reports it, and writes the exact file', async () => {
    const output = join(dir, 'video.mp4')
    const probe = async (url: string) => (url === rotten.url ? 1 : 5) // "rotten" looks nearest: it is tried first
    const result = await downloadFile({name: 'video.mp4', output, master: master.url, token: 't', probe}, silentView)
    expect(result).toMatchObject({name: 'video.mp4', size: file.length, chunks: 3, output})
    expect((await readFile(output)).equals(file)).toBe(true)
    expect(badReports).toEqual([{chunkId: chunks[1]!.chunkId, version: 3, node: 'rotten', reason: 'bytes do not match the recorded SHA-256'}])
    expect(await readdir(dir)).toEqual(['video.mp4']) // no temporary file left
  })

  it('names the chunk when no copy can be read, and leaves nothing behind', async () => {
    const output = join(dir, 'gone.mp4')
    await expect(downloadFile({name: 'gone.mp4', output, master: master.url, token: 't'}, silentView)).rejects.toThrow(
      /chunk 0 of gone\.mp4 has no fresh copy/,
    )
    expect(await readdir(dir)).toEqual(['video.mp4'])
  })

  it('tries the master again when it gives no answer (a restart), as an upload does', async () => {
    const output = join(dir, 'flaky.mp4')
    const result = await downloadFile({name: 'flaky.mp4', output, master: master.url, token: 't'}, silentView)
    expect(result).toMatchObject({name: 'flaky.mp4', size: CHUNK})
    expect(flakyAsks).toBe(2)
    expect((await readFile(output)).equals(chunks[0]!.bytes)).toBe(true)
    await rm(output)
  })

  it('says which name was not found', async () => {
    await expect(downloadFile({name: 'nope/x.mp4', output: join(dir, 'x'), master: master.url, token: 't'}, silentView)).rejects.toThrow(/nope\/x\.mp4/)
  })
})
