import {randomBytes} from 'node:crypto'
import {connect, type Socket} from 'node:net'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {WebSocket} from 'ws'
import type {HttpLimits} from '../../src/http/limits.js'
import {HEADER_GRANT, MAX_WS_PAYLOAD, UploadPlan} from '../../src/protocol/index.js'
import {bearer, CREDS, filesUnder, send, sha256, startTestCluster, until, type TestCluster} from './helpers.js'

// Issue 5 limits: slow-loris heads and bodies, idle keep-alive sockets, connections per peer,
// oversized WebSocket messages. Short limits so the test runs in seconds.
const LIMITS: Partial<HttpLimits> = {
  headersTimeoutMs: 500,
  requestTimeoutMs: 4_000,
  keepAliveTimeoutMs: 300,
  checkIntervalMs: 100,
  maxConnectionsPerPeer: 30,
  minBodyBytesPerSec: 2048,
  rateWindowMs: 400,
}
let cluster: TestCluster

beforeAll(async () => {
  cluster = await startTestCluster({nodes: 1, replicas: 1, limits: LIMITS})
})
afterAll(async () => cluster?.close())

interface RawSocket {
  socket: Socket
  received: () => string
  closed: Promise<number>
}

/** A raw TCP connection; `closed` resolves with the ms it stayed open. */
function open(url: string): Promise<RawSocket> {
  const {hostname, port} = new URL(url)
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const socket = connect(Number(port), hostname)
    let received = ''
    socket.on('data', (d) => (received += d.toString()))
    socket.on('error', () => {})
    const closed = new Promise<number>((done) => socket.on('close', () => done(Date.now() - started)))
    socket.once('connect', () => resolve({socket, received: () => received, closed}))
    socket.once('error', reject)
  })
}

function trickle(socket: Socket, piece: string, everyMs: number): () => void {
  const timer = setInterval(() => (socket.writable ? socket.write(piece) : clearInterval(timer)), everyMs)
  return () => clearInterval(timer)
}

describe('slow and idle clients', () => {
  it('a slow-loris head (headers dribbled forever) is answered 408 and closed, on the node and the master', async () => {
    for (const url of [cluster.nodes[0]!.url, cluster.master.url]) {
      const sockets = await Promise.all(Array.from({length: 10}, () => open(url)))
      const stops = sockets.map(({socket}) => {
        socket.write('GET /healthz HTTP/1.1\r\nhost: x\r\n')
        return trickle(socket, 'x-a: b\r\n', 100)
      })
      const lifetimes = await Promise.all(sockets.map((s) => s.closed))
      stops.forEach((stop) => stop())
      expect(Math.max(...lifetimes)).toBeLessThan(5_000)
      expect(sockets.every((s) => s.received().startsWith('HTTP/1.1 408'))).toBe(true)
    }
    expect((await send(`${cluster.nodes[0]!.url}/healthz`, 'GET')).status).toBe(200)
  })

  it('a chunk body slower than the minimum rate is cut, and leaves no temp file behind', async () => {
    const bytes = randomBytes(64 * 1024)
    const planned = await send(`${cluster.master.url}/api/uploads`, 'POST', {...bearer(CREDS.rw), 'content-type': 'application/json'},
      JSON.stringify({name: 'slow.bin', size: bytes.length, chunkSize: 64 * 1024, chunks: [{index: 0, size: bytes.length, sha256: sha256(bytes)}]}))
    const chunk = UploadPlan.parse(planned.json).chunks[0]!
    const raw = await open(cluster.nodes[0]!.url)
    raw.socket.write(
      `PUT /chunks/${chunk.chunkId}/${chunk.version} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CREDS.rw}\r\n` +
        `${HEADER_GRANT}: ${chunk.grant}\r\ncontent-length: ${bytes.length}\r\n\r\n`,
    )
    raw.socket.write(bytes.subarray(0, 1000))
    const stop = trickle(raw.socket, 'x', 50) // 20 B/s
    const lifetime = await raw.closed
    stop()
    expect(lifetime).toBeLessThan(3_000)
    await until('the cut logged', () => cluster.log.some((l) => l.includes(`cut the write of chunk ${chunk.chunkId}`) && l.includes('request body too slow')))
    await until('no temp file left', async () => !(await filesUnder(cluster.dir)).some((f) => f.endsWith('.tmp')))
  })

  it('an idle keep-alive socket is closed', async () => {
    const raw = await open(cluster.nodes[0]!.url)
    raw.socket.write('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n')
    const lifetime = await raw.closed
    expect(raw.received()).toMatch(/^HTTP\/1.1 200/)
    expect(lifetime).toBeLessThan(4_000)
  })
})

describe('connections and messages', () => {
  it('connections beyond the per-peer limit are cut at once; the node serves again once they go', async () => {
    const url = cluster.nodes[0]!.url
    const sockets = await Promise.all(Array.from({length: 40}, () => open(url)))
    const cut = await until('the surplus cut', async () => {
      const states = await Promise.all(sockets.map((s) => Promise.race([s.closed.then(() => true), new Promise((r) => setTimeout(() => r(false), 20))])))
      const count = states.filter(Boolean).length
      return count >= 10 ? count : false
    })
    expect(cut).toBeGreaterThanOrEqual(10)
    for (const s of sockets) s.socket.destroy()
    await until('healthz again', async () => (await send(`${url}/healthz`, 'GET')).status === 200)
    expect(cluster.log.some((l) => l.includes('(the per-address limit)'))).toBe(true)
  })

  it('a WebSocket message over the limit closes the link with 1009; the master carries on', async () => {
    const ws = new WebSocket(`${cluster.master.url.replace(/^http/, 'ws')}/ws`, {headers: bearer(CREDS.node)})
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject))
    const code = new Promise<number>((resolve) => ws.once('close', (c) => resolve(c)))
    ws.on('error', () => {})
    ws.send(Buffer.alloc(MAX_WS_PAYLOAD + 1, 0x20))
    expect(await code).toBe(1009)
    expect((await send(`${cluster.master.url}/healthz`, 'GET')).status).toBe(200)
  })
})
