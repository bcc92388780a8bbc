import {createHash, randomBytes} from 'node:crypto'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest'
import {uploadFile} from '../../src/client/upload.js'
import {silentView} from '../../src/client/view.js'
import type {PlannedChunk, UploadPlanRequest} from '../../src/protocol/index.js'
import {fakeServer, json, type FakeServer} from './fake-http.js'

// uploadFile against a fake master and two fake nodes: node "flaky" fails every write, node "steady"
// stores what it gets. The client must re-plan the failed chunks away from "flaky" and commit.
const CHUNK = 65_536
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')
const chunkId = (i: number) => i.toString(16).padStart(24, '0')

let dir: string
let master: FakeServer
let flaky: FakeServer
let steady: FakeServer
let flakyAnswer: 'fail' | 'checksum' = 'fail'
const stored = new Map<string, Buffer>() // steady's disk: "<chunkId>/<version>" -> bytes
const replans: {index: number; exclude: string[]}[] = []
let committed = 0

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chunky-upload-'))
  const node = (id: string, behave: () => 'fail' | 'checksum' | 'store') =>
    fakeServer((req, res, body) => {
      const [, , id24, version] = (req.url ?? '').split('/')
      const mode = behave()
      if (mode === 'fail') return json(res, 503, {error: {code: 'INTERNAL', message: 'disk on fire'}})
      if (mode === 'checksum') return json(res, 422, {error: {code: 'CHECKSUM_MISMATCH', message: 'the bytes do not match the planned SHA-256'}})
      expect(req.headers['x-chunky-grant']).toBe('grant')
      stored.set(`${id24}/${version}`, body)
      json(res, 200, {stored: [{node: id, version: Number(version), sha256: sha(body)}], failed: []})
    })
  flaky = await node('flaky', () => flakyAnswer)
  steady = await node('steady', () => 'store')
  const target = (which: 'flaky' | 'steady') => ({id: which, url: which === 'flaky' ? flaky.url : steady.url, zone: ''})
  let request: UploadPlanRequest | undefined
  const planned = (index: number, targets: ReturnType<typeof target>[]): PlannedChunk => {
    const c = request!.chunks[index]!
    return {index, chunkId: chunkId(index), version: 1, size: c.size, sha256: c.sha256, skip: false, targets, grant: 'grant'}
  }
  master = await fakeServer((req, res, body) => {
    const url = req.url ?? ''
    if (url === '/api/nodes') return json(res, 200, {nodes: [{...target('flaky'), state: 'alive'}, {...target('steady'), state: 'alive'}]})
    if (url === '/api/uploads') {
      request = JSON.parse(body.toString())
      const chunks = request!.chunks.map((c) => planned(c.index, [target('flaky')]))
      return json(res, 200, {uploadId: 'u1', name: request!.name, size: request!.size, chunkSize: request!.chunkSize, replicas: 1, minReplicas: 1, chunks})
    }
    if (url.endsWith('/replan')) {
      const replan = JSON.parse(body.toString())
      replans.push(replan)
      return json(res, 200, planned(replan.index, [target('steady')]))
    }
    if (url.endsWith('/commit')) {
      committed++
      return json(res, 200, {name: request!.name, size: request!.size, chunks: request!.chunks.length, committedAt: new Date().toISOString()})
    }
    json(res, 404, {error: {code: 'NOT_FOUND', message: url}})
  })
})

afterEach(() => {
  stored.clear()
  replans.length = 0
  committed = 0
})

afterAll(async () => {
  await Promise.all([master?.close(), flaky?.close(), steady?.close()])
  await rm(dir, {recursive: true, force: true})
})

describe('uploadFile', () => {
  it('re-plans a chunk whose node failed, without that node, and commits', async () => {
    flakyAnswer = 'fail'
    const bytes = randomBytes(2 * CHUNK + 100)
    const path = join(dir, 'clip.bin')
    await writeFile(path, bytes)
    const notes: string[] = []
    const result = await uploadFile(
      {path, name: 'clips/clip.bin', chunkSize: CHUNK, concurrency: 2, node: 'flaky', master: master.url, token: 't'},
      {...silentView, note: (m) => notes.push(m)},
    )
    expect(result).toMatchObject({name: 'clips/clip.bin', size: bytes.length, chunks: 3, uploadedChunks: 3, skippedChunks: 0, entryNode: 'flaky'})
    expect(replans.map((r) => r.exclude)).toEqual([['flaky'], ['flaky'], ['flaky']])
    expect(committed).toBe(1)
    for (let i = 0; i < 3; i++) expect(stored.get(`${chunkId(i)}/1`)!.equals(bytes.subarray(i * CHUNK, (i + 1) * CHUNK))).toBe(true)
    expect(notes.join('\n')).toMatch(/flaky failed the write \(503\): disk on fire/)
  })

  it('stops with a clear message, without retrying, when the node says the bytes changed (422)', async () => {
    flakyAnswer = 'checksum'
    const path = join(dir, 'changing.bin')
    await writeFile(path, randomBytes(CHUNK))
    await expect(uploadFile({path, chunkSize: CHUNK, node: 'flaky', master: master.url, token: 't'}, silentView)).rejects.toThrow(
      /changing\.bin changed while it was being uploaded/,
    )
    expect(replans).toEqual([])
    expect(committed).toBe(0)
  })

  it('refuses a missing file and a bad name before any request', async () => {
    await expect(uploadFile({path: join(dir, 'nope'), master: 'http://127.0.0.1:9', token: 't'}, silentView)).rejects.toThrow(/no such file/)
    await expect(uploadFile({path: join(dir, 'clip.bin'), name: 'a//b', master: 'http://127.0.0.1:9'}, silentView)).rejects.toMatchObject({code: 'BAD_NAME'})
  })
})
