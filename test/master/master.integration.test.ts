import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import WebSocket from 'ws'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startMaster, type RunningMaster} from '../../src/master/index.js'
import {deriveCredential, FileManifest, StatusDoc, UploadPlan, WS_CLOSE, type MasterToNode} from '../../src/protocol/index.js'
import {FakeNode, until} from './fake-node.js'
import {planRequest} from './helpers.js'
import {messageLogger} from '../../src/util/log.js'

const TOKEN = 'test-token'

async function api(master: RunningMaster, method: string, path: string, body?: unknown, token: string | null = TOKEN) {
  const res = await fetch(`${master.url}${path}`, {
    method,
    headers: {...(token ? {authorization: `Bearer ${token}`} : {}), ...(body === undefined ? {} : {'content-type': 'application/json'})},
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  })
  return {status: res.status, body: (await res.json()) as any}
}

describe('master over real HTTP and WebSocket', () => {
  let dir: string
  let master: RunningMaster
  const lines: string[] = []
  const nodes: FakeNode[] = []
  let reqId = 0

  /** The nodes tell the master they stored each chunk (on the first two of its targets unless `on` says), and every `stored` is acknowledged. */
  async function reportStored(chunks: UploadPlan['chunks'], on: (chunk: UploadPlan['chunks'][number]) => UploadPlan['chunks'][number]['targets'] = (chunk) => chunk.targets.slice(0, 2)) {
    for (const chunk of chunks) {
      for (const target of on(chunk)) {
        const node = nodes.find((n) => n.id === target.id)!
        const id = ++reqId
        node.send({type: 'stored', reqId: id, replica: {chunkId: chunk.chunkId, version: chunk.version, size: chunk.size, sha256: chunk.sha256}})
        const ack = await node.waitFor((m) => m.type === 'ack' && m.reqId === id)
        expect(ack).toEqual({type: 'ack', reqId: id, ok: true})
      }
    }
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'chunky-master-it-'))
    master = await startMaster({
      host: '127.0.0.1', port: 0, dataDir: join(dir, 'm'), replicas: 3, minReplicas: 2,
      nodeTimeoutMs: 1000, repairIntervalMs: 200, token: TOKEN, log: messageLogger((line) => void lines.push(line)),
    })
    for (const [id, zone] of [['n1', 'a'], ['n2', 'b'], ['n3', 'c']]) nodes.push(await FakeNode.connect(master.url, TOKEN, id!, {zone}))
  })
  afterAll(async () => {
    for (const node of nodes) await node.close()
    await master?.close()
    await rm(dir, {recursive: true, force: true})
  })

  it('answers /healthz without a credential and refuses everything else without the right one', async () => {
    expect(master.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    expect(await api(master, 'GET', '/healthz', undefined, null)).toEqual({status: 200, body: {ok: true, role: 'leader', epoch: 1, leader: master.url}})
    const missing = await api(master, 'GET', '/api/status', undefined, null)
    expect(missing.status).toBe(401)
    expect(missing.body.error.code).toBe('UNAUTHORIZED')
    expect((await api(master, 'GET', '/api/status', undefined, 'wrong')).status).toBe(401)
    expect((await api(master, 'GET', '/api/nope')).body.error.code).toBe('NOT_FOUND')
  })

  it('refuses a WebSocket upgrade without or with a wrong credential with 401', async () => {
    for (const headers of [{}, {authorization: 'Bearer wrong'}]) {
      const ws = new WebSocket(`${master.url.replace('http', 'ws')}/ws`, {headers})
      const status = await new Promise<number>((resolve) => {
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
        ws.on('open', () => resolve(101))
        ws.on('error', () => resolve(-1))
      })
      ws.terminate()
      expect(status).toBe(401)
    }
    expect(lines.some((l) => l.startsWith('refused a node link'))).toBe(true)
  })

  it('refuses bad plans with 400 and a reason, and oversized bodies with 413', async () => {
    const wrongSize = {...planRequest('x.mp4', 100_000), size: 99}
    const bad = await api(master, 'POST', '/api/uploads', wrongSize)
    expect(bad.status).toBe(400)
    expect(bad.body.error.message).toContain('chunks')
    expect((await api(master, 'POST', '/api/uploads', '{not json')).status).toBe(400)
    expect((await api(master, 'POST', '/api/uploads', {...planRequest('../x', 10)})).status).toBe(400)
    expect((await api(master, 'POST', '/api/uploads', 'x'.repeat(5 * 1024 * 1024))).status).toBe(413)
    expect((await api(master, 'GET', `/api/files/${encodeURIComponent('a/../b')}`)).body.error.code).toBe('BAD_NAME')
  })

  it('plans, records W stored replicas, commits, serves the manifest and the status document; repair adds the third copy', async () => {
    const plan = UploadPlan.parse((await api(master, 'POST', '/api/uploads', planRequest('talks/keynote.mp4', 150_000, 'k', {entryNode: 'n2'}))).body)
    expect(plan.chunks).toHaveLength(3)
    expect(plan.chunks.every((c) => c.version === 1 && c.targets.length === 3 && c.targets[0]!.id === 'n2')).toBe(true)

    const early = await api(master, 'POST', `/api/uploads/${plan.uploadId}/commit`, {})
    expect(early.status).toBe(409)
    expect(early.body.error.code).toBe('NOT_DURABLE')

    await reportStored(plan.chunks, (chunk) => chunk.targets.filter((t) => t.id !== 'n1')) // W = 2 copies, none on n1
    const commit = await api(master, 'POST', `/api/uploads/${plan.uploadId}/commit`, {})
    expect(commit.status).toBe(200)
    expect(commit.body).toMatchObject({name: 'talks/keynote.mp4', size: 150_000, chunks: 3})
    expect(lines).toContain('committed talks/keynote.mp4 (3 chunks)')

    const manifest = FileManifest.parse((await api(master, 'GET', `/api/files/${encodeURIComponent('talks/keynote.mp4')}`)).body)
    expect(manifest.chunks.map((c) => c.replicas.length)).toEqual([2, 2, 2])

    // Each chunk is on 2 of R=3 nodes: the repair loop asks the third node (n1 here) to pull them.
    const n1 = nodes.find((n) => n.id === 'n1')!
    const task = await n1.waitFor((m): m is Extract<MasterToNode, {type: 'replicate'}> => m.type === 'replicate')
    expect(task.replicas).toHaveLength(3)
    expect(['n2', 'n3']).toContain(task.source.id)
    await n1.completeTransfer(task) // each copy confirmed by its own `stored`, then the summary
    await until(() => lines.find((l) => l.startsWith(`repair ${task.taskId} finished: 3 chunks`)), 5000, 'repair finished log')

    const status = StatusDoc.parse((await api(master, 'GET', '/api/status')).body)
    expect(status.summary).toEqual({nodes: 3, aliveNodes: 3, files: 1, chunks: 3, underReplicated: 0, stale: 0, corrupt: 0})
    expect(status.replicas).toBe(3)
    expect(status.minReplicas).toBe(2)
    expect(status.nodes.map((n) => [n.id, n.state])).toEqual([['n1', 'alive'], ['n2', 'alive'], ['n3', 'alive']])
    expect(status.nodes.every((n) => n.lastHeartbeatMsAgo < 1000)).toBe(true)
    expect(status.files[0]!.chunks[0]!.replicas).toEqual([
      {node: 'n1', version: 1, state: 'fresh'}, {node: 'n2', version: 1, state: 'fresh'}, {node: 'n3', version: 1, state: 'fresh'},
    ])
    const one = StatusDoc.parse((await api(master, 'GET', `/api/status?name=${encodeURIComponent('talks/keynote.mp4')}`)).body)
    expect(one.files.map((f) => f.name)).toEqual(['talks/keynote.mp4'])
    expect((await api(master, 'GET', '/api/status?name=missing.mp4')).status).toBe(404)
    expect((await api(master, 'GET', '/api/files')).body.files).toEqual([
      expect.objectContaining({name: 'talks/keynote.mp4', chunks: 3, minReplicas: 3}),
    ])
  })

  it('tells a node to delete a stale replica it reports', async () => {
    const manifest = FileManifest.parse((await api(master, 'GET', `/api/files/${encodeURIComponent('talks/keynote.mp4')}`)).body)
    const n3 = nodes.find((n) => n.id === 'n3')!
    // Re-upload chunk 0 with new bytes, stored on n1 and n2 only: n3 keeps v1, which is now stale.
    const changed = planRequest('talks/keynote.mp4', 150_000, 'k', {exclude: ['n3']})
    changed.chunks[0]!.sha256 = 'c'.repeat(64)
    const plan = UploadPlan.parse((await api(master, 'POST', '/api/uploads', changed)).body)
    const chunk = plan.chunks[0]!
    expect(chunk.version).toBe(2)
    for (const id of ['n1', 'n2']) nodes.find((n) => n.id === id)!.send({type: 'stored', reqId: 1000, replica: {chunkId: chunk.chunkId, version: 2, size: chunk.size, sha256: chunk.sha256}})
    await until(async () => (await api(master, 'POST', `/api/uploads/${plan.uploadId}/commit`, {})).status === 200, 5000, 'commit')
    for (const id of ['n1', 'n2']) { // they confirm their deletes of v1; n3 does not (it "was away")
      const node = nodes.find((n) => n.id === id)!
      const stale = await node.waitFor((m) => m.type === 'delete' && m.chunkId === chunk.chunkId)
      expect(stale).toEqual({type: 'delete', chunkId: chunk.chunkId, version: 1, reason: 'stale'})
      node.send({type: 'deleted', chunkId: chunk.chunkId, version: 1})
    }
    await until(async () => StatusDoc.parse((await api(master, 'GET', '/api/status')).body).summary.stale === 1, 5000, 'one stale left')
    // Forget what n3 was told so far, except a repair task: the 200 ms repair loop may already have sent
    // it the new version (n3 holds none of v2), and that task is not sent twice.
    n3.inbox.splice(0, n3.inbox.length, ...n3.inbox.filter((m) => m.type === 'replicate'))

    const old = manifest.chunks[0]!
    n3.send({type: 'report', reportId: 'r1', done: true, replicas: manifest.chunks.map((c) => ({chunkId: c.chunkId, version: c.version, size: c.size, sha256: c.sha256}))})
    const del = await n3.waitFor((m) => m.type === 'delete')
    expect(del).toEqual({type: 'delete', chunkId: old.chunkId, version: 1, reason: 'stale'})
    const status = StatusDoc.parse((await api(master, 'GET', '/api/status')).body)
    expect(status.summary.stale).toBe(1)
    n3.send({type: 'deleted', chunkId: old.chunkId, version: 1})
    // ... and the repair loop brings the new version to n3.
    const task = await n3.waitFor((m): m is Extract<MasterToNode, {type: 'replicate'}> => m.type === 'replicate' && m.replicas[0]?.version === 2)
    await n3.completeTransfer(task)
    await until(async () => {
      const s = StatusDoc.parse((await api(master, 'GET', '/api/status')).body)
      return s.summary.stale === 0 && s.summary.underReplicated === 0
    }, 5000, 'healed')
  })

  it('asks the node to verify a replica a reader reported bad, lists nodes, and removes a file', async () => {
    const manifest = FileManifest.parse((await api(master, 'GET', `/api/files/${encodeURIComponent('talks/keynote.mp4')}`)).body)
    const chunk = manifest.chunks[1]!
    const holder = nodes.find((n) => n.id === chunk.replicas[0]!.id)!
    const report = {chunkId: chunk.chunkId, version: chunk.version, node: holder.id, reason: 'sha256 mismatch'}
    expect(await api(master, 'POST', '/api/bad-replica', report)).toEqual({status: 200, body: {ok: true}})
    expect(await holder.waitFor((m) => m.type === 'verify')).toEqual({type: 'verify', chunkId: chunk.chunkId, version: chunk.version})
    holder.send({type: 'corrupt', chunkId: chunk.chunkId, version: chunk.version})
    expect(await holder.waitFor((m) => m.type === 'delete' && m.reason === 'corrupt')).toMatchObject({chunkId: chunk.chunkId})
    await until(async () => StatusDoc.parse((await api(master, 'GET', '/api/status')).body).summary.corrupt === 1, 5000, 'corrupt shown')

    const listed = (await api(master, 'GET', '/api/nodes')).body
    expect(listed.nodes.map((n: {id: string; state: string}) => `${n.id}:${n.state}`)).toEqual(['n1:alive', 'n2:alive', 'n3:alive'])

    const removed = await api(master, 'DELETE', `/api/files/${encodeURIComponent('talks/keynote.mp4')}`)
    expect(removed).toEqual({status: 200, body: {name: 'talks/keynote.mp4', removedChunks: 3}})
    await holder.waitFor((m) => m.type === 'delete' && m.reason === 'unreferenced')
    expect((await api(master, 'GET', `/api/files/${encodeURIComponent('talks/keynote.mp4')}`)).status).toBe(404)
    expect(StatusDoc.parse((await api(master, 'GET', '/api/status')).body).summary).toMatchObject({files: 0, chunks: 0, stale: 0, corrupt: 0})
  })

  it('survives garbage on a node link: closes that link with 1002, keeps serving', async () => {
    const rogue = await FakeNode.connect(master.url, TOKEN, 'rogue', {hello: false})
    rogue.sendRaw('{"type":"hello", this is not json')
    await until(() => rogue.closed, 5000, 'rogue closed')
    expect(rogue.closed!.code).toBe(WS_CLOSE.PROTOCOL_ERROR)

    const early = await FakeNode.connect(master.url, TOKEN, 'early', {hello: false})
    early.send({type: 'heartbeat', freeBytes: 1, usedBytes: 1, chunkCount: 1})
    await until(() => early.closed, 5000, 'early closed')
    expect(early.closed!.code).toBe(WS_CLOSE.BAD_HELLO)

    const wrongShape = await FakeNode.connect(master.url, TOKEN, 'shape', {hello: false})
    wrongShape.send({type: 'stored', reqId: -1, replica: {chunkId: 'zz'}})
    await until(() => wrongShape.closed, 5000, 'shape closed')
    expect(wrongShape.closed!.code).toBe(WS_CLOSE.PROTOCOL_ERROR)

    expect((await api(master, 'GET', '/healthz')).status).toBe(200)
    expect(lines.some((l) => l.startsWith('malformed message from'))).toBe(true)
  })

  it('plans and commits a batch of uploads in order, each on its own: a bad entry fails only itself', async () => {
    const wrongSize = {...planRequest('batch/bad.mp4', 100_000), size: 99}
    const planned = await api(master, 'POST', '/api/uploads/batch', {uploads: [planRequest('batch/a.mp4', 100_000, 'ba'), wrongSize, planRequest('batch/b.mp4', 10, 'bb')]})
    expect(planned.status).toBe(200)
    expect(planned.body.plans).toHaveLength(3)
    const [a, bad, b] = planned.body.plans
    expect(UploadPlan.parse(a).name).toBe('batch/a.mp4')
    expect(bad.error.code).toBe('BAD_REQUEST')
    expect(bad.error.message).toContain('chunks')
    expect(UploadPlan.parse(b).name).toBe('batch/b.mp4')

    // b gets its W = 2 copies, a does not: b commits, a is NOT_DURABLE, an unknown id is UPLOAD_NOT_FOUND.
    await reportStored(b.chunks)
    const committed = await api(master, 'POST', '/api/uploads/commit', {uploadIds: [a.uploadId, 'no-such-upload', b.uploadId]})
    expect(committed.status).toBe(200)
    const [ca, missing, cb] = committed.body.results
    expect(ca.error.code).toBe('NOT_DURABLE')
    expect(missing.error.code).toBe('UPLOAD_NOT_FOUND')
    expect(cb).toMatchObject({name: 'batch/b.mp4', size: 10, chunks: 1})
    expect(FileManifest.parse((await api(master, 'GET', `/api/files/${encodeURIComponent('batch/b.mp4')}`)).body).size).toBe(10)
    expect((await api(master, 'GET', `/api/files/${encodeURIComponent('batch/a.mp4')}`)).status).toBe(404)
    // a is still in progress: its copies arrive later and it commits then
    await reportStored(a.chunks)
    expect((await api(master, 'POST', '/api/uploads/commit', {uploadIds: [a.uploadId]})).body.results[0]).toMatchObject({name: 'batch/a.mp4', chunks: 2})
  })

  it('refuses an empty or oversized batch with 400, and a batch from a read-only credential with 403', async () => {
    const many = Array.from({length: 101}, (_, i) => planRequest(`batch/many-${i}`, 10))
    for (const [path, body] of [
      ['/api/uploads/batch', {uploads: []}],
      ['/api/uploads/batch', {uploads: many}],
      ['/api/uploads/commit', {uploadIds: []}],
      ['/api/uploads/commit', {uploadIds: Array.from({length: 101}, (_, i) => `u${i}`)}],
    ] as const) {
      const refused = await api(master, 'POST', path, body)
      expect(refused.status, `${path} with ${JSON.stringify(body).slice(0, 40)}`).toBe(400)
      expect(refused.body.error.code).toBe('BAD_REQUEST')
    }
    const readOnly = deriveCredential(TOKEN, 'ro')
    const rw = deriveCredential(TOKEN, 'rw')
    expect((await api(master, 'POST', '/api/uploads/batch', {uploads: [planRequest('batch/ro', 10)]}, readOnly)).status).toBe(403)
    expect((await api(master, 'POST', '/api/uploads/commit', {uploadIds: ['x']}, readOnly)).status).toBe(403)
    expect((await api(master, 'POST', '/api/uploads/batch', {uploads: [planRequest('batch/rw', 10)]}, rw)).status).toBe(200)
    expect((await api(master, 'POST', '/api/uploads/commit', {uploadIds: ['x']}, rw)).body.results[0].error.code).toBe('UPLOAD_NOT_FOUND')
  })

  it('removes many names in one request, in order, each on its own: a missing name fails only itself', async () => {
    const planned = await api(master, 'POST', '/api/uploads/batch', {uploads: [planRequest('gone/a.mp4', 10, 'ga'), planRequest('gone/b.mp4', 10, 'gb')]})
    const plans = planned.body.plans.map((plan: unknown) => UploadPlan.parse(plan))
    for (const plan of plans) await reportStored(plan.chunks)
    const committed = await api(master, 'POST', '/api/uploads/commit', {uploadIds: plans.map((plan: {uploadId: string}) => plan.uploadId)})
    expect(committed.body.results.map((r: {name?: string}) => r.name)).toEqual(['gone/a.mp4', 'gone/b.mp4'])
    const removed = await api(master, 'POST', '/api/files/remove', {names: ['gone/b.mp4', 'gone/never.mp4', 'gone/a.mp4']})
    expect(removed.status).toBe(200)
    expect(removed.body.results[0]).toEqual({name: 'gone/b.mp4', removedChunks: 1})
    expect(removed.body.results[1].error.code).toBe('FILE_NOT_FOUND')
    expect(removed.body.results[2]).toEqual({name: 'gone/a.mp4', removedChunks: 1})
    for (const name of ['gone/a.mp4', 'gone/b.mp4']) expect((await api(master, 'GET', `/api/files/${encodeURIComponent(name)}`)).status).toBe(404)
    expect((await api(master, 'POST', '/api/files/remove', {names: []})).status).toBe(400)
    expect((await api(master, 'POST', '/api/files/remove', {names: Array.from({length: 101}, (_, i) => `gone/x${i}`)})).status).toBe(400)
    expect((await api(master, 'POST', '/api/files/remove', {names: ['gone/a.mp4']}, deriveCredential(TOKEN, 'ro'))).status).toBe(403)
  })

  it('refuses a second node with the id of a connected one (4003), leaving the first alone', async () => {
    const old = nodes.find((n) => n.id === 'n1')!
    const impostor = await FakeNode.connect(master.url, TOKEN, 'n1', {zone: 'a', hello: false})
    impostor.send({type: 'hello', v: 1, nodeId: 'n1', url: 'http://127.0.0.1:9/impostor', zone: 'a', freeBytes: 1e12, usedBytes: 0, chunkCount: 0})
    await until(() => impostor.closed, 5000, 'impostor refused')
    expect(impostor.closed!.code).toBe(WS_CLOSE.DUPLICATE_ID)
    expect(impostor.closed!.reason).toMatch(/node id n1 is in use/)
    expect(old.closed).toBeUndefined()
    const status = StatusDoc.parse((await api(master, 'GET', '/api/status')).body)
    expect(status.nodes.find((n) => n.id === 'n1')).toMatchObject({url: 'http://127.0.0.1:9/n1', state: 'alive'})
  })

  it('replaces an older link of the same node with 4001 once that link has gone silent (a half-open link)', async () => {
    const old = nodes.find((n) => n.id === 'n1')!
    old.stopHeartbeats()
    old.ws.pause() // and it reads nothing: a link the network has silently dropped
    // The master's window is 3 of its heartbeat periods (node timeout 1s / 5 = 200 ms): 600 ms.
    const again = await until(async () => {
      const next = await FakeNode.connect(master.url, TOKEN, 'n1', {zone: 'a', hello: false})
      next.send({type: 'hello', v: 1, nodeId: 'n1', url: 'http://127.0.0.1:9/n1', zone: 'a', freeBytes: 1e12, usedBytes: 0, chunkCount: 0})
      const answer = await until(() => next.closed ?? next.inbox.find((m) => m.type === 'welcome'), 2000, 'welcome or refusal')
      return 'type' in answer ? next : undefined // refused while the old link was heard from lately: try again
    }, 5000, 'a new link accepted')
    again.startHeartbeats()
    old.ws.resume() // the network comes back: the old link reads the master's close
    await until(() => old.closed, 5000, 'old link closed')
    expect(old.closed!.code).toBe(WS_CLOSE.REPLACED)
    nodes[nodes.indexOf(old)] = again
  })

  it('declares a silent node dead after the timeout, and alive again on its next heartbeat', async () => {
    const n2 = nodes.find((n) => n.id === 'n2')!
    n2.stopHeartbeats()
    const started = Date.now()
    await until(async () => StatusDoc.parse((await api(master, 'GET', '/api/status')).body).nodes.find((n) => n.id === 'n2')!.state === 'dead', 5000, 'n2 dead')
    expect(Date.now() - started).toBeGreaterThanOrEqual(900)
    expect(lines).toContain('node n2 is dead (no heartbeat for 1s)')
    n2.send({type: 'heartbeat', freeBytes: 1e12, usedBytes: 0, chunkCount: 0})
    await until(() => lines.includes('node n2 is back'), 5000, 'n2 back')
  })
})
