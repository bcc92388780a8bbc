import {randomBytes, randomInt} from 'node:crypto'
import {Agent, request} from 'node:http'
import {connect, type Socket} from 'node:net'
import {readdir, readFile, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {WebSocket} from 'ws'
import {downloadFile} from '../../src/client/download.js'
import {uploadFile} from '../../src/client/upload.js'
import {silentView} from '../../src/client/view.js'
import {deriveCredentials, HEADER_CHAIN, HEADER_GRANT, PROTOCOL_VERSION, UploadPlan, type PlannedChunk} from '../../src/protocol/index.js'
import {killAll, ROOT, startDaemon, tempDir, waitFor, type Daemon} from '../e2e/harness.js'
import {hex, HOSTILE_NAMES, MARKER, mutateBytes, mutateGrant, mutateJson, rng, type Rng} from './fuzz-corpus.js'

// Issue 5 fuzzing: at least 10,000 random and mutated requests and messages at a running master and
// three nodes (real processes on 127.0.0.1), then: every process still up, memory settled, no file
// outside the data directories, every committed file still downloads byte-identical.
const SEED = Number(process.env.FUZZ_SEED ?? randomInt(2 ** 31))
const SECRET = 'fuzz-secret-' + randomBytes(6).toString('hex')
const CREDS = deriveCredentials(SECRET)
const ROUNDS = 5
const PER_ROUND = 1_000 // requests and WebSocket links; with each link's several messages, well over 10,000 in all

let dir: {path: string; remove: () => Promise<void>}
let master: Daemon
const nodes: Daemon[] = []
const kept: Array<{name: string; bytes: Buffer}> = []
let replay: {old: PlannedChunk; oldBytes: Buffer; current: PlannedChunk; currentBytes: Buffer}
const agent = new Agent({keepAlive: true, maxSockets: 24})

function token(r: Rng): Record<string, string> {
  const auth = r.pick(['none', 'wrong', 'ro', 'rw', 'rw', 'node', 'admin', 'empty', 'long'] as const)
  const value = {none: undefined, wrong: 'Bearer wrong', ro: `Bearer ${CREDS.ro}`, rw: `Bearer ${CREDS.rw}`, node: `Bearer ${CREDS.node}`,
    admin: `Bearer ${SECRET}`, empty: 'Bearer ', long: `Bearer ${'x'.repeat(8000)}`}[auth]
  return value ? {authorization: value} : {}
}

interface Outcome {
  status: number // 0: no answer (connection cut)
}
const statuses = new Map<number, number>()
const fiveHundreds: string[] = []

/** One HTTP request; resolves with the status (0 when the server cut the connection, which is allowed). */
function http(url: string, method: string, headers: Record<string, string>, body?: Buffer): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = request(url, {method, headers, agent, timeout: 10_000}, (res) => {
      res.resume()
      res.on('end', () => resolve({status: res.statusCode ?? 0}))
      res.on('error', () => resolve({status: res.statusCode ?? 0}))
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve({status: 0}))
    req.end(body)
  }).then((outcome) => {
    const o = outcome as Outcome
    statuses.set(o.status, (statuses.get(o.status) ?? 0) + 1)
    if (o.status >= 500 && o.status !== 503) fiveHundreds.push(`${method} ${url.slice(0, 120)} -> ${o.status}`)
    return o
  })
}

/** Raw bytes on a fresh connection; waits for the server to answer or close (at most 2 s). */
function raw(url: string, bytes: Buffer, cutAfterMs?: number): Promise<void> {
  const {hostname, port} = new URL(url)
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname)
    const done = () => {
      clearTimeout(timer)
      socket.destroy()
      resolve()
    }
    const timer = setTimeout(done, cutAfterMs ?? 1_000)
    socket.on('error', done)
    socket.on('close', done)
    socket.on('data', () => (cutAfterMs === undefined ? done() : undefined))
    socket.on('connect', () => socket.write(bytes))
  })
}

const planBody = (name: string, size = 1000) => JSON.stringify({name, size, chunkSize: 65536, chunks: [{index: 0, size, sha256: 'a'.repeat(64)}]})

/** Percent-encodes a name; a lone surrogate (not encodable) goes as the raw bytes a hostile client would send. */
function encodeName(name: string): string {
  try {
    return encodeURIComponent(name)
  } catch {
    return `%ED%A0%80${MARKER}`
  }
}

/** One random request at the master or a node, or one WebSocket link with several messages (then true). */
async function fuzzOne(r: Rng): Promise<boolean | void> {
  const node = r.pick(nodes)
  switch (r.int(10)) {
    case 0:
    case 1: {
      // the master's HTTP API: random route, method, credential, mutated body
      const name = encodeName(r.pick(HOSTILE_NAMES))
      const path = r.pick([
        '/api/status', `/api/status?name=${name}`, `/api/files/${name}`, '/api/files', '/api/nodes', '/api/uploads',
        `/api/uploads/${hex(r, 16)}/commit`, `/api/uploads/${hex(r, 16)}/replan`, '/api/bad-replica', '/ws', `/${name}`, '/%zz', `/api/${'x/'.repeat(500)}`,
      ])
      const method = r.pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'])
      const template = r.pick([planBody(`fuzz/${hex(r, 8)}`), JSON.stringify({index: 0, exclude: ['n1']}), JSON.stringify({chunkId: hex(r, 24), version: 1, node: 'n1', reason: 'x'}), '{}'])
      const body = method === 'GET' || method === 'DELETE' ? undefined : mutateBytes(r, template)
      await http(master.url + path, method, {...token(r), 'content-type': 'application/json'}, body)
      return
    }
    case 2:
    case 3: {
      // chunk writes: mutated grants, wrong lengths, wrong bytes, garbage chains, replays
      const {old, oldBytes, current, currentBytes} = replay
      const kind = r.int(6)
      const chunk = kind === 0 ? old : current
      const bytes = kind === 0 ? oldBytes : currentBytes
      const target = chunk.targets.find((t) => t.url === node.url) ? node.url : chunk.targets[0]!.url
      const grant = kind === 1 ? mutateGrant(r, chunk.grant) : chunk.grant
      const body = kind === 2 ? bytes.subarray(0, r.int(bytes.length)) : kind === 3 ? randomBytes(bytes.length) : bytes
      const chain = kind === 4 ? mutateBytes(r, JSON.stringify(chunk.targets.slice(1))).toString('latin1').replace(/[^\x20-\x7e]/g, '') : '[]'
      const outcome = await http(`${target}/chunks/${chunk.chunkId}/${chunk.version}`, 'PUT', {
        ...token(r), [HEADER_GRANT]: grant, [HEADER_CHAIN]: chain, 'content-length': String(body.length),
      }, body)
      if (kind === 0 && outcome.status === 200) replayAccepted++
      return
    }
    case 4: {
      // chunk reads and transfers with hostile ids
      const id = r.pick([hex(r, 24), '..%2F..%2Fetc%2Fpasswd', `${MARKER}`, hex(r, 23), 'A'.repeat(24), replay.current.chunkId])
      const version = r.pick(['1', '0', '-1', '99999999999999999999', 'x', String(replay.current.version)])
      if (r.chance(0.5)) await http(`${node.url}/chunks/${id}/${version}`, r.pick(['GET', 'PUT', 'DELETE']), token(r))
      else {
        const body = mutateBytes(r, JSON.stringify({replicas: [{chunkId: replay.current.chunkId, version: replay.current.version}]}))
        await http(`${node.url}/transfer`, 'POST', {...token(r), [HEADER_GRANT]: mutateGrant(r, replay.current.grant)}, body)
      }
      return
    }
    case 5: {
      // truncated bodies: the head promises more than the socket sends, then it goes away
      const {current, currentBytes} = replay
      const head = `PUT /chunks/${current.chunkId}/${current.version} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${CREDS.rw}\r\n` +
        `${HEADER_GRANT}: ${current.grant}\r\ncontent-length: ${currentBytes.length}\r\n\r\n`
      await raw(current.targets[0]!.url, Buffer.concat([Buffer.from(head), currentBytes.subarray(0, r.int(currentBytes.length))]), 30)
      return
    }
    case 6: {
      // broken HTTP: garbage, oversized heads, bad request lines, smuggling attempts
      const url = r.chance(0.5) ? master.url : node.url
      const bytes = r.pick([
        () => randomBytes(r.int(4000)),
        () => Buffer.from(`GET /api/status HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000 + r.int(40_000))}\r\n\r\n`),
        () => Buffer.from(`${'A'.repeat(r.int(9000))} / HTTP/1.1\r\n\r\n`),
        () => Buffer.from('POST /api/uploads HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n'),
        () => Buffer.from('GET /healthz HTTP/1.1\r\nhost: x\r\ncontent-length: -1\r\n\r\n'),
        () => Buffer.from('GET /healthz HTTP/9.9\r\n\r\n'),
        () => Buffer.from(`GET /healthz HTTP/1.1\r\n${'h: v\r\n'.repeat(3000)}\r\n`),
      ])()
      await raw(url, bytes)
      return
    }
    default: {
      // the master's WebSocket: a hello, then mutated messages, binary frames, garbage, sometimes an oversized one
      await fuzzLink(r)
      return true
    }
  }
}

let wsMessages = 0
let replayAccepted = 0

function fuzzLink(r: Rng): Promise<void> {
  return new Promise((resolve) => {
    // mostly a node credential (the messages get past the upgrade); sometimes anything, to be refused
    const auth = r.chance(0.8) ? {authorization: `Bearer ${r.pick([CREDS.node, SECRET])}`} : token(r)
    const ws = new WebSocket(`${master.url.replace(/^http/, 'ws')}/ws`, {headers: auth, handshakeTimeout: 5_000})
    const finish = () => {
      clearTimeout(timer)
      ws.terminate()
      resolve()
    }
    const timer = setTimeout(finish, 1_500)
    ws.on('error', finish)
    ws.on('unexpected-response', (req) => {
      req.destroy()
      finish()
    })
    ws.on('close', finish)
    ws.on('open', () => {
      // a small pool of ids (links replace each other), never a real node's: a node credential holder is trusted with its own id only
      const id = `fz-${r.int(20)}`
      const replica = {chunkId: hex(r, 24), version: 1 + r.int(5), size: r.int(100_000), sha256: hex(r, 64)}
      const valid = [
        {type: 'hello', v: PROTOCOL_VERSION, nodeId: id, url: `http://127.0.0.1:${1 + r.int(1000)}`, zone: 'fz', freeBytes: 1, usedBytes: 0, chunkCount: 0},
        {type: 'heartbeat', freeBytes: 1, usedBytes: 0, chunkCount: 0},
        {type: 'report', reportId: hex(r, 8), done: r.chance(0.5), replicas: [replica]},
        {type: 'stored', reqId: r.int(100), replica},
        {type: 'deleted', chunkId: replica.chunkId, version: replica.version},
        {type: 'corrupt', chunkId: replica.chunkId, version: replica.version},
        {type: 'replicated', taskId: hex(r, 8), ok: [replica], failed: []},
      ]
      const count = 3 + r.int(12)
      if (r.chance(0.8)) {
        ws.send(JSON.stringify(valid[0]))
        wsMessages++
      }
      for (let i = 0; i < count; i++) {
        const roll = r.int(10)
        if (roll < 5) ws.send(JSON.stringify(mutateJson(r, r.pick(valid))) ?? 'null')
        else if (roll < 7) ws.send(mutateBytes(r, JSON.stringify(r.pick(valid))).toString('utf8'))
        else if (roll < 8) ws.send(randomBytes(r.int(500)), {binary: true})
        else if (roll < 9 && r.chance(0.05)) ws.send(Buffer.alloc(5 * 1024 * 1024, 0x7b)) // over the max payload
        else if (roll < 9 && r.chance(0.3)) ws.send(Buffer.from([0xc3, 0x28, 0xff]), {binary: false}) // a text frame that is not UTF-8
        else if (roll < 9 && r.chance(0.3)) (ws as unknown as {_socket: Socket})._socket.write(randomBytes(1 + r.int(64))) // a broken frame
        else ws.send(JSON.stringify(r.pick(valid)))
        wsMessages++
      }
      setTimeout(finish, 20 + r.int(50))
    })
  })
}

async function rssKb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN)
}

async function markerFiles(root: string, recursive: boolean): Promise<string[]> {
  const entries = await readdir(root, {recursive}).catch(() => [] as string[])
  return entries.filter((e) => e.includes(MARKER))
}

beforeAll(async () => {
  dir = await tempDir('chunky-fuzz-')
  master = await startDaemon(['master', '--port', '0', '--data-dir', join(dir.path, 'master'), '--token', SECRET, '--node-timeout', '3s', '--repair-interval', '500ms'])
  for (const id of ['n1', 'n2', 'n3']) {
    nodes.push(await startDaemon(['node', '--master', master.url, '--port', '0', '--id', id, '--zone', id, '--data-dir', join(dir.path, id),
      '--token', CREDS.node, '--heartbeat-interval', '300ms']))
  }
  const conn = {master: master.url, token: CREDS.rw}
  await waitFor('nodes alive', async () => {
    const res = await fetch(`${master.url}/api/status`, {headers: {authorization: `Bearer ${CREDS.ro}`}})
    return ((await res.json()) as {summary: {aliveNodes: number}}).summary.aliveNodes === 3
  })
  for (const [name, size] of [['keep/one.bin', 300_000], ['keep/two.bin', 70_001]] as const) {
    const bytes = randomBytes(size)
    const path = join(dir.path, name.replace('/', '-'))
    await writeFile(path, bytes)
    await uploadFile({path, name, chunkSize: 64 * 1024, ...conn}, silentView)
    kept.push({name, bytes})
  }
  // a chunk written at v1, then at v2: its v1 grant is the one replayed during the fuzz
  const writeVersion = async (bytes: Buffer): Promise<PlannedChunk> => {
    const headers = {authorization: `Bearer ${CREDS.rw}`, 'content-type': 'application/json'}
    const sha = (await import('node:crypto')).createHash('sha256').update(bytes).digest('hex')
    const planned = await fetch(`${master.url}/api/uploads`, {method: 'POST', headers,
      body: JSON.stringify({name: 'fuzz/replay.bin', size: bytes.length, chunkSize: 65536, chunks: [{index: 0, size: bytes.length, sha256: sha}]})})
    const plan = UploadPlan.parse(await planned.json())
    const chunk = plan.chunks[0]!
    const put = await fetch(`${chunk.targets[0]!.url}/chunks/${chunk.chunkId}/${chunk.version}`, {method: 'PUT', body: bytes,
      headers: {authorization: `Bearer ${CREDS.rw}`, [HEADER_GRANT]: chunk.grant, [HEADER_CHAIN]: JSON.stringify(chunk.targets.slice(1))}})
    expect(put.status).toBe(200)
    expect((await fetch(`${master.url}/api/uploads/${plan.uploadId}/commit`, {method: 'POST', headers, body: '{}'})).status).toBe(200)
    return chunk
  }
  const oldBytes = randomBytes(2000)
  const old = await writeVersion(oldBytes)
  const currentBytes = randomBytes(2000)
  const current = await writeVersion(currentBytes)
  replay = {old, oldBytes, current, currentBytes}
}, 60_000)

afterAll(async () => {
  agent.destroy()
  await killAll()
  await dir?.remove()
})

describe(`fuzzing a running cluster (seed ${SEED}; FUZZ_SEED=${SEED} replays it)`, () => {
  // ~15 s on an idle machine; the generous timeout is for a loaded CI runner
  it('survives 10,000+ hostile requests and messages with nothing lost, nothing outside its data, memory settled', {timeout: 120_000}, async () => {
    const r = rng(SEED)
    const started = Date.now()
    const daemons = [master, ...nodes]
    const rss: number[][] = []
    let sent = 0 // HTTP requests and raw connections
    let links = 0 // WebSocket links; their messages are counted in wsMessages
    for (let round = 0; round < ROUNDS; round++) {
      let next = 0
      await Promise.all(Array.from({length: 24}, async () => {
        while (next < PER_ROUND) {
          next++
          if (await fuzzOne(r)) links++
          else sent++
        }
      }))
      rss.push(await Promise.all(daemons.map((d) => rssKb(d.child.pid!))))
    }
    const seconds = (Date.now() - started) / 1000
    const total = sent + wsMessages
    console.log(`fuzz: ${sent} requests, ${wsMessages} WebSocket messages on ${links} links in ${seconds.toFixed(1)}s; statuses ${JSON.stringify(Object.fromEntries(statuses))}; RSS MiB per round ${JSON.stringify(rss.map((row) => row.map((kb) => Math.round(kb / 1024))))}`)
    expect(total).toBeGreaterThanOrEqual(10_000)

    // every process still up and answering
    for (const daemon of daemons) {
      expect(daemon.child.exitCode, daemon.output().slice(-2000)).toBeNull()
      expect((await fetch(`${daemon.url}/healthz`)).status).toBe(200)
    }
    expect(daemons.some((d) => /TypeError|RangeError|ReferenceError|unhandled/i.test(d.output()))).toBe(false)
    expect(fiveHundreds).toEqual([]) // a refusal is a 4xx (or 503), never an internal error
    expect(replayAccepted).toBe(0) // the v1 grant, replayed after v2, never wrote anything

    // memory settled: the last rounds do not keep growing (first round warms up caches and JIT)
    for (let d = 0; d < daemons.length; d++) {
      const growth = rss[ROUNDS - 1]![d]! - rss[1]![d]!
      expect(growth, `RSS growth of process ${d} from round 2 to ${ROUNDS} (KiB)`).toBeLessThan(96 * 1024)
    }

    // nothing outside the data directories: only what belongs in each, and no hostile name anywhere
    const top = (await readdir(dir.path)).sort()
    expect(top.filter((e) => !['master', 'n1', 'n2', 'n3', 'keep-one.bin', 'keep-two.bin'].includes(e))).toEqual([])
    expect((await readdir(join(dir.path, 'master'))).filter((e) => !/^master\.(sqlite(-wal|-shm)?|lock)$/.test(e))).toEqual([])
    for (const id of ['n1', 'n2', 'n3']) {
      const files = await readdir(join(dir.path, id), {recursive: true})
      const unexpected = files.filter((f) => f !== 'node-id' && f !== 'chunks' && !/^tus(\/[0-9a-f]{32}\.\d+\.\d+)?$/.test(f) && !/^chunks\/[0-9a-f]{2}(\/[0-9a-f]{24}\.\d+\.[0-9a-f]{64}(\.[0-9a-f]+\.tmp|\.blocks(\.\d+\.[0-9a-f]+\.tmp)?)?)?$/.test(f)) // a replica, its block checksums, their temp files
      expect(unexpected).toEqual([])
    }
    await waitFor('no temp file left on any node', async () => {
      for (const id of ['n1', 'n2', 'n3']) if ((await readdir(join(dir.path, id), {recursive: true})).some((f) => f.endsWith('.tmp'))) return false
      return true
    }, 15_000)
    expect([...(await markerFiles(dir.path, true)), ...(await markerFiles(ROOT, false)), ...(await markerFiles(tmpdir(), false))]).toEqual([])

    // every committed file still downloads byte-identical
    for (const file of kept) {
      const out = join(dir.path, `${file.name.replace('/', '-')}.copy`)
      await downloadFile({name: file.name, output: out, master: master.url, token: CREDS.ro}, silentView)
      expect((await readFile(out)).equals(file.bytes), file.name).toBe(true)
    }
  })
})
