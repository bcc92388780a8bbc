import {randomBytes} from 'node:crypto'
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {WebSocket} from 'ws'
import {downloadFile} from '../../src/client/download.js'
import {getStatus, removeFile} from '../../src/client/operations.js'
import {uploadFile} from '../../src/client/upload.js'
import {silentView} from '../../src/client/view.js'
import {startNode} from '../../src/node/index.js'
import {HEADER_GRANT, MAX_JSON_BODY, UploadPlan, deriveCredentials} from '../../src/protocol/index.js'
import {bearer, CREDS, SECRET, send, sha256, startTestCluster, until, type TestCluster} from './helpers.js'
import {messageLogger} from '../../src/util/log.js'

// Issue 5: credential kinds and every refusal path (401, 403, 413, 422, 400), each with its message.
let cluster: TestCluster
const KiB = 1024
let fileBytes: Buffer

beforeAll(async () => {
  cluster = await startTestCluster({nodes: 3})
  fileBytes = randomBytes(200 * KiB + 7)
  const path = join(cluster.dir, 'clip.bin')
  await writeFile(path, fileBytes)
  // rw is enough to upload; the nodes pass the chunk down the chain with their node credential
  await uploadFile({path, name: 'talks/clip.bin', chunkSize: 64 * KiB, master: cluster.master.url, token: CREDS.rw}, silentView)
})
afterAll(async () => cluster?.close())

function wsStatus(url: string, token?: string): Promise<{status: number; body: string}> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace(/^http/, 'ws') + '/ws', {headers: token ? bearer(token) : {}})
    ws.on('unexpected-response', (req, res) => {
      let body = ''
      res.on('data', (p: Buffer) => (body += p.toString()))
      res.on('end', () => {
        req.destroy()
        resolve({status: res.statusCode ?? 0, body})
      })
    })
    ws.on('open', () => {
      ws.close()
      resolve({status: 101, body: ''})
    })
    ws.on('error', (err) => (err.message.includes('Unexpected server response') ? undefined : reject(err)))
  })
}

describe('credentials derived from the cluster secret', () => {
  it('are prefixed by kind and differ from the secret and from each other', () => {
    expect(CREDS.node).toMatch(/^node-[0-9a-f]{64}$/)
    expect(CREDS.rw).toMatch(/^rw-[0-9a-f]{64}$/)
    expect(CREDS.ro).toMatch(/^ro-[0-9a-f]{64}$/)
    expect(new Set([SECRET, CREDS.node, CREDS.rw, CREDS.ro]).size).toBe(4)
    expect(deriveCredentials(SECRET)).toEqual(CREDS) // derived, so nothing new is stored
    expect(deriveCredentials(SECRET + 'x').rw).not.toBe(CREDS.rw)
  })
})

describe('the master refuses', () => {
  it('401 without a credential, and with a wrong one, saying which', async () => {
    const none = await send(`${cluster.master.url}/api/status`, 'GET')
    expect(none.status).toBe(401)
    expect(none.error).toMatchObject({code: 'UNAUTHORIZED'})
    expect(none.error!.message).toMatch(/^missing credential: pass --token or set CHUNKY_TOKEN/)
    const wrong = await send(`${cluster.master.url}/api/status`, 'GET', bearer('not-the-token'))
    expect(wrong.status).toBe(401)
    expect(wrong.error!.message).toMatch(/^wrong credential: check --token or CHUNKY_TOKEN/)
    const rotated = await send(`${cluster.master.url}/api/status`, 'GET', bearer(deriveCredentials('old secret').rw))
    expect(rotated.status).toBe(401)
    expect(rotated.error!.message).toMatch(/rw- credential is not one of this cluster's \(was the cluster secret rotated\?\)/)
    // unknown routes too: a stranger learns nothing about what exists
    expect((await send(`${cluster.master.url}/nothing-here`, 'GET')).status).toBe(401)
  })

  it('403 for a read-only credential on anything that writes', async () => {
    const plan = await send(`${cluster.master.url}/api/uploads`, 'POST', {...bearer(CREDS.ro), 'content-type': 'application/json'}, '{}')
    expect(plan.status).toBe(403)
    expect(plan.error).toEqual({
      code: 'FORBIDDEN',
      message: 'this is a read-only credential (ro-…): uploading and removing need the read-write credential (rw-…) that `chunky master` prints',
    })
    const remove = await send(`${cluster.master.url}/api/files/${encodeURIComponent('talks/clip.bin')}`, 'DELETE', bearer(CREDS.ro))
    expect(remove.status).toBe(403)
    await expect(removeFile({master: cluster.master.url, token: CREDS.ro}, 'talks/clip.bin')).rejects.toMatchObject({code: 'FORBIDDEN'})
  })

  it('403 for a node credential on the client API', async () => {
    const status = await send(`${cluster.master.url}/api/status`, 'GET', bearer(CREDS.node))
    expect(status.status).toBe(403)
    expect(status.error!.message).toMatch(/^this is a node credential \(node-…\): clients use the read-write \(rw-…\) or read-only \(ro-…\) credential/)
  })

  it('lets ro read (status, ls, manifest) and rw, the secret do everything a client does', async () => {
    for (const token of [CREDS.ro, CREDS.rw, SECRET]) {
      expect((await send(`${cluster.master.url}/api/status`, 'GET', bearer(token))).status).toBe(200)
      expect((await send(`${cluster.master.url}/api/files`, 'GET', bearer(token))).status).toBe(200)
      expect((await send(`${cluster.master.url}/api/files/${encodeURIComponent('talks/clip.bin')}`, 'GET', bearer(token))).status).toBe(200)
    }
  })

  it('a node link: 401 without or with a wrong credential, 403 with a client one, 101 with the node credential', async () => {
    expect((await wsStatus(cluster.master.url)).status).toBe(401)
    expect((await wsStatus(cluster.master.url, 'wrong')).status).toBe(401)
    const rw = await wsStatus(cluster.master.url, CREDS.rw)
    expect(rw.status).toBe(403)
    expect(JSON.parse(rw.body).error.message).toMatch(/^this is a client credential \(rw-…\): nodes join with the node credential \(node-…\)/)
    expect((await wsStatus(cluster.master.url, CREDS.ro)).status).toBe(403)
    expect((await wsStatus(cluster.master.url, CREDS.node)).status).toBe(101)
    expect((await wsStatus(cluster.master.url, SECRET)).status).toBe(101)
  })

  it('a node with a wrong credential never appears in status, and says why in its log', async () => {
    const lines: string[] = []
    const intruder = await startNode({
      masterUrl: cluster.master.url, host: '127.0.0.1', port: 0, id: 'intruder', zone: '', dataDir: join(cluster.dir, 'intruder'),
      heartbeatIntervalMs: 100, scrubIntervalMs: 0, token: deriveCredentials('another cluster').node, log: messageLogger((l) => void lines.push(l)),
    })
    try {
      await until('the intruder to be refused', () => lines.some((l) => l.includes("the master refused this node's link (HTTP 401")))
      const status = await getStatus({master: cluster.master.url, token: CREDS.ro})
      expect(status.nodes.map((n) => n.id)).not.toContain('intruder')
      expect(cluster.log.some((l) => l.includes('refused a node link'))).toBe(true)
    } finally {
      await intruder.close()
    }
  })

  it('413 for a JSON body over the limit, 400 for bad JSON and bad names', async () => {
    const big = await send(`${cluster.master.url}/api/uploads`, 'POST', {...bearer(CREDS.rw), 'content-type': 'application/json'}, Buffer.alloc(MAX_JSON_BODY + 1, 32))
    expect(big.status).toBe(413)
    expect(big.error).toEqual({code: 'BODY_TOO_LARGE', message: `JSON bodies are at most ${MAX_JSON_BODY} bytes`})
    const notJson = await send(`${cluster.master.url}/api/uploads`, 'POST', {...bearer(CREDS.rw), 'content-type': 'application/json'}, '{"name": ')
    expect(notJson.status).toBe(400)
    expect(notJson.error).toEqual({code: 'BAD_REQUEST', message: 'body is not JSON'})
    const badName = await send(`${cluster.master.url}/api/files/${encodeURIComponent('a/../../etc/passwd')}`, 'GET', bearer(CREDS.ro))
    expect(badName.status).toBe(400)
    expect(badName.error).toEqual({code: 'BAD_NAME', message: 'a file name must not contain "." or ".." segments'})
    const badPlan = await send(
      `${cluster.master.url}/api/uploads`, 'POST', {...bearer(CREDS.rw), 'content-type': 'application/json'},
      JSON.stringify({name: 'x\u0000y', size: 1, chunkSize: 65536, chunks: [{index: 0, size: 1, sha256: 'a'.repeat(64)}]}),
    )
    expect(badPlan.status).toBe(400)
    expect(badPlan.error!.message).toContain('a file name must not contain control characters')
  })

  it('431 for oversized headers', async () => {
    const huge = await send(`${cluster.master.url}/api/status`, 'GET', {...bearer(CREDS.ro), 'x-junk': 'a'.repeat(20 * KiB)})
    expect(huge.status).toBe(431)
    expect(huge.error).toEqual({code: 'HEADERS_TOO_LARGE', message: 'request headers are too large'})
  })
})

describe('a node checks client credentials itself (hashes from the master)', () => {
  async function aReplica(): Promise<{url: string; chunkId: string; version: number}> {
    const status = await getStatus({master: cluster.master.url, token: CREDS.ro}, 'talks/clip.bin')
    const chunk = status.files[0]!.chunks[0]!
    const node = cluster.nodes.find((n) => n.id === chunk.replicas[0]!.node)!
    return {url: `${node.url}/chunks/${chunk.id}/${chunk.version}`, chunkId: chunk.id, version: chunk.version}
  }

  it('downloads with ro; refuses a missing or wrong credential with 401 and a node credential with 403', async () => {
    const {url} = await aReplica()
    expect((await send(url, 'GET', bearer(CREDS.ro))).status).toBe(200)
    const none = await send(url, 'GET')
    expect(none.status).toBe(401)
    expect(none.error!.message).toMatch(/^missing credential/)
    expect((await send(url, 'GET', bearer('nope'))).status).toBe(401)
    expect((await send(url, 'GET', bearer(CREDS.node))).status).toBe(403)
    const out = join(cluster.dir, 'clip.copy')
    await downloadFile({name: 'talks/clip.bin', output: out, master: cluster.master.url, token: CREDS.ro}, silentView)
    expect((await readFile(out)).equals(fileBytes)).toBe(true)
  })

  it('refuses a chunk write with ro (403), and a transfer with a client credential (403) or without a grant (403)', async () => {
    const {url} = await aReplica()
    const put = await send(url, 'PUT', {...bearer(CREDS.ro), 'content-length': '1'}, 'x')
    expect(put.status).toBe(403)
    expect(put.error!.message).toMatch(/read-only credential/)
    const node = cluster.nodes[0]!
    const body = JSON.stringify({replicas: [{chunkId: 'a'.repeat(24), version: 1}]})
    const byClient = await send(`${node.url}/transfer`, 'POST', {...bearer(CREDS.rw), 'content-type': 'application/json'}, body)
    expect(byClient.status).toBe(403)
    expect(byClient.error!.message).toMatch(/^this is a client credential \(rw-…\)/)
    const noGrant = await send(`${node.url}/transfer`, 'POST', {...bearer(CREDS.node), 'content-type': 'application/json'}, body)
    expect(noGrant.status).toBe(403)
    expect(noGrant.error!.message).toBe("a transfer needs the master's transfer grant in x-chunky-grant")
  })

  it('422 for bytes that are not the planned chunk, and for a length that is not its size; 413 for more', async () => {
    const bytes = randomBytes(70 * KiB)
    const planned = await send(
      `${cluster.master.url}/api/uploads`, 'POST', {...bearer(CREDS.rw), 'content-type': 'application/json'},
      JSON.stringify({name: 'refusals.bin', size: bytes.length, chunkSize: 128 * KiB, chunks: [{index: 0, size: bytes.length, sha256: sha256(bytes)}]}),
    )
    expect(planned.status).toBe(200)
    const chunk = UploadPlan.parse(planned.json).chunks[0]!
    const url = `${chunk.targets[0]!.url}/chunks/${chunk.chunkId}/${chunk.version}`
    const headers = {...bearer(CREDS.rw), [HEADER_GRANT]: chunk.grant}
    const other = Buffer.from(bytes)
    other[5]! ^= 1
    const wrongBytes = await send(url, 'PUT', {...headers, 'content-length': String(other.length)}, other)
    expect(wrongBytes.status).toBe(422)
    expect(wrongBytes.error!.code).toBe('CHECKSUM_MISMATCH')
    const short = await send(url, 'PUT', {...headers, 'content-length': '10'}, bytes.subarray(0, 10))
    expect(short.status).toBe(422)
    expect(short.error).toEqual({code: 'LENGTH_MISMATCH', message: `this chunk is ${bytes.length} bytes, not 10`})
    const long = await send(url, 'PUT', {...headers, 'content-length': String(bytes.length + 1)}, Buffer.concat([bytes, Buffer.from('x')]))
    expect(long.status).toBe(413)
    expect(long.error!.code).toBe('CHUNK_TOO_LARGE')
    const badPath = await send(`${chunk.targets[0]!.url}/chunks/..%2F..%2Fetc/1`, 'GET', bearer(CREDS.ro))
    expect(badPath.status).toBe(400)
    expect(badPath.error!.message).toBe('expected /chunks/<24 hex chunk id>/<version>')
  })
})
