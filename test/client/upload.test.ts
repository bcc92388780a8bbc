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
let flakyAnswer: 'fail' | 'checksum' | 'chain-broken' | 'master-changing' | 'expired' = 'fail'
/** With 'master-changing', how many writes flaky refuses (no master link, then a stale grant) before it stores. */
let masterChangingWrites = 0
/** Writes the flaky node refuses as GRANT_EXPIRED before it takes one (mode 'expired'). */
let expiredWrites = 0
/** W in the fake plan; with 2, steady also reports a copy on "mirror" (its chain). */
let quorum = 1
/** Indexes the fake master says the cluster already holds (a resumed upload). */
let heldIndexes: number[] = []
const stored = new Map<string, Buffer>() // steady's disk: "<chunkId>/<version>" -> bytes
const replans: {index: number; exclude: string[]}[] = []
let committed = 0
let flakyWrites = 0
/** The last plan request the fake master got. */
let lastPlan: UploadPlanRequest | undefined

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chunky-upload-'))
  const node = (id: string, behave: () => typeof flakyAnswer | 'store') =>
    fakeServer((req, res, body) => {
      const [, , id24, version] = (req.url ?? '').split('/')
      const mode = behave()
      if (id === 'flaky') flakyWrites++
      if (mode === 'fail') return json(res, 503, {error: {code: 'INTERNAL', message: 'disk on fire'}})
      if (mode === 'checksum') return json(res, 422, {error: {code: 'CHECKSUM_MISMATCH', message: 'the bytes do not match the planned SHA-256'}})
      if (mode === 'expired' && expiredWrites > 0) {
        expiredWrites--
        // worded without "expired": the client must go by the code
        return json(res, 403, {error: {code: 'GRANT_EXPIRED', message: 'this write grant is past its time: ask the master for a new plan'}})
      }
      if (mode === 'master-changing' && masterChangingWrites > 0) {
        masterChangingWrites--
        if (masterChangingWrites % 3 === 2) return json(res, 503, {error: {code: 'MASTER_UNREACHABLE', message: 'not connected to the master yet: try again shortly'}})
        if (masterChangingWrites % 3 === 1) return json(res, 409, {error: {code: 'STALE_LEADER', message: 'the grant comes from a master that no longer leads'}})
        return json(res, 200, {stored: [], failed: [{node: id, error: 'stored but not acknowledged: not connected', code: 'MASTER_UNREACHABLE'}]})
      }
      expect(req.headers['x-chunky-grant']).toBe('grant')
      const copy = (node: string) => ({node, version: Number(version), sha256: sha(body)})
      if (mode === 'chain-broken') {
        // stored here, then the next node of the chain died: it and the one after it are listed
        return json(res, 200, {stored: [copy(id)], failed: [{node: 'mid', error: 'mid failed: ECONNRESET'}, {node: 'tail', error: 'mid failed: ECONNRESET'}]})
      }
      stored.set(`${id24}/${version}`, body)
      json(res, 200, {stored: quorum === 2 ? [copy(id), copy('mirror')] : [copy(id)], failed: []})
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
      lastPlan = request
      const chunks = request!.chunks.map((c) =>
        heldIndexes.includes(c.index) ? {...planned(c.index, []), skip: true, grant: ''} : planned(c.index, [target('flaky')]),
      )
      return json(res, 200, {uploadId: 'u1', name: request!.name, size: request!.size, chunkSize: request!.chunkSize, replicas: quorum, minReplicas: quorum, chunks})
    }
    if (url.endsWith('/replan')) {
      const replan = JSON.parse(body.toString())
      replans.push(replan)
      return json(res, 200, planned(replan.index, [target(flakyAnswer === 'master-changing' || flakyAnswer === 'expired' ? 'flaky' : 'steady')]))
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
  flakyWrites = 0
  heldIndexes = []
  quorum = 1
})

afterAll(async () => {
  await Promise.all([master?.close(), flaky?.close(), steady?.close()])
  await rm(dir, {recursive: true, force: true})
})

describe('uploadFile', () => {
  it('tells the master the nodes in the order of its own round trips, so each chain starts at the nearest chosen node', async () => {
    flakyAnswer = 'fail'
    const path = join(dir, 'near.bin')
    await writeFile(path, randomBytes(100))
    const rtt: Record<string, number> = {[steady.url]: 2, [flaky.url]: 9}
    const probe = async (url: string) => rtt[url] ?? Promise.reject(new Error('ECONNREFUSED'))
    await uploadFile({path, name: 'near.bin', chunkSize: CHUNK, concurrency: 1, master: master.url, token: 't', probe}, silentView)
    expect(lastPlan).toMatchObject({entryNode: 'steady', byRtt: ['steady', 'flaky']})
  })

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
    // lost once, said once: the third chunk (not yet started) is re-planned before it is sent
    expect(notes.filter((n) => n.includes('not sending to it for the rest of this upload'))).toHaveLength(1)
    expect(notes).toHaveLength(1)
    expect(flakyWrites).toBe(2)
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

  it('sends only the chunks not yet held, and its progress starts from the bytes already there', async () => {
    flakyAnswer = 'fail' // every chunk sent goes through a re-plan to "steady"
    heldIndexes = [0, 2]
    const bytes = randomBytes(3 * CHUNK + 10)
    const path = join(dir, 'resumed.bin')
    await writeFile(path, bytes)
    const phases: {label: string; total: number; first?: number}[] = []
    const view = {
      ...silentView,
      start: (label: string, total: number) => void phases.push({label, total}),
      overall: (done: number) => void (phases.at(-1)!.first ??= done),
    }
    const result = await uploadFile({path, chunkSize: CHUNK, node: 'steady', master: master.url, token: 't'}, view)
    expect(result).toMatchObject({chunks: 4, uploadedChunks: 2, skippedChunks: 2})
    expect([...stored.keys()].sort()).toEqual([`${chunkId(1)}/1`, `${chunkId(3)}/1`])
    expect(phases.find((p) => p.label === 'uploading')).toEqual({label: 'uploading', total: bytes.length, first: 2 * CHUNK})
  })

  it('blames only the node where a chain broke, not the nodes after it that were never reached', async () => {
    flakyAnswer = 'chain-broken'
    quorum = 2
    const path = join(dir, 'chain.bin')
    await writeFile(path, randomBytes(CHUNK))
    const result = await uploadFile({path, chunkSize: CHUNK, node: 'flaky', master: master.url, token: 't'}, silentView)
    expect(result).toMatchObject({uploadedChunks: 1})
    expect(replans).toEqual([{index: 0, exclude: ['mid']}])
  })

  it('waits out a master changing hands without blaming the node: no master link, a stale grant, bytes stored but not acknowledged', async () => {
    flakyAnswer = 'master-changing'
    masterChangingWrites = 3
    const bytes = randomBytes(CHUNK)
    const path = join(dir, 'failover.bin')
    await writeFile(path, bytes)
    const result = await uploadFile({path, chunkSize: CHUNK, node: 'flaky', master: master.url, token: 't'}, silentView)
    expect(result).toMatchObject({uploadedChunks: 1})
    expect(replans).toEqual([{index: 0, exclude: []}, {index: 0, exclude: []}, {index: 0, exclude: []}]) // a fresh grant each time, nobody left out
    expect(flakyWrites).toBe(4)
    expect(committed).toBe(1)
  })

  it('re-plans a chunk whose grant expired (by its code, GRANT_EXPIRED), on the same node, without blaming it', async () => {
    flakyAnswer = 'expired'
    expiredWrites = 1
    const bytes = randomBytes(CHUNK)
    const path = join(dir, 'expired.bin')
    await writeFile(path, bytes)
    const notes: string[] = []
    const result = await uploadFile({path, chunkSize: CHUNK, node: 'flaky', master: master.url, token: 't'}, {...silentView, note: (m) => notes.push(m)})
    expect(result).toMatchObject({uploadedChunks: 1, entryNode: 'flaky'})
    expect(replans).toEqual([{index: 0, exclude: []}])
    expect(flakyWrites).toBe(2)
    expect(committed).toBe(1)
    expect(notes.join('\n')).not.toContain('not sending to it')
  })

  it('refuses a missing file and a bad name before any request', async () => {
    await expect(uploadFile({path: join(dir, 'nope'), master: 'http://127.0.0.1:9', token: 't'}, silentView)).rejects.toThrow(/no such file/)
    await expect(uploadFile({path: join(dir, 'clip.bin'), name: 'a//b', master: 'http://127.0.0.1:9'}, silentView)).rejects.toMatchObject({code: 'BAD_NAME'})
  })
})
