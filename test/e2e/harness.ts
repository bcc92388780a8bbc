import {spawn, type ChildProcess} from 'node:child_process'
import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {connect, createServer, type AddressInfo, type Socket} from 'node:net'
import {mkdtemp, readdir, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'
import {createInterface} from 'node:readline'
import {setTimeout as sleep} from 'node:timers/promises'
import {StatusDoc} from '../../src/protocol/index.js'
import {waitFor} from '../poll.js'
export {flipByte} from '../chaos/flip-byte.js'

export {waitFor}

// End-to-end tests drive the built binary as separate processes on 127.0.0.1 (STYLE example 10).

export const ROOT = resolve(import.meta.dirname, '../..')
export const BIN = join(ROOT, 'bin/run.js')
/** The sample videos: ../shared/media beside the checkout, or CHUNKY_TEST_MEDIA (a checkout elsewhere, a git worktree). */
export const MEDIA = process.env.CHUNKY_TEST_MEDIA ?? resolve(ROOT, '../shared/media')
export const TOKEN = 'e2e-cluster-token-0123456789'
/** XDG_CONFIG_HOME for every process the tests start: a path that does not exist, so no config file applies. */
export const NO_CONFIG_HOME = join(tmpdir(), `chunky-e2e-no-config-${process.pid}`)

export interface Daemon {
  url: string
  child: ChildProcess
  /** Everything the daemon printed so far (stdout and stderr). */
  output: () => string
  stop: () => Promise<void>
  kill9: () => Promise<void>
}

const running = new Set<ChildProcess>()

export async function startDaemon(args: string[], timeoutMs = 20_000, env: Record<string, string> = {}): Promise<Daemon> {
  const child = spawn(process.execPath, [BIN, ...args], {stdio: ['ignore', 'pipe', 'pipe'], env: {...cleanEnv(), ...env}})
  running.add(child)
  child.on('exit', () => running.delete(child))
  let output = ''
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()))
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  try {
    for await (const line of createInterface({input: child.stdout!})) {
      output += line + '\n'
      const url = /^listening on (\S+)$/.exec(line)?.[1]
      if (url) {
        child.stdout!.on('data', (d: Buffer) => (output += d.toString())) // keep it flowing
        return {url, child, output: () => output, stop: () => stop(child, 'SIGTERM'), kill9: () => stop(child, 'SIGKILL')}
      }
    }
    throw new Error(`chunky ${args.join(' ')} exited (code ${child.exitCode}) before listening:\n${output}`)
  } finally {
    clearTimeout(timer)
  }
}

async function stop(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((done) => child.once('exit', () => done()))
  child.kill(signal)
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
  await exited
  clearTimeout(timer)
}

/** Kills every daemon still running (afterAll safety net). */
export async function killAll(): Promise<void> {
  await Promise.all([...running].map((child) => stop(child, 'SIGKILL')))
}

export interface CliResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs a command to its end (killed after timeoutMs). */
export async function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 120_000): Promise<CliResult> {
  const {child, result} = spawnCli(args, env)
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  try {
    return await result
  } finally {
    clearTimeout(timer)
  }
}

/** Starts a command and returns the child, for tests that act while it runs. */
export function spawnCli(args: string[], env: Record<string, string> = {}): {child: ChildProcess; result: Promise<CliResult>} {
  const child = spawn(process.execPath, [BIN, ...args], {stdio: ['ignore', 'pipe', 'pipe'], env: {...cleanEnv(), ...env}})
  running.add(child)
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
  const result = new Promise<CliResult>((done, fail) => {
    child.on('error', fail)
    child.on('close', (code) => {
      running.delete(child)
      done({code, stdout, stderr})
    })
  })
  return {child, result}
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env = {...process.env}
  delete env.CHUNKY_MASTER
  delete env.CHUNKY_TOKEN
  delete env.CHUNKY_SECRET
  delete env.CHUNKY_NODE_TOKEN
  delete env.CHUNKY_ZONE
  delete env.CHUNKY_CONFIG_DIR
  env.NO_COLOR = '1'
  // oclif's config dir (chunky's config file) in a folder of this test run, never the real home's
  env.XDG_CONFIG_HOME = NO_CONFIG_HOME
  return env
}


export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const part of createReadStream(path)) hash.update(part as Buffer)
  return hash.digest('hex')
}

export async function tempDir(prefix = 'chunky-e2e-'): Promise<{path: string; remove: () => Promise<void>}> {
  const path = await mkdtemp(join(tmpdir(), prefix))
  return {path, remove: () => rm(path, {recursive: true, force: true})}
}

/** Every chunk file a node keeps, as `<chunkId>.<version>.<sha256>` names (the node's on-disk layout). */
export async function chunkFilesOnDisk(nodeDataDir: string): Promise<string[]> {
  try {
    const entries = await readdir(join(nodeDataDir, 'chunks'), {recursive: true})
    return entries.map((e) => e.split('/').pop()!).filter((name) => /^[0-9a-f]{24}\.\d+\.[0-9a-f]{64}$/.test(name))
  } catch {
    return []
  }
}

export async function tmpFilesOnDisk(nodeDataDir: string): Promise<string[]> {
  try {
    return (await readdir(join(nodeDataDir, 'chunks'), {recursive: true})).filter((e) => e.endsWith('.tmp'))
  } catch {
    return []
  }
}

export interface Cluster {
  dir: string
  master: Daemon
  masterDataDir: string
  nodes: Map<string, Daemon>
  nodeDirs: Map<string, string>
  nodePorts: Map<string, number>
  env: Record<string, string>
  masterArgs: string[]
  /** `extraArgs` go to `chunky node` as well (e.g. `--public-url`). */
  startNode(id: string, zone?: string, extraArgs?: string[]): Promise<Daemon>
  restartMaster(): Promise<Daemon>
  status(name?: string): Promise<StatusDoc>
  close(): Promise<void>
}

export interface ClusterOptions {
  nodes: number
  replicas?: number
  minReplicas?: number
  fast?: boolean
  scrubInterval?: string
  /** More arguments for `chunky master` (e.g. `--log-level debug`). */
  masterArgs?: string[]
}

/** A master and N nodes (ids n1..nN, zones z1..zN) as separate processes in a temp folder. */
export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const {path: dir, remove} = await tempDir()
  const masterDataDir = join(dir, 'master')
  const timing = opts.fast === false ? [] : ['--node-timeout', '2s', '--repair-interval', '300ms']
  const masterArgs = [
    'master', '--port', '0', '--data-dir', masterDataDir, '--token', TOKEN,
    '--replicas', String(opts.replicas ?? 3), ...(opts.minReplicas ? ['--min-replicas', String(opts.minReplicas)] : []),
    ...timing, ...(opts.masterArgs ?? []),
  ]
  let master = await startDaemon(masterArgs)
  const nodes = new Map<string, Daemon>()
  const nodeDirs = new Map<string, string>()
  const nodePorts = new Map<string, number>()
  const cluster: Cluster = {
    dir,
    get master() {
      return master
    },
    masterDataDir,
    nodes,
    nodeDirs,
    nodePorts,
    get env() {
      return {CHUNKY_MASTER: master.url, CHUNKY_TOKEN: TOKEN}
    },
    masterArgs,
    async startNode(id, zone, extraArgs = []) {
      const dataDir = join(dir, id)
      nodeDirs.set(id, dataDir)
      const port = nodePorts.get(id) ?? 0 // a node comes back on its old port, like a real server
      const node = await startDaemon([
        'node', '--master', master.url, '--port', String(port), '--id', id, '--zone', zone ?? `z${id.slice(1)}`,
        '--data-dir', dataDir, '--token', TOKEN, '--heartbeat-interval', '200ms',
        ...(opts.scrubInterval ? ['--scrub-interval', opts.scrubInterval] : []),
        ...extraArgs,
      ])
      nodePorts.set(id, Number(new URL(node.url).port))
      nodes.set(id, node)
      return node
    },
    async restartMaster() {
      const port = new URL(master.url).port
      master = await startDaemon(masterArgs.map((a, i) => (masterArgs[i - 1] === '--port' ? port : a)))
      return master
    },
    async status(name) {
      const result = await runCli(['status', ...(name ? [name] : []), '--json'], cluster.env)
      if (result.code !== 0) throw new Error(`status exited ${result.code}: ${result.stderr}`)
      return StatusDoc.parse(JSON.parse(result.stdout))
    },
    async close() {
      await Promise.all([...nodes.values()].map((n) => n.kill9()))
      await master.kill9()
      await remove()
    },
  }
  try {
    for (let i = 1; i <= opts.nodes; i++) await cluster.startNode(`n${i}`)
    await waitFor('every node alive', async () => {
      const status = await cluster.status()
      return status.summary.aliveNodes === opts.nodes
    })
  } catch (err) {
    await cluster.close() // a cluster that never came up leaves no process and no folder behind
    throw err
  }
  return cluster
}

export interface DelayProxy {
  /** http://127.0.0.1:PORT of the proxy. */
  url: string
  /** Where connections go: the port of the server behind the proxy (set once it listens). */
  setTarget(port: number): void
  close(): Promise<void>
}

/**
 * A TCP proxy on 127.0.0.1 that holds every piece of data `delayMs` before passing it on, in each
 * direction: a server "far away". Start it first, advertise its URL, then point it at the server.
 */
export async function startDelayProxy(delayMs: number): Promise<DelayProxy> {
  let target: number | undefined
  const sockets = new Set<Socket>()
  const track = (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  }
  const forward = (from: Socket, to: Socket) => {
    from.on('data', (data: Buffer) => setTimeout(() => to.writable && to.write(data), delayMs))
    from.on('end', () => setTimeout(() => to.writable && to.end(), delayMs))
    from.on('error', () => to.destroy())
  }
  const server = createServer({allowHalfOpen: true}, (client) => {
    track(client)
    if (target === undefined) return void client.destroy()
    const upstream = connect({port: target, host: '127.0.0.1', allowHalfOpen: true})
    track(upstream)
    forward(client, upstream)
    forward(upstream, client)
  })
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    setTarget: (port) => void (target = port),
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise((done) => server.close(done))
    },
  }
}

