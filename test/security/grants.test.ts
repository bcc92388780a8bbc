import {randomBytes} from 'node:crypto'
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {downloadFile} from '../../src/client/download.js'
import {getStatus} from '../../src/client/operations.js'
import {silentView} from '../../src/client/view.js'
import {
  type GrantPayload,
  HEADER_GRANT,
  type PlannedChunk,
  signGrant,
  signTransferGrant,
  UploadPlan,
  verifyGrant,
} from '../../src/protocol/index.js'
import {bearer, CREDS, send, sha256, startTestCluster, until, type TestCluster} from './helpers.js'

// Issue 5: write grants forged, altered, expired or replayed are refused; repair transfers need a
// transfer grant. Rule for replays: the same bytes at a version already stored are a harmless
// re-send (allowed); a grant for a version below one the node holds, or was told is stale, is 409.
let cluster: TestCluster
const KiB = 1024
const SIZE = 50 * KiB

beforeAll(async () => {
  cluster = await startTestCluster({nodes: 3, nodeTimeoutMs: 1500})
})
afterAll(async () => cluster?.close())

const json = {'content-type': 'application/json'}

async function plan(name: string, bytes: Buffer): Promise<{uploadId: string; chunk: PlannedChunk}> {
  const reply = await send(
    `${cluster.master.url}/api/uploads`, 'POST', {...bearer(CREDS.rw), ...json},
    JSON.stringify({name, size: bytes.length, chunkSize: 64 * KiB, chunks: [{index: 0, size: bytes.length, sha256: sha256(bytes)}]}),
  )
  expect(reply.status).toBe(200)
  const parsed = UploadPlan.parse(reply.json)
  return {uploadId: parsed.uploadId, chunk: parsed.chunks[0]!}
}

function put(chunk: Pick<PlannedChunk, 'chunkId' | 'version'>, targetUrl: string, grant: string, bytes: Buffer, chain = '[]') {
  return send(`${targetUrl}/chunks/${chunk.chunkId}/${chunk.version}`, 'PUT', {
    ...bearer(CREDS.rw), [HEADER_GRANT]: grant, 'x-chunky-chain': chain, 'content-length': String(bytes.length),
  }, bytes)
}

/** Plans, writes down the full chain and commits one single-chunk file; returns the chunk as planned. */
async function uploadOnce(name: string, bytes: Buffer): Promise<PlannedChunk> {
  const {uploadId, chunk} = await plan(name, bytes)
  const written = await put(chunk, chunk.targets[0]!.url, chunk.grant, bytes, JSON.stringify(chunk.targets.slice(1)))
  expect(written.status).toBe(200)
  const commit = await send(`${cluster.master.url}/api/uploads/${uploadId}/commit`, 'POST', {...bearer(CREDS.rw), ...json}, '{}')
  expect(commit.status).toBe(200)
  return chunk
}

describe('write grants', () => {
  it('a forged grant (another key) is refused', async () => {
    const bytes = randomBytes(SIZE)
    const {chunk} = await plan('forged.bin', bytes)
    const payload = verifyGrant(chunk.grant, cluster.grantKey())
    const forged = signGrant(payload, randomBytes(32).toString('hex'))
    const reply = await put(chunk, chunk.targets[0]!.url, forged, bytes)
    expect(reply.status).toBe(403)
    expect(reply.error).toEqual({code: 'FORBIDDEN', message: 'write grant signature is invalid'})
  })

  it('an altered grant (payload changed, signature kept) is refused, and a write grant is no transfer grant', async () => {
    const bytes = randomBytes(SIZE)
    const {chunk} = await plan('altered.bin', bytes)
    const [body, sig] = chunk.grant.split('.')
    const payload = JSON.parse(Buffer.from(body!, 'base64url').toString()) as GrantPayload
    const altered = `${Buffer.from(JSON.stringify({...payload, size: payload.size + 1})).toString('base64url')}.${sig}`
    const reply = await put(chunk, chunk.targets[0]!.url, altered, Buffer.concat([bytes, Buffer.from('x')]))
    expect(reply.status).toBe(403)
    expect(reply.error!.message).toBe('write grant signature is invalid')

    const node = cluster.nodes.find((n) => n.id === chunk.targets[0]!.id)!
    const transfer = await send(`${node.url}/transfer`, 'POST', {...bearer(CREDS.node), ...json, [HEADER_GRANT]: chunk.grant},
      JSON.stringify({replicas: [{chunkId: chunk.chunkId, version: chunk.version}]}))
    expect(transfer.status).toBe(403)
    expect(transfer.error!.message).toBe('transfer grant signature is invalid')
  })

  it('an expired grant is refused', async () => {
    const bytes = randomBytes(SIZE)
    const {chunk} = await plan('expired.bin', bytes)
    const payload = verifyGrant(chunk.grant, cluster.grantKey())
    const expired = signGrant({...payload, exp: Date.now() - 1000}, cluster.grantKey())
    const reply = await put(chunk, chunk.targets[0]!.url, expired, bytes)
    expect(reply.status).toBe(403)
    expect(reply.error!.message).toBe('write grant has expired: ask the master for a new plan')
  })

  it('a rw client cannot write a version the master did not plan', async () => {
    const bytes = randomBytes(SIZE)
    const {chunk} = await plan('unplanned.bin', bytes)
    const reply = await put({chunkId: chunk.chunkId, version: chunk.version + 1}, chunk.targets[0]!.url, chunk.grant, bytes)
    expect(reply.status).toBe(403)
    expect(reply.error!.message).toBe(`the grant is for chunk ${chunk.chunkId} v${chunk.version}, not ${chunk.chunkId} v${chunk.version + 1}`)
  })

  it('a grant replayed after its chunk moved to a higher version is refused; the same version again is a harmless re-send', async () => {
    const v1Bytes = randomBytes(SIZE)
    const v1 = await uploadOnce('replay.bin', v1Bytes)
    const v2Bytes = randomBytes(SIZE)
    const v2 = await uploadOnce('replay.bin', v2Bytes)
    expect(v2.chunkId).toBe(v1.chunkId)
    expect(v2.version).toBeGreaterThan(v1.version)
    // the old version is deleted everywhere once v2 is committed
    await until('v1 deleted', async () => {
      const status = await getStatus({master: cluster.master.url, token: CREDS.ro}, 'replay.bin')
      return status.files[0]!.chunks[0]!.replicas.every((r) => r.version === v2.version)
    })

    for (const target of v1.targets) {
      const replay = await put(v1, target.url, v1.grant, v1Bytes)
      expect(replay.status, `replay at ${target.id}`).toBe(409)
      expect(replay.error).toEqual({
        code: 'VERSION_CONFLICT',
        message: `chunk ${v1.chunkId} v${v1.version} is superseded here (v${v2.version} or newer exists): this grant is stale, ask the master for a new plan`,
      })
    }
    const again = await put(v2, v2.targets[0]!.url, v2.grant, v2Bytes)
    expect(again.status).toBe(200)

    const out = join(cluster.dir, 'replay.out')
    await downloadFile({name: 'replay.bin', output: out, master: cluster.master.url, token: CREDS.ro}, silentView)
    expect((await readFile(out)).equals(v2Bytes)).toBe(true)
  })

  it('the master is the last judge: a node that never saw the newer version stores a replay, the master refuses and deletes it', async () => {
    const v1Bytes = randomBytes(SIZE)
    const v1 = await uploadOnce('late.bin', v1Bytes)
    await uploadOnce('late.bin', randomBytes(SIZE))
    const fresh = await cluster.addNode('n-late')
    await until('the new node alive', async () => (await getStatus({master: cluster.master.url, token: CREDS.ro})).nodes.some((n) => n.id === fresh.id && n.state === 'alive'))
    // forge a grant naming the new node, as if the old grant had named it: only the master's key can
    const payload = verifyGrant(v1.grant, cluster.grantKey())
    const replayed = signGrant({...payload, nodes: [fresh.id]}, cluster.grantKey())
    const reply = await put(v1, fresh.url, replayed, v1Bytes)
    expect(reply.status).toBe(200)
    expect(reply.json).toMatchObject({stored: [], failed: [{node: fresh.id, error: expect.stringContaining('older than the committed version')}]})
    await until('the stale copy deleted', async () => {
      const status = await getStatus({master: cluster.master.url, token: CREDS.ro}, 'late.bin')
      return !status.files[0]!.chunks[0]!.replicas.some((r) => r.node === fresh.id && r.version === v1.version) &&
        cluster.log.some((l) => l.includes(`deleted chunk ${v1.chunkId} v${v1.version} (stale)`))
    })
    // and now this node refuses the replay outright
    expect((await put(v1, fresh.url, replayed, v1Bytes)).status).toBe(409)
  })
})

describe('repair transfers', () => {
  it('are served only for a transfer grant naming this node as source and covering every replica', async () => {
    const bytes = randomBytes(SIZE)
    const chunk = await uploadOnce('transfer.bin', bytes)
    const source = cluster.nodes.find((n) => n.id === chunk.targets[0]!.id)!
    const replicas = [{chunkId: chunk.chunkId, version: chunk.version}]
    const grant = (over: object = {}) =>
      signTransferGrant({kind: 'transfer', source: source.id, target: 'n9', replicas, exp: Date.now() + 60_000, ...over}, cluster.grantKey())
    const post = (g: string, body = {replicas}) =>
      send(`${source.url}/transfer`, 'POST', {...bearer(CREDS.node), ...json, [HEADER_GRANT]: g}, JSON.stringify(body))

    const ok = await post(grant())
    expect(ok.status).toBe(200)
    expect(ok.body.includes(bytes.subarray(0, 1024))).toBe(true) // the tar carries the bytes
    expect((await post(grant({source: 'n-other'}))).error!.message).toBe(`the transfer grant is for source n-other, not this node (${source.id})`)
    const wider = await post(grant(), {replicas: [...replicas, {chunkId: 'b'.repeat(24), version: 1}]})
    expect(wider.status).toBe(403)
    expect(wider.error!.message).toBe(`the transfer grant does not cover chunk ${'b'.repeat(24)} v1`)
    expect((await post(grant({exp: Date.now() - 1}))).error!.message).toBe('transfer grant has expired: ask the master for a new plan')
    expect((await post(signTransferGrant({kind: 'transfer', source: source.id, target: 'x', replicas, exp: Date.now() + 60_000}, 'ab'.repeat(32)))).status).toBe(403)
  })

  it('work end to end with node credentials: a lost node is replaced by copying from a fresh replica', async () => {
    const bytes = randomBytes(SIZE)
    const chunk = await uploadOnce('heal.bin', bytes)
    const victim = cluster.nodes.find((n) => n.id === chunk.targets[0]!.id)!
    await victim.close()
    cluster.nodes.splice(cluster.nodes.indexOf(victim), 1)
    // the master marks it dead after its node timeout, then pulls a copy to another node with a transfer grant
    await until('three fresh replicas again, without the victim', async () => {
      const status = await getStatus({master: cluster.master.url, token: CREDS.ro}, 'heal.bin')
      const fresh = status.files[0]!.chunks[0]!.replicas.filter((r) => r.state === 'fresh' && r.node !== victim.id)
      return fresh.length >= 3
    }, 30_000)
    expect(cluster.log.some((l) => /replication \S+ from \S+: [1-9]\d* copied, 0 failed/.test(l))).toBe(true)
  })
})
