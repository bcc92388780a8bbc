import {randomBytes} from 'node:crypto'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {MasterLink, backoffMs, masterWsUrl} from '../../src/node/master-link.js'
import {startNode} from '../../src/node/index.js'
import {REPORT_BATCH_SIZE, type ReplicaInfo} from '../../src/protocol/index.js'
import {chunkIdOf, type FakeMaster, grantFor, putChunk, sha256, startFakeMaster, startTestNode, TOKEN, waitUntil} from './helpers.js'
import {messageLogger, silentLogger} from '../../src/util/log.js'

let dir: string
let master: FakeMaster
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chunky-node-link-'))
  master = await startFakeMaster()
})
afterAll(async () => {
  await master?.close()
  await rm(dir, {recursive: true, force: true})
})

function linkTo(masterUrl: string, nodeId: string, inventory: ReplicaInfo[], token = TOKEN, log: (m: string) => void = () => {}) {
  return new MasterLink({
    masterUrl,
    token,
    heartbeatIntervalMs: 100,
    log: messageLogger(log),
    identity: () => ({nodeId, url: 'http://127.0.0.1:9', zone: 'z1'}),
    space: async () => ({usedBytes: 0, chunkCount: inventory.length, freeBytes: 1e9}),
    inventory: async function* () {
      yield* inventory
    },
    onCommand: async () => {},
  })
}

describe('MasterLink', () => {
  it('turns the master URL into its WebSocket URL, and backs off up to 30 s', () => {
    expect(masterWsUrl('http://127.0.0.1:7400')).toBe('ws://127.0.0.1:7400/ws')
    expect(masterWsUrl('https://master.example:443/')).toBe('wss://master.example/ws')
    expect(backoffMs(0)).toBeGreaterThanOrEqual(375)
    expect(backoffMs(0)).toBeLessThanOrEqual(625)
    expect(backoffMs(40)).toBeLessThanOrEqual(37_500)
    expect(backoffMs(40)).toBeGreaterThanOrEqual(22_500)
  })

  it('reports a large inventory in batches of REPORT_BATCH_SIZE under one reportId, done on the last', async () => {
    const inventory = Array.from({length: 2 * REPORT_BATCH_SIZE + 7}, (_, i) => ({chunkId: chunkIdOf(`inv-${i}`), version: 1, size: i, sha256: sha256(Buffer.from([i]))}))
    const link = linkTo(master.url, 'inv-node', inventory)
    link.start()
    try {
      await master.waitFor((m) => m.type === 'report' && m.from === 'inv-node' && m.done, 'the last batch')
      const batches = master.received.filter((m) => m.type === 'report' && m.from === 'inv-node')
      expect(batches.map((m) => m.type === 'report' && m.replicas.length)).toEqual([REPORT_BATCH_SIZE, REPORT_BATCH_SIZE, 7])
      expect(new Set(batches.map((m) => m.type === 'report' && m.reportId)).size).toBe(1)
      expect(batches.map((m) => m.type === 'report' && m.done)).toEqual([false, false, true])
      const hello = master.received.find((m) => m.type === 'hello' && m.from === 'inv-node')
      expect(hello).toMatchObject({v: 1, nodeId: 'inv-node', url: 'http://127.0.0.1:9', zone: 'z1', chunkCount: inventory.length})
    } finally {
      await link.close()
    }
  })

  it('an empty store still sends one empty batch marked done', async () => {
    const link = linkTo(master.url, 'empty-node', [])
    link.start()
    try {
      const report = await master.waitFor((m) => m.type === 'report' && m.from === 'empty-node', 'a report')
      expect(report).toMatchObject({done: true, replicas: []})
    } finally {
      await link.close()
    }
  })

  it('keeps retrying with a wrong token, logging why, and connects once the master is reachable', async () => {
    const logged: string[] = []
    const link = linkTo(master.url, 'bad-token-node', [], 'wrong', (m) => logged.push(m))
    link.start()
    try {
      await waitUntil(() => logged.some((l) => /^lost master link, retrying in \d+\.\ds \(.*401/.test(l)), 'a retry line naming the 401')
      expect(link.connected).toBe(false)
      expect(master.received.some((m) => m.from === 'bad-token-node')).toBe(false)
    } finally {
      await link.close()
    }
  })

  it('a node reconnects by itself after the master drops the link, and reports again', async () => {
    const logged: string[] = []
    const node = await startTestNode(master, join(dir, 'rc'), 'rc-node', {log: messageLogger((m) => logged.push(m))})
    try {
      const helloCount = () => master.received.filter((m) => m.type === 'hello' && m.from === 'rc-node').length
      expect(helloCount()).toBe(1)
      const before = master.received.length
      master.terminate('rc-node')
      await master.waitFor((m) => m.type === 'report' && m.from === 'rc-node' && m.done && master.received.indexOf(m) >= before, 'a report after reconnecting')
      expect(helloCount()).toBe(2)
      expect(logged.filter((l) => l === 'connected to master').length).toBe(2)
      expect(logged.some((l) => l.startsWith('lost master link, retrying in'))).toBe(true)
      const metrics = await (await fetch(`${node.url}/metrics`, {headers: {authorization: `Bearer ${TOKEN}`}})).text()
      expect(metrics).toMatch(/^chunky_master_reconnects_total 1$/m) // the first connect is not a reconnect
      expect(metrics).toMatch(/^chunky_master_connected 1$/m)
    } finally {
      await node.close()
    }
  })

  it('a rotten replica found while the link was down is reported as corrupt right after the next report', async () => {
    const replica = {chunkId: chunkIdOf('rotten'), version: 2, size: 10, sha256: sha256(Buffer.from('rot'))}
    const link = linkTo(master.url, 'rot-node', [replica])
    await link.reportCorrupt(replica.chunkId, replica.version) // scrub found it before the link was up: kept, not lost
    link.start()
    try {
      await master.waitFor((m) => m.type === 'corrupt' && m.from === 'rot-node', 'the corrupt report')
      const mine = master.received.filter((m) => m.from === 'rot-node').map((m) => m.type)
      expect(mine.indexOf('corrupt')).toBeGreaterThan(mine.lastIndexOf('report')) // after the report that lists it
    } finally {
      await link.close()
    }
  })

  it('a write the master does not acknowledge is listed as failed, not stored', async () => {
    const node = await startTestNode(master, join(dir, 'na'), 'noack-node')
    master.ackOk = false
    try {
      const bytes = randomBytes(1000)
      const id = chunkIdOf('unacked')
      const reply = await putChunk(node.url, id, 1, bytes, {grant: grantFor(master, id, 1, bytes, ['noack-node'])})
      expect(reply.status).toBe(200)
      expect(reply.json().stored).toEqual([])
      // The master's verdict on the replica, coded so a client does not mistake it for a master changing hands.
      expect(reply.json().failed).toEqual([{node: 'noack-node', error: expect.stringContaining('refused by test'), code: 'VERSION_CONFLICT'}])
    } finally {
      master.ackOk = true
      await node.close()
    }
  })
})

describe('startNode', () => {
  it('answers 503 to a write before it has heard from the master', async () => {
    const node = await startNode({
      masterUrl: 'http://127.0.0.1:1', // nobody there
      host: '127.0.0.1',
      port: 0,
      zone: '',
      dataDir: join(dir, 'lonely'),
      heartbeatIntervalMs: 1000,
      scrubIntervalMs: 0,
      token: TOKEN,
      log: silentLogger,
    })
    try {
      const bytes = randomBytes(10)
      const id = chunkIdOf('early')
      const reply = await putChunk(node.url, id, 1, bytes, {grant: grantFor(master, id, 1, bytes, [node.id])})
      expect(reply.status).toBe(503)
      expect(reply.json().error.code).toBe('MASTER_UNREACHABLE')
      expect(node.id).toMatch(/^node-[0-9a-f]{6}$/)
      expect((await readFile(join(dir, 'lonely', 'node-id'), 'utf8')).trim()).toBe(node.id)
    } finally {
      await node.close()
    }
    const again = await startNode({masterUrl: 'http://127.0.0.1:1', host: '127.0.0.1', port: 0, zone: '', dataDir: join(dir, 'lonely'), heartbeatIntervalMs: 1000, scrubIntervalMs: 0, token: TOKEN, log: silentLogger})
    const firstId = (await readFile(join(dir, 'lonely', 'node-id'), 'utf8')).trim()
    expect(again.id).toBe(firstId) // the id survives a restart
    expect(again.url).toBe(`http://127.0.0.1:${again.port}`)
    await again.close()
  })
})

describe('MasterLink and a quiet master', () => {
  // Heartbeats get no answer: the node asks for a pong only when the master has been quiet for half its
  // silence window (a pong per heartbeat cost an idle master a third of its CPU at thousands of nodes),
  // and drops the link when even that goes unanswered, as a paused or half-open master would.
  it('pings only once the master has been quiet, and drops a link whose master never answers', async () => {
    const {WebSocketServer} = await import('ws')
    const server = new WebSocketServer({host: '127.0.0.1', port: 0, autoPong: false})
    await new Promise<void>((resolve) => server.once('listening', () => resolve()))
    const seen = {heartbeats: 0, pings: 0, connections: 0, firstClosedAtHeartbeat: -1}
    server.on('connection', (ws) => {
      seen.connections++
      ws.on('ping', () => seen.pings++)
      ws.on('close', () => {
        if (seen.firstClosedAtHeartbeat < 0) seen.firstClosedAtHeartbeat = seen.heartbeats
      })
      ws.on('message', (data) => {
        const msg = JSON.parse(String(data)) as {type: string}
        if (msg.type === 'hello') ws.send(JSON.stringify({type: 'welcome', v: 1, grantKey: 'a'.repeat(64), heartbeatMs: 100}))
        if (msg.type === 'heartbeat') seen.heartbeats++
      })
    })
    const address = server.address() as {port: number}
    const link = linkTo(`http://127.0.0.1:${address.port}`, 'quiet-master-node', [])
    link.start()
    try {
      await waitUntil(() => seen.firstClosedAtHeartbeat >= 0, 'the node to drop the silent link', 20_000)
      // 100 ms heartbeats for the 10 s minimum silence: about 100 heartbeats, and one ping after 5 s of quiet
      expect(seen.firstClosedAtHeartbeat).toBeGreaterThan(60)
      expect(seen.pings).toBe(1)
      await waitUntil(() => seen.connections >= 2, 'the node to reconnect', 10_000)
    } finally {
      await link.close()
      for (const ws of server.clients) ws.terminate()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }, 40_000)
})
