import {createHash, randomBytes} from 'node:crypto'
import {request} from 'node:http'
import {mkdtemp, open, readdir, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {getStatus} from '../../src/client/operations.js'
import {uploadFile} from '../../src/client/upload.js'
import {silentView} from '../../src/client/view.js'
import {startMaster, type RunningMaster} from '../../src/master/index.js'
import {startNode, type RunningNode} from '../../src/node/index.js'
import {deriveCredentials, encodeNamePath, ShareAnswer} from '../../src/protocol/index.js'
import {BLOCK_SIZE} from '../../src/storage/index.js'
import {silentLogger} from '../../src/util/log.js'
import {waitFor} from '../poll.js'
import {get, metric as nodeMetric} from './file-get.js'

// Issue 12, in one process with real servers: GET/HEAD {node}/v1/files/{name} and share links on a
// master and four nodes (R=2, 1 MiB chunks, so each node holds some chunks and n4 none at first).

const TOKEN = 'serve-files-' + randomBytes(6).toString('hex')
const {ro: RO} = deriveCredentials(TOKEN)
const MiB = 1024 * 1024
let dir: string
let master: RunningMaster
const nodes: RunningNode[] = []
let bytes: Buffer
const NAME = 'talks/2026/key note.mp4'

async function upload(name: string, data: Buffer): Promise<void> {
  const file = join(dir, `up-${randomBytes(4).toString('hex')}`)
  await writeFile(file, data)
  await uploadFile({path: file, name, chunkSize: MiB, master: master.url, token: TOKEN}, silentView)
}

const fileUrl = (node: RunningNode, name = NAME) => `${node.url}/v1/files/${encodeNamePath(name)}`
const auth = {authorization: `Bearer ${RO}`}

const metric = (node: RunningNode, name: string) => nodeMetric(node.url, auth, name)

async function share(body: object): Promise<{status: number; answer?: ShareAnswer; text: string}> {
  const payload = JSON.stringify(body)
  return new Promise((resolve, reject) => {
    const req = request(`${master.url}/api/share`, {method: 'POST', headers: {...auth, 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload)}}, (res) => {
      let text = ''
      res.on('data', (d: Buffer) => (text += d.toString()))
      res.on('end', () => resolve({status: res.statusCode!, answer: res.statusCode === 200 ? ShareAnswer.parse(JSON.parse(text)) : undefined, text}))
    })
    req.on('error', reject)
    req.end(payload)
  })
}

async function startOne(id: string): Promise<RunningNode> {
  const node = await startNode({
    masterUrl: master.url, host: '127.0.0.1', port: 0, id, zone: `zone-${id}`, dataDir: join(dir, id),
    heartbeatIntervalMs: 200, scrubIntervalMs: 0, token: TOKEN, log: silentLogger, corsOrigins: ['https://player.example'],
  })
  nodes.push(node)
  return node
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chunky-play-'))
  master = await startMaster({
    host: '127.0.0.1', port: 0, dataDir: join(dir, 'master'), replicas: 2, minReplicas: 2,
    nodeTimeoutMs: 3_000, repairIntervalMs: 300, token: TOKEN, log: silentLogger,
    rebalance: false, // n4 joins empty and must stay so
  })
  for (const id of ['n1', 'n2', 'n3']) await startOne(id)
  await waitFor('three nodes alive', async () => (await getStatus({master: master.url, token: TOKEN})).summary.aliveNodes === 3)
  bytes = randomBytes(5 * MiB + 12345)
  await upload(NAME, bytes)
  await startOne('n4') // joins after the upload: holds no chunk, reads every byte from the others
  await waitFor('four nodes alive', async () => (await getStatus({master: master.url, token: TOKEN})).summary.aliveNodes === 4)
}, 60_000)

afterAll(async () => {
  for (const node of nodes) await node.close()
  await master?.close()
  await rm(dir, {recursive: true, force: true})
})

describe('GET /v1/files/{name} on every node', () => {
  it('answers every range form byte for byte, on a node with some chunks and on one with none', async () => {
    const size = bytes.length
    const forms: [string, number, number][] = [
      ['bytes=0-0', 0, 1],
      ['bytes=0-99', 0, 100],
      [`bytes=${MiB - 10}-${MiB + 10}`, MiB - 10, MiB + 11], // across a chunk boundary
      [`bytes=${BLOCK_SIZE - 1}-${3 * MiB + 5}`, BLOCK_SIZE - 1, 3 * MiB + 6],
      [`bytes=${size - 100}-`, size - 100, size],
      ['bytes=4000000-', 4_000_000, size],
      ['bytes=-500', size - 500, size],
      [`bytes=-${size + 10}`, 0, size], // a suffix longer than the file is the whole file
      [`bytes=100-${size + 1000}`, 100, size], // an end past the file is cut to it
    ]
    for (const node of [nodes[0]!, nodes[3]!]) {
      for (const [range, start, end] of forms) {
        const answer = await get(fileUrl(node), {...auth, range})
        expect(answer.status, `${node.id} ${range}`).toBe(206)
        expect(answer.headers['content-range']).toBe(`bytes ${start}-${end - 1}/${size}`)
        expect(answer.headers['content-length']).toBe(String(end - start))
        expect(answer.body.equals(bytes.subarray(start, end)), `${node.id} ${range}`).toBe(true)
      }
      const whole = await get(fileUrl(node), auth)
      expect(whole.status).toBe(200)
      expect(whole.headers['accept-ranges']).toBe('bytes')
      expect(whole.headers['content-type']).toBe('video/mp4')
      expect(whole.headers['content-length']).toBe(String(size))
      expect(new Date(String(whole.headers['last-modified'])).getTime()).toBeGreaterThan(Date.now() - 120_000)
      expect(createHash('sha256').update(whole.body).digest('hex')).toBe(createHash('sha256').update(bytes).digest('hex'))
    }
    expect(await metric(nodes[3]!, 'chunky_file_peer_bytes_total')).toBeGreaterThan(size) // n4 had to ask the others
  })

  it('416 past the end, HEAD, unparseable and multiple ranges, an empty file', async () => {
    const size = bytes.length
    const past = await get(fileUrl(nodes[1]!), {...auth, range: `bytes=${size}-`})
    expect(past.status).toBe(416)
    expect(past.headers['content-range']).toBe(`bytes */${size}`)
    const head = await get(fileUrl(nodes[1]!), {...auth, range: 'bytes=10-19'}, 'HEAD')
    expect(head.status).toBe(206)
    expect(head.headers['content-length']).toBe('10')
    expect(head.body.length).toBe(0)
    const headWhole = await get(fileUrl(nodes[1]!), auth, 'HEAD')
    expect([headWhole.status, headWhole.headers['content-length']]).toEqual([200, String(size)])
    for (const range of ['bytes=abc', 'pages=1-2', 'bytes=5-2']) {
      const ignored = await get(fileUrl(nodes[1]!), {...auth, range})
      expect(ignored.status, range).toBe(200)
      expect(ignored.body.length).toBe(size)
    }
    const multi = await get(fileUrl(nodes[1]!), {...auth, range: 'bytes=0-9,100-109'})
    expect(multi.status).toBe(200) // several ranges: the whole file (README)
    expect(multi.body.equals(bytes)).toBe(true)

    await upload('empty.webm', Buffer.alloc(0))
    const empty = await get(fileUrl(nodes[0]!, 'empty.webm'), auth)
    expect([empty.status, empty.headers['content-length'], empty.headers['content-type'], empty.body.length]).toEqual([200, '0', 'video/webm', 0])
    const emptyRange = await get(fileUrl(nodes[0]!, 'empty.webm'), {...auth, range: 'bytes=0-'})
    expect([emptyRange.status, emptyRange.headers['content-range']]).toEqual([416, 'bytes */0'])
  })

  it('401 without a credential, 404 for a name never committed', async () => {
    const none = await get(fileUrl(nodes[0]!))
    expect(none.status).toBe(401)
    expect((await get(fileUrl(nodes[0]!), {authorization: 'Bearer ro-wrong'})).status).toBe(401)
    expect((await get(fileUrl(nodes[0]!, 'no/such.mp4'), auth)).status).toBe(404)
    expect(await metric(nodes[0]!, 'chunky_file_requests_total{status="401"}')).toBeGreaterThanOrEqual(2) // requests by status, refusals too
    expect(await metric(nodes[0]!, 'chunky_file_requests_total{status="404"}')).toBeGreaterThanOrEqual(1)
  })

  it('one strong ETag on every node; 304; a re-upload changes it, and If-Range with the old one gets the whole new file', async () => {
    const name = 'clips/replaced.mov'
    const first = randomBytes(2 * MiB + 7)
    await upload(name, first)
    const tags = await Promise.all(nodes.map(async (node) => (await get(fileUrl(node, name), auth, 'HEAD')).headers.etag))
    expect(tags[0]).toMatch(/^"[^"]+"$/)
    expect(new Set(tags).size).toBe(1)
    const oldTag = String(tags[0])
    const notModified = await get(fileUrl(nodes[2]!, name), {...auth, 'if-none-match': oldTag})
    expect([notModified.status, notModified.body.length, notModified.headers.etag]).toEqual([304, 0, oldTag])
    const ranged = await get(fileUrl(nodes[2]!, name), {...auth, range: 'bytes=5-9', 'if-range': oldTag})
    expect(ranged.status).toBe(206)

    const second = Buffer.from(first)
    second.fill(7, MiB + 5, MiB + 500) // one chunk changes
    await upload(name, second)
    const after = await waitFor('the new ETag', async () => {
      const answer = await get(fileUrl(nodes[2]!, name), {...auth, range: 'bytes=5-9', 'if-range': oldTag})
      return answer.headers.etag !== oldTag ? answer : undefined
    })
    expect(after.status).toBe(200) // If-Range with the old ETag: the whole current file
    expect(after.body.equals(second)).toBe(true)
    const fresh = await get(fileUrl(nodes[0]!, name), {...auth, 'if-none-match': oldTag})
    expect(fresh.status).toBe(200)
    expect(fresh.body.equals(second)).toBe(true)
  })

  it('CORS: a preflight from an allowed origin is answered without a credential; the headers a player reads are exposed', async () => {
    const preflight = await get(fileUrl(nodes[0]!), {origin: 'https://player.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'range, authorization'}, 'OPTIONS')
    expect(preflight.status).toBe(204)
    expect(preflight.headers['access-control-allow-origin']).toBe('https://player.example')
    expect(String(preflight.headers['access-control-allow-headers'])).toMatch(/Range/)
    expect(String(preflight.headers['access-control-allow-headers'])).toMatch(/Authorization/)
    const ranged = await get(fileUrl(nodes[0]!), {...auth, origin: 'https://player.example', range: 'bytes=0-9'})
    expect(ranged.headers['access-control-allow-origin']).toBe('https://player.example')
    for (const header of ['Content-Range', 'Content-Length', 'Accept-Ranges', 'ETag']) expect(String(ranged.headers['access-control-expose-headers'])).toContain(header)
    const stranger = await get(fileUrl(nodes[0]!), {origin: 'https://evil.example', 'access-control-request-method': 'GET'}, 'OPTIONS')
    expect(stranger.headers['access-control-allow-origin']).toBeUndefined()
  })
})

describe('share links', () => {
  it('play without a credential on every node, with a max-age no longer than the link has left', async () => {
    const signed = await share({name: NAME, expiresInMs: 3_600_000})
    expect(signed.status, signed.text).toBe(200)
    const {path, expiresAt} = signed.answer!
    expect(Math.abs(Date.parse(expiresAt) - Date.now() - 3_600_000)).toBeLessThan(5_000)
    for (const node of nodes) {
      const answer = await get(node.url + path, {range: 'bytes=1000-1999'})
      expect(answer.status, node.id).toBe(206)
      expect(answer.body.equals(bytes.subarray(1000, 2000))).toBe(true)
      const maxAge = Number(/max-age=(\d+)/.exec(String(answer.headers['cache-control']))?.[1])
      expect(String(answer.headers['cache-control'])).toMatch(/^private/)
      expect(maxAge).toBeGreaterThan(3500)
      expect(maxAge).toBeLessThanOrEqual(3600)
    }
  })

  it('refuses forged, altered, other-name and expired links with 403, and an uncommitted name at signing', async () => {
    const {path} = (await share({name: NAME, expiresInMs: 3_600_000})).answer!
    const [, , , token] = path.split('/')
    const [body, sig] = token!.split('.')
    const forgedSig = `${body}.${sig!.slice(0, -2)}${sig!.endsWith('AA') ? 'BB' : 'AA'}`
    expect((await get(nodes[0]!.url + path.replace(token!, forgedSig))).status).toBe(403)
    const otherBody = Buffer.from(JSON.stringify({n: NAME, exp: Math.floor(Date.now() / 1000) + 999_999})).toString('base64url')
    expect((await get(nodes[0]!.url + path.replace(token!, `${otherBody}.${sig}`))).status).toBe(403) // a longer expiry, same signature
    expect((await get(`${nodes[0]!.url}/v1/share/${token}/${encodeNamePath('clips/replaced.mov')}`)).status).toBe(403) // another name
    // a write grant is signed with the same key but can never pass for a share
    expect((await get(`${nodes[0]!.url}/v1/share/not-a-token/${encodeNamePath(NAME)}`)).status).toBe(403)

    const short = (await share({name: NAME, expiresInMs: 1_000})).answer!
    await sleep(Date.parse(short.expiresAt) - Date.now() + 50)
    const expired = await get(nodes[1]!.url + short.path)
    expect(expired.status).toBe(403)
    expect(expired.body.toString()).toMatch(/expired/)

    const missing = await share({name: 'never/uploaded.mp4', expiresInMs: 60_000})
    expect(missing.status).toBe(404)
  })

  it('a prefix link signs every name under it, so relative URLs in a playlist resolve', async () => {
    await upload('streams/show/index.m3u8', Buffer.from('#EXTM3U\nseg-0.ts\n'))
    const segment = randomBytes(300_000)
    await upload('streams/show/seg-0.ts', segment)
    const {path, name} = (await share({prefix: 'streams/show', expiresInMs: 60_000})).answer!
    expect(name).toBe('streams/show/')
    expect(path.endsWith('/streams/show/')).toBe(true)
    const playlist = await get(nodes[2]!.url + path + 'index.m3u8')
    expect([playlist.status, playlist.headers['content-type']]).toEqual([200, 'application/vnd.apple.mpegurl'])
    const relative = new URL('seg-0.ts', nodes[2]!.url + path + 'index.m3u8').toString()
    const seg = await get(relative)
    expect([seg.status, seg.headers['content-type']]).toEqual([200, 'video/mp2t'])
    expect(seg.body.equals(segment)).toBe(true)
    expect((await get(`${nodes[2]!.url}${path.replace('/streams/show/', '/streams/other/')}x.ts`)).status).toBe(403)
  })
})

describe('verified, unamplified reads', () => {
  it('a flipped byte in a stored chunk: the range over it is still right, the replica is reported and replaced', async () => {
    const status = await getStatus({master: master.url, token: TOKEN}, NAME)
    const chunk = status.files[0]!.chunks[2]!
    const holder = nodes.find((node) => chunk.replicas.some((r) => r.node === node.id && r.state === 'fresh'))!
    const sub = join(dir, holder.id, 'chunks', chunk.id.slice(0, 2))
    const fileName = (await readdir(sub)).find((f) => f === `${chunk.id}.${chunk.version}.${chunk.sha256}`)!
    const at = 3 * BLOCK_SIZE + 10 // block 3 of chunk 2
    const handle = await open(join(sub, fileName), 'r+')
    await handle.write(Buffer.from([bytes[2 * MiB + at]! ^ 0xff]), 0, 1, at)
    await handle.close()

    const start = 2 * MiB + 3 * BLOCK_SIZE
    const answer = await get(fileUrl(holder), {...auth, range: `bytes=${start}-${start + 2 * BLOCK_SIZE - 1}`})
    expect(answer.status).toBe(206)
    expect(answer.body.equals(bytes.subarray(start, start + 2 * BLOCK_SIZE))).toBe(true) // from the other replica
    expect(await metric(holder, 'chunky_block_checksum_failures_total')).toBeGreaterThanOrEqual(1)
    await waitFor('the rotten replica replaced', async () => {
      const now = (await getStatus({master: master.url, token: TOKEN}, NAME)).files[0]!.chunks[2]!
      const fresh = now.replicas.filter((r) => r.state === 'fresh')
      return fresh.length === 2 && !now.replicas.some((r) => r.state === 'corrupt') && !(await readdir(sub)).includes(fileName) ? true : undefined
    }, 20_000)
    const again = await get(fileUrl(holder), {...auth, range: `bytes=${start}-${start + 99}`})
    expect(again.body.equals(bytes.subarray(start, start + 100))).toBe(true)
  })

  it('a file replaced while a reader streams it: the reader gets the old bytes (all, or cut short), never a mix', async () => {
    const name = 'clips/swapped.mp4'
    const old = randomBytes(12 * MiB)
    await upload(name, old)
    const received: Buffer[] = []
    let paused: () => void = () => {}
    const pausedOnce = new Promise<void>((resolve) => (paused = resolve))
    let resume: (() => void) | undefined
    const ended = new Promise<void>((resolve) => {
      const req = request(fileUrl(nodes[3]!, name), {headers: auth}, (res) => {
        let got = 0
        res.on('data', (d: Buffer) => {
          received.push(d)
          got += d.length
          if (got >= 256 * 1024 && !resume) {
            res.pause()
            resume = () => res.resume()
            paused()
          }
        })
        res.on('end', resolve)
        res.on('error', () => resolve())
        res.on('close', resolve)
      })
      req.on('error', () => resolve())
      req.end()
    })
    await pausedOnce
    await upload(name, randomBytes(12 * MiB)) // every chunk changes; the old versions are deleted once it commits
    await sleep(500)
    resume!()
    await ended
    const body = Buffer.concat(received)
    expect(body.length).toBeGreaterThan(0)
    expect(body.equals(old.subarray(0, body.length)), `${body.length} bytes, not a prefix of the old file`).toBe(true)
  })

  it('a reader that closes the connection stops the disk reads: far fewer bytes read than the file', async () => {
    const name = 'big/abort.mp4'
    const big = randomBytes(24 * MiB)
    await upload(name, big)
    const status = await getStatus({master: master.url, token: TOKEN}, name)
    // the node holding the most chunks of it, so the reads are its own disk's
    const counts = nodes.map((node) => status.files[0]!.chunks.filter((c) => c.replicas.some((r) => r.node === node.id)).length)
    const node = nodes[counts.indexOf(Math.max(...counts))]!
    const before = await metric(node, 'chunky_file_disk_read_bytes_total')
    const abortedBefore = await metric(node, 'chunky_file_reads_aborted_total')
    let received = 0
    await new Promise<void>((resolve, reject) => {
      const req = request(fileUrl(node, name), {headers: auth}, (res) => {
        res.on('data', (d: Buffer) => {
          received += d.length
          if (received >= 256 * 1024) {
            req.destroy()
            resolve()
          }
        })
      })
      req.on('error', (err) => (received >= 256 * 1024 ? resolve() : reject(err)))
      req.end()
    })
    await waitFor('the abort noticed', async () => (await metric(node, 'chunky_file_reads_aborted_total')) > abortedBefore, 5_000)
    const read = (await metric(node, 'chunky_file_disk_read_bytes_total')) - before
    await sleep(300)
    expect((await metric(node, 'chunky_file_disk_read_bytes_total')) - before).toBe(read) // and nothing more afterwards
    // what the socket buffers held plus a read or two; 24 MiB had it read on
    expect(read).toBeLessThan(6 * MiB)
    console.log(`aborted read: ${received} bytes received, ${read} bytes read from disk of a ${big.length}-byte file`)
  })
})
