import {createHash, randomBytes} from 'node:crypto'
import {createServer, request, type Server} from 'node:http'
import {readdir} from 'node:fs/promises'
import type {AddressInfo} from 'node:net'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {WebSocket, WebSocketServer} from 'ws'
import {
  decode,
  type GrantPayload,
  HEADER_CHAIN,
  HEADER_GRANT,
  NodeToMaster,
  PROTOCOL_VERSION,
  signGrant,
  type Target,
} from '../../src/protocol/index.js'
import {startNode, type NodeOptions, type RunningNode} from '../../src/node/index.js'
import {silentLogger} from '../../src/util/log.js'

// A minimal stand-in for the master (the real one is built elsewhere): it checks the token, answers
// hello with welcome, acks every `stored`, records everything, and lets a test send commands.

export const TOKEN = 'test-token-' + randomBytes(4).toString('hex')

export type Received = NodeToMaster & {from: string}

export interface FakeMaster {
  url: string
  grantKey: string
  received: Received[]
  /** Answer `stored` with ok (default) or a refusal. */
  ackOk: boolean
  send(nodeId: string, message: unknown): void
  sendRaw(nodeId: string, data: string | Buffer, binary?: boolean): void
  /** Drop a node's link without a closing handshake, as a crashed master would. */
  terminate(nodeId: string): void
  waitFor(match: (m: Received) => boolean, what?: string, timeoutMs?: number): Promise<Received>
  close(): Promise<void>
}

export async function startFakeMaster(): Promise<FakeMaster> {
  const grantKey = randomBytes(32).toString('hex')
  const sockets = new Map<string, WebSocket>()
  const received: Received[] = []
  const http: Server = createServer((_req, res) => res.writeHead(404).end())
  const wss = new WebSocketServer({noServer: true})
  http.on('upgrade', (req, socket, head) => {
    if (req.url !== '/ws' || req.headers.authorization !== `Bearer ${TOKEN}`) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws))
  })
  const master: FakeMaster = {
    url: '',
    grantKey,
    received,
    ackOk: true,
    send: (nodeId, message) => sockets.get(nodeId)!.send(JSON.stringify(message)),
    sendRaw: (nodeId, data, binary = false) => sockets.get(nodeId)!.send(data, {binary}),
    terminate: (nodeId) => sockets.get(nodeId)!.terminate(),
    waitFor: (match, what = 'a message', timeoutMs = 10_000) =>
      waitUntil(() => received.find(match), `the fake master to receive ${what}`, timeoutMs),
    async close() {
      for (const ws of wss.clients) ws.terminate()
      wss.close()
      await new Promise<void>((resolve) => http.close(() => resolve()))
    },
  }
  wss.on('connection', (ws) => {
    let nodeId = '?'
    ws.on('message', (data) => {
      let message: NodeToMaster
      try {
        message = decode(NodeToMaster, data as Buffer)
      } catch (err) {
        received.push({type: 'deleted', chunkId: 'x', version: 1, from: `BAD MESSAGE from ${nodeId}: ${(err as Error).message}`} as Received)
        return
      }
      if (message.type === 'hello') {
        nodeId = message.nodeId
        sockets.set(nodeId, ws)
        ws.send(JSON.stringify({type: 'welcome', v: PROTOCOL_VERSION, grantKey, heartbeatMs: 1000}))
      }
      received.push({...message, from: nodeId})
      if (message.type === 'stored') {
        ws.send(JSON.stringify({type: 'ack', reqId: message.reqId, ok: master.ackOk, error: master.ackOk ? undefined : 'refused by test'}))
      }
    })
  })
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  master.url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`
  return master
}

/** Polls until `probe` returns something truthy; fails with `what` after the deadline. */
export async function waitUntil<T>(probe: () => T | undefined | false | Promise<T | undefined | false>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

export async function startTestNode(master: FakeMaster, dataDir: string, id: string, extra: Partial<NodeOptions> = {}): Promise<RunningNode> {
  const node = await startNode({
    masterUrl: master.url,
    host: '127.0.0.1',
    port: 0,
    id,
    zone: '',
    dataDir,
    heartbeatIntervalMs: 200,
    scrubIntervalMs: 0,
    token: TOKEN,
    log: silentLogger,
    ...extra,
  })
  await master.waitFor((m) => m.type === 'report' && m.from === id && m.done, `${id}'s first report`)
  return node
}

export function chunkIdOf(label: string): string {
  return createHash('sha256').update(label).digest('hex').slice(0, 24)
}

export function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex')
}

export function grantFor(master: FakeMaster, chunkId: string, version: number, bytes: Buffer, nodes: string[], extra: Partial<GrantPayload> = {}): string {
  return signGrant({chunkId, version, size: bytes.length, sha256: sha256(bytes), nodes, exp: Date.now() + 60_000, ...extra}, master.grantKey)
}

export interface HttpReply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
  json<T = any>(): T
}

export interface PutOptions {
  grant?: string
  chain?: Target[] | string
  token?: string
  contentLength?: number
}

/** PUT a chunk the way a client does (node:http, so content-length can be set to anything). */
export function putChunk(url: string, chunkId: string, version: number, body: Buffer, opts: PutOptions = {}): Promise<HttpReply> {
  const headers: Record<string, string> = {
    authorization: `Bearer ${opts.token ?? TOKEN}`,
    'content-length': String(opts.contentLength ?? body.length),
  }
  if (opts.grant !== undefined) headers[HEADER_GRANT] = opts.grant
  if (opts.chain !== undefined) headers[HEADER_CHAIN] = typeof opts.chain === 'string' ? opts.chain : JSON.stringify(opts.chain)
  return send(new URL(`/chunks/${chunkId}/${version}`, url), 'PUT', headers, body)
}

export function send(url: URL, method: string, headers: Record<string, string>, body?: Buffer): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = request(url, {method, headers})
    req.on('error', reject)
    req.on('response', async (res) => {
      const parts: Buffer[] = []
      for await (const part of res) parts.push(part as Buffer)
      const text = Buffer.concat(parts)
      resolve({status: res.statusCode ?? 0, headers: res.headers, body: text, json: () => JSON.parse(text.toString('utf8'))})
    })
    req.end(body)
  })
}

/** Every file under a node's chunk directory (relative), temp files included; not the block checksums kept beside each replica. */
export async function chunkFiles(dataDir: string): Promise<string[]> {
  const root = join(dataDir, 'chunks')
  const entries = await readdir(root, {recursive: true, withFileTypes: true})
  return entries
    .filter((e) => e.isFile() && !e.name.endsWith('.blocks'))
    .map((e) => join(e.parentPath, e.name).slice(root.length + 1))
    .sort()
}

export function expectedFile(chunkId: string, version: number, bytes: Buffer): string {
  return join(chunkId.slice(0, 2), `${chunkId}.${version}.${sha256(bytes)}`)
}

export function targetOf(node: RunningNode): Target {
  return {id: node.id, url: node.url, zone: ''}
}
