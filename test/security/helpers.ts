import {createHash, randomBytes} from 'node:crypto'
import {request as httpRequest} from 'node:http'
import {request as httpsRequest} from 'node:https'
import {mkdtemp, readdir, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import Database from 'better-sqlite3'
import {getStatus} from '../../src/client/operations.js'
import type {HttpLimits} from '../../src/http/limits.js'
import {startMaster, type RunningMaster} from '../../src/master/index.js'
import {startNode, type RunningNode} from '../../src/node/index.js'
import {deriveCredentials} from '../../src/protocol/index.js'
import {messageLogger} from '../../src/util/log.js'

// An in-process cluster for the security tests: the real master and real nodes on 127.0.0.1, port 0.
// Nodes join with the derived node credential (not the cluster secret), as in production.

export const SECRET = 'security-secret-' + randomBytes(8).toString('hex')
export const CREDS = deriveCredentials(SECRET)

export interface TestCluster {
  dir: string
  master: RunningMaster
  nodes: RunningNode[]
  log: string[]
  /** The master's write-grant key, read from its database (to forge "valid" grants in tests). */
  grantKey(): string
  addNode(id: string, extra?: {token?: string; limits?: Partial<HttpLimits>}): Promise<RunningNode>
  close(): Promise<void>
}

export async function startTestCluster(opts: {nodes: number; replicas?: number; limits?: Partial<HttpLimits>; nodeTimeoutMs?: number}): Promise<TestCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'chunky-sec-'))
  const log: string[] = []
  const master = await startMaster({
    host: '127.0.0.1', port: 0, dataDir: join(dir, 'master'), replicas: opts.replicas ?? 3, minReplicas: Math.min(2, opts.replicas ?? 3),
    nodeTimeoutMs: opts.nodeTimeoutMs ?? 5_000, repairIntervalMs: 200, token: SECRET, limits: opts.limits,
    log: messageLogger((line) => void log.push(`master: ${line}`)),
  })
  const nodes: RunningNode[] = []
  const cluster: TestCluster = {
    dir,
    master,
    nodes,
    log,
    grantKey() {
      const db = new Database(join(dir, 'master', 'master.sqlite'), {readonly: true, fileMustExist: true})
      try {
        return (db.prepare("SELECT value FROM meta WHERE key = 'grant_key'").get() as {value: string}).value
      } finally {
        db.close()
      }
    },
    async addNode(id, extra = {}) {
      const node = await startNode({
        masterUrl: master.url, host: '127.0.0.1', port: 0, id, zone: `z-${id}`, dataDir: join(dir, id),
        heartbeatIntervalMs: 200, scrubIntervalMs: 0, token: extra.token ?? CREDS.node, limits: extra.limits ?? opts.limits,
        log: messageLogger((line) => void log.push(`${id}: ${line}`)),
      })
      nodes.push(node)
      return node
    },
    async close() {
      for (const node of nodes) await node.close()
      await master.close()
      await rm(dir, {recursive: true, force: true})
    },
  }
  for (let i = 1; i <= opts.nodes; i++) await cluster.addNode(`n${i}`)
  await until('every node alive', async () => (await getStatus({master: master.url, token: SECRET})).summary.aliveNodes === opts.nodes)
  return cluster
}

export async function until<T>(what: string, check: () => Promise<T | false | undefined> | T | false | undefined, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const value = await check()
      if (value) return value
    } catch (err) {
      last = err
    }
    await sleep(50)
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`)
}

export interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
  /** The parsed ErrorBody's error, when there is one. */
  error?: {code: string; message: string}
  json?: unknown
}

/** One HTTP(S) request with exactly these headers and body; never throws on a status. */
export function send(url: string | URL, method: string, headers: Record<string, string> = {}, body?: Buffer | string, ca?: string): Promise<Reply> {
  const target = new URL(url)
  const requester = target.protocol === 'https:' ? httpsRequest : httpRequest
  return new Promise((resolve, reject) => {
    const req = requester(target, {method, headers, agent: false, ...(ca ? {ca} : {})}, (res) => {
      const parts: Buffer[] = []
      res.on('data', (p: Buffer) => parts.push(p))
      res.on('error', reject)
      res.on('end', () => {
        const text = Buffer.concat(parts)
        let json: unknown
        try {
          json = JSON.parse(text.toString('utf8'))
        } catch {
          json = undefined
        }
        const error = (json as {error?: {code: string; message: string}} | undefined)?.error
        resolve({status: res.statusCode ?? 0, headers: res.headers, body: text, json, error})
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}

export const bearer = (token: string) => ({authorization: `Bearer ${token}`})

export function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/** Every file under `dir`, as paths relative to it. */
export async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, {recursive: true, withFileTypes: true})
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
}
