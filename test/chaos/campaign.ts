import {createHash} from 'node:crypto'
import {existsSync} from 'node:fs'
import {appendFile, mkdir, mkdtemp, readdir, readFile, rm, truncate, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {pathToFileURL} from 'node:url'
import {setTimeout as sleep} from 'node:timers/promises'
import {ABSENT, fmt, type Attempt, type Content, Model, setEpoch, short} from './model.js'
import type {PostgresServer} from '../../scripts/postgres-server.mjs'
import {BIN, campaignEnv, Daemon, StartTimeout, type DaemonExit, killEverything, liveProcesses, type ProcEnv, ROOT, runClient, type ClientResult} from './procs.js'
import {TcpProxy} from './proxy.js'
import {bytesFor, Rng, sha256} from './rng.js'
import {CHUNK, HEARTBEAT_MS, MiB, NODE_TIMEOUT_MS, NODES, R, REPAIR_INTERVAL_MS, SCRUB_INTERVAL_MS, W, ZONES} from './constants.js'
import {flipByte} from './flip-byte.js'
import {describe, type Fault, type PlannedFault, planFaults, targetOf} from './faults.js'
import {describeUnhealthy, isHealthy, isStatusDoc, type StatusChunk, type StatusDoc} from './status.js'

// A seeded fault campaign against a real cluster: 1 master + 5 nodes (R=3, W=2) as processes of the
// built binary on 127.0.0.1, every node behind two TCP proxies the campaign controls (its link to the
// master, and its data port as others reach it through --public-url). With `meta: 'postgres'` it is
// 2 masters on a throwaway PostgreSQL, every master behind proxies of its own, nodes and clients given
// both, and the master faults hit either one. While workers upload, edit,
// truncate, extend and download files through the CLI, a fault plan computed from the seed kills,
// pauses and partitions nodes and the master, adds latency and flips bytes on disk. The model
// (model.ts) judges every client run; after the faults stop the cluster must heal within a stated
// bound, and a disk audit compares every node's data dir with what `chunky status --json` claims.

/** The repair rate the heal bound assumes: conservative for two busy cores. */
const REPAIR_RATE_BYTES_PER_S = 8 * MiB
const HEAL_SLACK_MS = 20_000
const UPLOAD_DEADLINE_MS = 120_000
const DOWNLOAD_DEADLINE_MS = 60_000
const STATUS_POLL_MS = 700
/** Far above what a healthy heal needs (a handful per repair round), far below a loop with no backoff. */
const MAX_REPAIRS_PER_S = 20
const SECRET = 'chaos-cluster-secret-0123456789abcdef'
const NAMES = ['v/alpha.mp4', 'v/beta.mp4', 'talks/2026/gamma.mov', 'delta.mkv', 'raw/e p s i l o n.ts']

/** The promises the campaign checks; every violation names one. */
export const INVARIANTS = {
  'no-crash': 'no daemon exits by itself, and every one restarts on its data dir',
  'reads-see-committed': 'a download that exits 0 returns a content that may be current: never overwritten, never unknown bytes, never a mix',
  'versions-only-go-up': 'the version of chunk (name, index) in status never goes down, and one version never has two checksums',
  'durable-before-done': 'right after an upload exits 0, every chunk of it is on the disks of at least W nodes at its committed version',
  'upload-contract': 'upload --json reports the file it was given, uploadedChunks + skippedChunks = chunks',
  'heals-in-bound': 'once faults stop: every node alive, nothing under-replicated, stale or corrupt, within the stated bound',
  'disk-matches-status': 'every replica status calls fresh is on that node\'s disk with the right bytes, and the disk holds no copy status does not know',
  'no-leftovers': 'no stale-version file and no *.tmp left in any node data dir once healed',
  'nothing-outside-data-dirs': 'no process writes outside its data dir (cwd, HOME, TMPDIR and the config dir stay empty)',
  'committed-names-download': 'every committed name downloads once healed and matches the model\'s current content',
  'writes-work-when-healed': 'once healed, a new upload exits 0 and downloads back byte for byte',
  'bounded-repair-work': `the master starts at most ${MAX_REPAIRS_PER_S} repair transfers per second on average (no spinning on a source it cannot use)`,
  campaign: 'the campaign itself could run (setup, restarts, status answers)',
} as const
export type Invariant = keyof typeof INVARIANTS

export interface Violation {
  invariant: Invariant
  at: string
  detail: string
}

export interface CampaignOptions {
  seed: number
  seconds: number
  /** Client workers running the workload at once (default 3). */
  workers?: number
  /** Largest file the workload makes, in MiB (default 24). */
  maxSizeMiB?: number
  /** Keep the run's folder even when it passes. */
  keep?: boolean
  /** --scrub-interval of the nodes (default SCRUB_INTERVAL_MS); the heal wait gives two passes after the last fault. */
  scrubIntervalMs?: number
  /** bin/run.js of the build to test (default: this checkout's). */
  bin?: string
  /** Where the metadata lives: the master's SQLite (default, 1 master) or a throwaway PostgreSQL with 2 masters. */
  meta?: 'sqlite' | 'postgres'
  /** Where progress lines go (default stdout). */
  print?: (line: string) => void
}

export interface CampaignStats {
  uploads: Record<'ok' | 'failed' | 'killed', number>
  downloads: Record<'ok' | 'failed' | 'killed', number>
  removes: Record<'ok' | 'failed' | 'killed', number>
  faults: Record<string, number>
  statusPolls: number
  /** Why client commands failed: the first line of their standard error, ids and numbers blurred, with counts. */
  clientErrors: Record<string, number>
  repairsStarted: number
  /** Terms led, over every master (`master.leading` lines): 1 + each takeover. */
  leaderTerms: number
  healMs: number | undefined
  healBoundMs: number | undefined
  committedBytes: number
  files: number
  chunks: number
  warnings: string[]
}

export interface CampaignResult {
  seed: number
  seconds: number
  passed: boolean
  violations: Violation[]
  stats: CampaignStats
  dir: string
  kept: boolean
  replay: string
}

/** One master with the proxies in front of it: the clients' and each node's link. */
interface MasterSlot {
  daemon: Daemon
  clientProxy: TcpProxy
  linkProxies: Map<string, TcpProxy>
}

interface Balance {
  settled: boolean
  text: string
}

// --- the run ---

export async function runCampaign(opts: CampaignOptions): Promise<CampaignResult> {
  const campaign = new Campaign(opts)
  return campaign.run()
}

class Campaign {
  private readonly rng: Rng
  private readonly print: (line: string) => void
  private readonly model = new Model()
  private readonly violations: Violation[] = []
  private readonly stats: CampaignStats = {
    uploads: {ok: 0, failed: 0, killed: 0},
    downloads: {ok: 0, failed: 0, killed: 0},
    removes: {ok: 0, failed: 0, killed: 0},
    faults: {},
    statusPolls: 0,
    clientErrors: {},
    repairsStarted: 0,
    leaderTerms: 0,
    healMs: undefined,
    healBoundMs: undefined,
    committedBytes: 0,
    files: 0,
    chunks: 0,
    warnings: [],
  }
  private dir = ''
  private procEnv!: ProcEnv
  private start = Date.now()
  private faultsEnd = 0
  private restoredAt = 0
  /** Stops the status poller. */
  private stopping = false
  /** Set once the campaign itself stops the daemons: exits from then on are its own. */
  private shuttingDown = false
  private readonly masters: MasterSlot[] = []
  private postgres: PostgresServer | undefined
  private readonly nodes = new Map<string, Daemon>()
  private readonly dataProxies = new Map<string, TcpProxy>()
  private rwToken = SECRET
  private nodeToken = SECRET
  private lastStatus: StatusDoc | undefined
  /** Highest version seen per `name#index`, with its checksum. */
  private readonly maxVersions = new Map<string, {version: number; sha256: string; chunkId: string; at: number}>()
  /** Every chunk id status ever showed in a committed file, with the highest version seen. */
  private readonly everCommitted = new Map<string, {name: string; index: number; version: number}>()
  /** Version violations already reported (each once, not at every poll). */
  private readonly reported = new Set<string>()
  private readonly flippedAt = new Map<string, number>()
  /** The master's latest repair.started lines (newest first), for kills in the middle of a transfer. */
  private readonly recentRepairs: {source: string; target: string; at: number}[] = []
  private lastFlip = 0
  /** Set when the rebalancer ends unbalanced with nothing it can move (a warning, see fetchBalance). */
  private unbalanced: string | undefined
  private flipCounter = 0
  private leftoverCounter = 0
  private campaignLog = ''
  private opCounter = 0
  private readonly maxSize: number
  private readonly workers: number
  private readonly scrubMs: number

  constructor(private readonly opts: CampaignOptions) {
    this.rng = new Rng(opts.seed)
    this.print = opts.print ?? ((line) => console.log(line))
    this.maxSize = Math.max(2, opts.maxSizeMiB ?? 24) * MiB
    this.workers = opts.workers ?? 3
    this.scrubMs = opts.scrubIntervalMs ?? SCRUB_INTERVAL_MS
  }

  private get elapsed(): string {
    return fmt(Date.now())
  }

  private violate(invariant: Invariant, detail: string): void {
    const v: Violation = {invariant, at: this.elapsed, detail}
    this.violations.push(v)
    this.print(`VIOLATION [${invariant}] at ${v.at}: ${detail.split('\n')[0]}`)
    this.note(`VIOLATION [${invariant}] ${detail}`)
  }

  private note(line: string): void {
    void appendFile(this.campaignLog, `${new Date().toISOString()} ${this.elapsed} ${line}\n`).catch(() => {})
  }

  private replay(): string {
    const extra = [
      this.opts.workers !== undefined ? ` --workers ${this.opts.workers}` : '',
      this.opts.maxSizeMiB !== undefined ? ` --max-size-mib ${this.opts.maxSizeMiB}` : '',
      this.opts.scrubIntervalMs !== undefined ? ` --scrub-ms ${this.opts.scrubIntervalMs}` : '',
      this.opts.bin !== undefined ? ` --bin ${this.opts.bin}` : '',
      this.opts.meta === 'postgres' ? ' --meta postgres' : '',
    ].join('')
    return `npm run chaos -- --seed ${this.opts.seed} --seconds ${this.opts.seconds}${extra}`
  }

  async run(): Promise<CampaignResult> {
    this.dir = await mkdtemp(join(tmpdir(), `chunky-chaos-${this.opts.seed}-`))
    for (const sub of this.subfolders()) await mkdir(join(this.dir, sub))
    this.campaignLog = join(this.dir, 'logs', 'campaign.log')
    this.procEnv = {bin: this.opts.bin ?? BIN, cwd: join(this.dir, 'cwd'), env: campaignEnv(this.dir)}
    this.print(`chaos: seed ${this.opts.seed}, ${this.opts.seconds} s of faults, folder ${this.dir}`)
    let poller: Promise<void> | undefined
    try {
      await this.startCluster()
      this.start = Date.now()
      setEpoch(this.start)
      this.faultsEnd = this.start + this.opts.seconds * 1000
      poller = this.pollStatus()
      const plan = planFaults(this.rng.fork('faults'), this.opts.seconds, this.masterKeys().length)
      await writeFile(join(this.dir, 'logs', 'plan.txt'), plan.map((p) => `${(p.at / 1000).toFixed(2)}s ${describe(p.fault)}`).join('\n') + '\n')
      this.print(`chaos: ${plan.length} fault events planned, ${this.workers} workers; cluster up`)
      const workers = Array.from({length: this.workers}, (_, i) => this.worker(i))
      await this.runFaults(plan)
      this.print(`chaos: faults over at ${this.elapsed}; restoring everything`)
      await this.restoreAll()
      this.restoredAt = Date.now()
      await Promise.all(workers)
      this.print(`chaos: workload finished at ${this.elapsed}`)
      this.stopping = true
      await poller
      poller = undefined
      await this.healAndAudit()
    } catch (err) {
      this.violate('campaign', `the campaign stopped: ${(err as Error)?.stack ?? String(err)}`)
    } finally {
      this.stopping = true
      await poller?.catch(() => {})
      await this.shutdown()
    }
    const passed = this.violations.length === 0
    const kept = !passed || this.opts.keep === true
    await this.writeReport(passed)
    if (!kept) await rm(this.dir, {recursive: true, force: true})
    this.printSummary(passed, kept)
    return {seed: this.opts.seed, seconds: this.opts.seconds, passed, violations: this.violations, stats: this.stats, dir: this.dir, kept, replay: this.replay()}
  }

  // --- cluster ---

  private onExit = (exit: DaemonExit) => {
    this.note(`${exit.key} pid ${exit.pid} exited code=${exit.code} signal=${exit.signal}${exit.expected ? ' (the campaign did it)' : ''}`)
    if (!exit.expected && !this.shuttingDown) {
      this.violate('no-crash', `${exit.key} (pid ${exit.pid}) exited by itself, code ${exit.code} signal ${exit.signal}; last log lines:\n${exit.logTail}`)
    }
  }

  /** `master`, or `master1` and `master2` on PostgreSQL: the name of each master's log and data dir. */
  private masterKeys(): string[] {
    return this.opts.meta === 'postgres' ? ['master1', 'master2'] : ['master']
  }

  /** The folders of a run: anything else appearing in it is written where nothing may be. */
  private subfolders(): string[] {
    return ['logs', 'contents', 'downloads', 'cwd', 'home', 'proc-tmp', ...this.masterKeys(), ...NODES]
  }

  private async startCluster(): Promise<void> {
    const meta: string[] = []
    if (this.opts.meta === 'postgres') {
      // Loaded at run time: the chaos build's root is test/chaos, and the script is shared with the e2e tests.
      const {startPostgres} = (await import(pathToFileURL(join(ROOT, 'scripts', 'postgres-server.mjs')).href)) as typeof import('../../scripts/postgres-server.mjs')
      const postgres = (this.postgres = await startPostgres())
      // Ctrl-C of the campaign (main.ts) ends its processes by pid; this ends the server too.
      process.once('exit', () => {
        try {
          process.kill(postgres.pid, 'SIGINT')
        } catch {
          // already stopped
        }
      })
      meta.push('--meta', this.postgres.url)
      this.note(`PostgreSQL pid ${this.postgres.pid} at ${this.postgres.url}`)
    }
    const listen = (line: string) => {
      if (!line.includes('"event":"repair.started"')) return
      try {
        const record = JSON.parse(line) as {source?: unknown; target?: unknown}
        this.recentRepairs.unshift({source: String(record.source), target: String(record.target), at: Date.now()})
        this.recentRepairs.length = Math.min(this.recentRepairs.length, 50)
      } catch {
        // not one JSON record: ignore
      }
    }
    for (const key of this.masterKeys()) {
      const masterArgs = [
        'master', '--host', '127.0.0.1', '--port', '0', '--data-dir', join(this.dir, key), '--token', SECRET,
        '--replicas', String(R), '--min-replicas', String(W), '--node-timeout', `${NODE_TIMEOUT_MS}ms`,
        '--repair-interval', `${REPAIR_INTERVAL_MS}ms`, ...meta,
      ]
      const daemon = new Daemon(key, () => masterArgs, join(this.dir, 'logs', `${key}.log`), this.procEnv, this.onExit)
      daemon.lineListeners.add(listen)
      const linkProxies = new Map<string, TcpProxy>()
      for (const id of NODES) linkProxies.set(id, await TcpProxy.start(key === 'master' ? `${id}-link` : `${id}-link-${key}`))
      this.masters.push({daemon, clientProxy: await TcpProxy.start(key === 'master' ? 'clients' : `clients-${key}`), linkProxies})
    }
    for (const id of NODES) this.dataProxies.set(id, await TcpProxy.start(`${id}-data`))
    // The first leads; the second (PostgreSQL) starts once it does, so it stands by.
    for (const slot of this.masters) await this.startMaster(slot)
    const banner = this.masters[0]!.daemon.banner.join('\n')
    this.nodeToken = /--token (node-\S+)/.exec(banner)?.[1] ?? SECRET
    this.rwToken = /CHUNKY_TOKEN=(rw-\S+)/.exec(banner)?.[1] ?? SECRET
    for (const id of NODES) {
      const args = [
        'node', '--master', this.masters.map((m) => m.linkProxies.get(id)!.url).join(','), '--host', '127.0.0.1', '--port', '0',
        '--public-url', this.dataProxies.get(id)!.url, '--id', id, '--zone', ZONES[id]!, '--data-dir', join(this.dir, id),
        '--token', this.nodeToken, '--heartbeat-interval', `${HEARTBEAT_MS}ms`, '--scrub-interval', `${this.scrubMs}ms`,
      ]
      this.nodes.set(id, new Daemon(id, () => args, join(this.dir, 'logs', `${id}.log`), this.procEnv, this.onExit))
    }
    await Promise.all(NODES.map((id) => this.startNode(id)))
    await this.waitFor('every node alive', 30_000, async () => {
      const s = await this.fetchStatus()
      return s !== undefined && s.summary.aliveNodes === NODES.length
    })
  }

  private async startMaster(slot: MasterSlot): Promise<void> {
    const url = await slot.daemon.start()
    const port = Number(new URL(url).port)
    await Promise.all([slot.clientProxy, ...slot.linkProxies.values()].map((p) => p.setTarget(port)))
  }

  /** Every proxy in front of a master: the clients' and the nodes' links. */
  private masterProxies(): TcpProxy[] {
    return this.masters.flatMap((m) => [m.clientProxy, ...m.linkProxies.values()])
  }

  private async startNode(id: string): Promise<void> {
    const url = await this.nodes.get(id)!.start()
    await this.dataProxies.get(id)!.setTarget(Number(new URL(url).port))
  }

  private async waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (await check().catch(() => false)) return
      await sleep(200)
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
  }

  /**
   * GET straight from the master that leads (not through the client proxies and their faults): the
   * first running one that does not answer 503 (a standby's NOT_LEADER). Undefined when none answers.
   */
  private async fromLeader(path: string, timeoutMs: number): Promise<Response | undefined> {
    for (const {daemon} of this.masters) {
      if (!daemon.running || daemon.paused) continue
      try {
        const res = await fetch(`${daemon.url}${path}`, {headers: {authorization: `Bearer ${this.rwToken}`}, signal: AbortSignal.timeout(timeoutMs)})
        if (res.status !== 503) return res
        await res.body?.cancel()
      } catch {
        // not answering: the next one
      }
    }
    return undefined
  }

  /** GET /api/status from the leader. */
  private async fetchStatus(timeoutMs = 3000): Promise<StatusDoc | undefined> {
    try {
      const res = await this.fromLeader('/api/status', timeoutMs)
      if (res?.status !== 200) return undefined
      const doc: unknown = await res.json()
      return isStatusDoc(doc) ? doc : undefined
    } catch {
      return undefined
    }
  }

  /** GET /api/rebalance: settled when nothing moves and the nodes are balanced (or rebalancing waits or is off). */
  private async fetchBalance(): Promise<Balance | undefined> {
    try {
      const res = await this.fromLeader('/api/rebalance', 3000)
      if (!res) return undefined
      if (res.status === 404) return {settled: true, text: 'no rebalancer'}
      if (res.status !== 200) return undefined
      const doc = (await res.json()) as {enabled?: boolean; balanced?: boolean; moving?: number; waiting?: string; meanFill?: number; band?: number; nodes?: {id: string; fill: number}[]}
      // The rebalancer only moves from a node above mean + band: with none, nothing more will move even
      // when a node below the band keeps `balanced` false.
      const mean = doc.meanFill ?? 0
      const band = doc.band ?? 0
      const source = (doc.nodes ?? []).some((n) => n.fill > mean + band)
      const settled = doc.moving === 0 && (doc.balanced === true || doc.enabled === false || !source)
      if (settled && doc.balanced === false && doc.enabled !== false) {
        const low = (doc.nodes ?? []).filter((n) => n.fill < mean - band).map((n) => n.id)
        this.unbalanced = `rebalance reports balanced: false with nothing moving and no node above mean + band (below it: ${low.join(', ')}); \`chunky rebalance --wait\` would not return`
      }
      return {settled, text: JSON.stringify({...doc, nodes: (doc.nodes ?? []).map((n) => `${n.id}:${n.fill.toExponential(3)}`)}).slice(0, 1500)}
    } catch {
      return undefined
    }
  }

  // --- invariant: versions only go up ---

  private async pollStatus(): Promise<void> {
    while (!this.stopping) {
      const status = await this.fetchStatus()
      if (status) {
        this.stats.statusPolls++
        this.lastStatus = status
        this.checkVersions(status, 'status poll')
      }
      await sleep(STATUS_POLL_MS)
    }
  }

  private checkVersions(status: StatusDoc, source: string): void {
    for (const file of status.files) {
      for (const chunk of file.chunks) {
        const key = `${file.name}#${chunk.index}`
        const seen = this.maxVersions.get(key)
        const once = `${key}/${seen?.version}/${seen?.sha256}/${chunk.version}/${chunk.sha256}`
        if (seen && this.reported.has(once)) continue
        if (seen && (chunk.version < seen.version || (chunk.version === seen.version && chunk.sha256 !== seen.sha256))) this.reported.add(once)
        if (seen && chunk.version < seen.version) {
          this.violate(
            'versions-only-go-up',
            `${source}: chunk ${chunk.index} of ${file.name} is at v${chunk.version} (id ${chunk.id}), after v${seen.version} (id ${seen.chunkId}) was seen at ${fmt(seen.at)}`,
          )
        } else if (seen && chunk.version === seen.version && chunk.sha256 !== seen.sha256) {
          this.violate(
            'versions-only-go-up',
            `${source}: chunk ${chunk.index} of ${file.name} is v${chunk.version} with sha256 ${short(chunk.sha256)} (id ${chunk.id}); at ${fmt(seen.at)} the same version had ${short(seen.sha256)} (id ${seen.chunkId})`,
          )
        }
        const ever = this.everCommitted.get(chunk.id)
        if (!ever || chunk.version > ever.version) this.everCommitted.set(chunk.id, {name: file.name, index: chunk.index, version: chunk.version})
        if (!seen || chunk.version > seen.version) this.maxVersions.set(key, {version: chunk.version, sha256: chunk.sha256, chunkId: chunk.id, at: Date.now()})
      }
    }
  }

  // --- faults ---

  private async runFaults(plan: PlannedFault[]): Promise<void> {
    const chains = new Map<string, Promise<void>>()
    for (const {at, fault} of plan) {
      const wait = this.start + at - Date.now()
      if (wait > 0) await sleep(wait)
      const target = targetOf(fault)
      const previous = chains.get(target) ?? Promise.resolve()
      chains.set(target, previous.then(() => this.apply(fault, at)))
    }
    const wait = this.faultsEnd - Date.now()
    if (wait > 0) await sleep(wait)
    await Promise.all(chains.values())
  }

  private async apply(fault: Fault, plannedAt: number): Promise<void> {
    this.stats.faults[fault.kind] = (this.stats.faults[fault.kind] ?? 0) + 1
    const began = Date.now()
    this.note(`fault: ${describe(fault)} (planned at ${(plannedAt / 1000).toFixed(2)} s)`)
    try {
      await this.applyNow(fault)
      const took = Date.now() - began
      if (took > 1000) this.note(`fault: ${describe(fault)} took ${took} ms`)
    } catch (err) {
      this.violate('campaign', `fault ${describe(fault)} failed: ${(err as Error)?.message ?? String(err)}`)
    }
  }

  private async applyNow(fault: Fault): Promise<void> {
    {
      switch (fault.kind) {
        case 'kill-node':
          this.nodes.get(fault.node)!.note('kill -9')
          await this.nodes.get(fault.node)!.kill9()
          await this.dataProxies.get(fault.node)!.setTarget(undefined)
          if (fault.leftovers) await this.plantLeftovers(fault.node)
          return
        case 'restart-node':
          return await this.restartNode(fault.node)
        case 'kill-repairing':
          return await this.killRepairing(fault.node, fault.windowMs, fault.delayMs)
        case 'pause-node':
          this.nodes.get(fault.node)!.note('SIGSTOP')
          return this.nodes.get(fault.node)!.pause()
        case 'resume-node':
          this.nodes.get(fault.node)!.note('SIGCONT')
          return this.nodes.get(fault.node)!.resume()
        case 'cut-link':
          this.nodes.get(fault.node)!.note(`link to the master cut (${fault.mode})`)
          return void (await Promise.all(this.masters.map((m) => m.linkProxies.get(fault.node)!.setMode(fault.mode))))
        case 'heal-link':
          this.nodes.get(fault.node)!.note('link to the master restored')
          return void (await Promise.all(this.masters.map((m) => m.linkProxies.get(fault.node)!.setMode('pass'))))
        case 'cut-data':
          this.nodes.get(fault.node)!.note(`data port cut (${fault.mode})`)
          return await this.dataProxies.get(fault.node)!.setMode(fault.mode)
        case 'heal-data':
          this.nodes.get(fault.node)!.note('data port restored')
          return await this.dataProxies.get(fault.node)!.setMode('pass')
        case 'latency':
          for (const m of this.masters) m.linkProxies.get(fault.node)!.delayMs = fault.ms
          this.dataProxies.get(fault.node)!.delayMs = fault.ms
          return
        case 'latency-off':
          for (const m of this.masters) m.linkProxies.get(fault.node)!.delayMs = 0
          this.dataProxies.get(fault.node)!.delayMs = 0
          return
        case 'client-latency':
          for (const m of this.masters) m.clientProxy.delayMs = fault.ms
          return
        case 'client-latency-off':
          for (const m of this.masters) m.clientProxy.delayMs = 0
          return
        case 'kill-master': {
          const slot = this.masters[fault.master]!
          await this.countLeaderHit(fault.kind, slot)
          slot.daemon.note('kill -9')
          await slot.daemon.kill9()
          return void (await Promise.all([slot.clientProxy, ...slot.linkProxies.values()].map((p) => p.setTarget(undefined))))
        }
        case 'restart-master':
          return await this.restartMaster(this.masters[fault.master]!)
        case 'pause-master':
          await this.countLeaderHit(fault.kind, this.masters[fault.master]!)
          this.masters[fault.master]!.daemon.note('SIGSTOP')
          return this.masters[fault.master]!.daemon.pause()
        case 'resume-master':
          this.masters[fault.master]!.daemon.note('SIGCONT')
          return this.masters[fault.master]!.daemon.resume()
        case 'flip':
          return await this.flip(fault.node, fault.how)
      }
    }
  }

  /** With several masters: counts whether a master fault hit the leader or a standby (its /healthz just before). */
  private async countLeaderHit(kind: string, slot: MasterSlot): Promise<void> {
    if (this.masters.length < 2 || !slot.daemon.running || slot.daemon.paused) return
    const role = await fetch(`${slot.daemon.url}/healthz`, {signal: AbortSignal.timeout(500)})
      .then(async (res) => ((await res.json()) as {role?: string}).role)
      .catch(() => undefined)
    const key = `${kind} (${role ?? 'no answer'})`
    this.stats.faults[key] = (this.stats.faults[key] ?? 0) + 1
  }

  /** Waits (at most windowMs) for a repair transfer from or to `id`, then kills it -9 mid-transfer. */
  private async killRepairing(id: string, windowMs: number, delayMs: number): Promise<void> {
    const since = Date.now() - 300
    const deadline = Date.now() + windowMs
    let repair: {source: string; target: string; at: number} | undefined
    while (Date.now() < deadline) {
      repair = this.recentRepairs.find((r) => r.at >= since && (r.source === id || r.target === id))
      if (repair) break
      await sleep(50)
    }
    if (repair) await sleep(delayMs)
    const how = repair ? `during repair ${repair.source} -> ${repair.target}` : `no repair involving it within ${windowMs} ms`
    const key = repair ? 'kill-repairing (hit)' : 'kill-repairing (no repair seen)'
    this.stats.faults[key] = (this.stats.faults[key] ?? 0) + 1
    this.note(`kill -9 ${id}: ${how}`)
    this.nodes.get(id)!.note(`kill -9 (${how})`)
    await this.nodes.get(id)!.kill9()
    await this.dataProxies.get(id)!.setTarget(undefined)
  }

  private async restartNode(id: string): Promise<void> {
    const daemon = this.nodes.get(id)!
    if (daemon.running) return
    try {
      await this.startNode(id)
    } catch (err) {
      this.violate(err instanceof StartTimeout ? 'campaign' : 'no-crash', `${id} did not restart on its data dir: ${(err as Error).message}\n${daemon.tail(30)}`)
    }
  }

  private async restartMaster(slot: MasterSlot): Promise<void> {
    if (slot.daemon.running) return
    try {
      await this.startMaster(slot)
    } catch (err) {
      this.violate(err instanceof StartTimeout ? 'campaign' : 'no-crash', `${slot.daemon.key} did not restart on its data dir: ${(err as Error).message}\n${slot.daemon.tail(30)}`)
    }
  }

  /**
   * Flips one byte of one stored replica: only of a chunk status shows with R fresh copies (this one
   * among them) and not flipped in the last 20 s, so a flip never takes the last good copy.
   */
  /** What a kill -9 in the middle of a write leaves in a node's chunk folder (invariant 6: cleaned at the next start). */
  private async plantLeftovers(id: string): Promise<void> {
    const rng = this.rng.fork(`leftovers-${this.leftoverCounter++}`)
    const prefix = rng.int(0, 255).toString(16).padStart(2, '0')
    const dir = join(this.dir, id, 'chunks', prefix)
    await mkdir(dir, {recursive: true})
    const chunkId = prefix + bytesFor(`${this.opts.seed}/leftover/${this.leftoverCounter}`, 11).toString('hex')
    const sha = sha256(Buffer.from(chunkId))
    const names = [`${chunkId}.1.${sha}.${rng.int(0, 0xffffff).toString(16)}.tmp`, `${chunkId}.1.${sha.slice(0, 20)}`]
    for (const name of names) await writeFile(join(dir, name), bytesFor(name, rng.int(0, 4096)))
    this.nodes.get(id)!.note(`planted crash leftovers ${names.join(', ')} in chunks/${prefix}`)
    this.note(`planted crash leftovers on ${id}: chunks/${prefix}/{${names.join(', ')}}`)
  }

  private async flip(id: string, how: 'byte' | 'truncate' | 'delete'): Promise<void> {
    const rng = this.rng.fork(`flip-${this.flipCounter++}`)
    const status = this.lastStatus
    if (!status) return this.note(`flip on ${id}: no status yet, skipped`)
    const eligible = new Map<string, StatusChunk>()
    for (const file of status.files) {
      for (const chunk of file.chunks) {
        const fresh = chunk.replicas.filter((r) => r.state === 'fresh' && r.version === chunk.version)
        if (chunk.size > 0 && fresh.length >= R && fresh.some((r) => r.node === id) && Date.now() - (this.flippedAt.get(chunk.id) ?? 0) > 20_000) {
          eligible.set(`${chunk.id}.${chunk.version}.${chunk.sha256}`, chunk)
        }
      }
    }
    const names = [...eligible.keys()].sort()
    const onDisk: string[] = []
    for (const name of names) if (existsSync(join(this.dir, id, 'chunks', name.slice(0, 2), name))) onDisk.push(name)
    if (onDisk.length === 0) return this.note(`flip on ${id}: no eligible replica, skipped`)
    const name = rng.pick(onDisk)
    const chunk = eligible.get(name)!
    const offset = rng.int(0, chunk.size - 1)
    const path = join(this.dir, id, 'chunks', name.slice(0, 2), name)
    if (how !== 'byte') {
      try {
        if (how === 'truncate') await truncate(path, offset)
        else await rm(path)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return this.note(`flip on ${id}: ${name} went away, skipped`)
        throw err
      }
      this.flippedAt.set(chunk.id, Date.now())
      this.lastFlip = Date.now()
      const what = how === 'truncate' ? `cut ${name} to ${offset} B` : `deleted ${name}`
      this.nodes.get(id)!.note(what)
      return this.note(`${what} on ${id}`)
    }
    try {
      await flipByte(path, offset)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return this.note(`flip on ${id}: ${name} went away, skipped`) // deleted since it was listed (stale, trimmed)
      throw err
    }
    this.flippedAt.set(chunk.id, Date.now())
    this.lastFlip = Date.now()
    this.nodes.get(id)!.note(`flipped byte ${offset} of ${name}`)
    this.note(`flipped byte ${offset} of ${id}:${name}`)
  }

  /** Everything back: resumed, unpartitioned, no latency, every process running. */
  private async restoreAll(): Promise<void> {
    for (const m of this.masters) m.daemon.resume()
    for (const d of this.nodes.values()) d.resume()
    for (const p of [...this.masterProxies(), ...this.dataProxies.values()]) {
      await p.setMode('pass')
      p.delayMs = 0
    }
    for (const m of this.masters) await this.restartMaster(m)
    await Promise.all(NODES.map((id) => this.restartNode(id)))
  }

  // --- workload ---

  private clientArgs(): string[] {
    return ['--master', this.masters.map((m) => m.clientProxy.url).join(','), '--token', this.rwToken]
  }

  private async worker(index: number): Promise<void> {
    const rng = this.rng.fork(`worker-${index}`)
    const last = new Map<string, Content>()
    let counter = 0
    const newKey = () => `${this.opts.seed}/w${index}/${counter++}`
    while (Date.now() < this.faultsEnd) {
      const name = rng.pick(NAMES)
      const base = last.get(name)
      const op = rng.weighted({
        'upload-new': base ? 2 : 6,
        'edit-chunk': base ? 2.5 : 0,
        truncate: base ? 1 : 0,
        extend: base ? 1 : 0,
        reupload: base ? 0.5 : 0,
        remove: base ? 1 : 0,
        download: 3,
        'download-pair': 1,
        'upload-pair': 1,
        'upload-killed': 1,
        'download-killed': 0.6,
      })
      this.note(`w${index}: ${op} ${name}`)
      try {
        switch (op) {
          case 'upload-new': {
            const content = await this.makeContent(newKey(), this.pickSize(rng))
            last.set(name, content)
            await this.upload(name, content, `w${index}`)
            break
          }
          case 'edit-chunk':
          case 'truncate':
          case 'extend': {
            const content = await this.derive(base!, op, rng, newKey())
            last.set(name, content)
            await this.upload(name, content, `w${index}`)
            break
          }
          case 'reupload':
            await this.upload(name, base!, `w${index}`)
            break
          case 'remove':
            last.delete(name)
            await this.remove(name, `w${index}`)
            break
          case 'download':
            await this.download(name, `w${index}`)
            break
          case 'download-pair':
            await Promise.all([this.download(name, `w${index}a`), this.download(name, `w${index}b`)])
            break
          case 'upload-pair': {
            const a = base ? await this.derive(base, 'edit-chunk', rng, newKey()) : await this.makeContent(newKey(), this.pickSize(rng))
            const b = await this.makeContent(newKey(), this.pickSize(rng))
            last.set(name, b)
            await Promise.all([this.upload(name, a, `w${index}a`), this.upload(name, b, `w${index}b`)])
            break
          }
          case 'upload-killed': {
            const content = base && rng.chance(0.5) ? await this.derive(base, 'edit-chunk', rng, newKey()) : await this.makeContent(newKey(), this.pickSize(rng))
            last.set(name, content)
            await this.upload(name, content, `w${index}`, rng.int(100, 3000))
            if (Date.now() < this.faultsEnd + 5000) await this.upload(name, content, `w${index}-rerun`)
            break
          }
          case 'download-killed':
            await this.download(name, `w${index}`, rng.int(50, 1500))
            await this.download(name, `w${index}-rerun`)
            break
        }
      } catch (err) {
        this.violate('campaign', `w${index} ${op} ${name} failed in the campaign: ${(err as Error)?.stack ?? String(err)}`)
      }
      await sleep(rng.int(0, 400))
    }
  }

  /** Sizes around chunk boundaries (0, 1, k·C, k·C±1), some random, a few large. */
  private pickSize(rng: Rng): number {
    const k = rng.int(1, 6)
    switch (rng.weighted({zero: 0.6, one: 0.6, exact: 3, below: 3, above: 3, random: 3, big: 1.5})) {
      case 'zero':
        return 0
      case 'one':
        return 1
      case 'exact':
        return k * CHUNK
      case 'below':
        return k * CHUNK - 1
      case 'above':
        return k * CHUNK + 1
      case 'random':
        return rng.int(2, 6 * CHUNK)
      default:
        return Math.min(this.maxSize, rng.int(10 * CHUNK, this.maxSize) + rng.int(-1, 1))
    }
  }

  private async makeContent(key: string, size: number): Promise<Content> {
    return this.storeContent(bytesFor(key, size))
  }

  private async derive(base: Content, how: 'edit-chunk' | 'truncate' | 'extend', rng: Rng, key: string): Promise<Content> {
    const bytes = await readFile(base.path)
    if (how === 'edit-chunk' && bytes.length > 0) {
      const chunks = Math.ceil(bytes.length / CHUNK)
      const index = rng.int(0, chunks - 1)
      const from = index * CHUNK
      const to = Math.min(bytes.length, from + CHUNK)
      // all of the chunk, or a few bytes in it
      if (rng.chance(0.5)) bytesFor(key, to - from).copy(bytes, from)
      else {
        const at = rng.int(from, to - 1)
        bytes[at] = bytes[at]! ^ (1 + rng.int(0, 254))
      }
      return this.storeContent(bytes)
    }
    if (how === 'truncate' && bytes.length > 0) {
      const k = rng.int(0, Math.floor((bytes.length - 1) / CHUNK))
      const options = [0, k * CHUNK, k * CHUNK + 1, Math.max(0, k * CHUNK - 1), rng.int(0, bytes.length - 1)].filter((n) => n < bytes.length)
      return this.storeContent(bytes.subarray(0, rng.pick(options)))
    }
    const add = rng.pick([1, CHUNK - 1, CHUNK, CHUNK + 1, rng.int(1, 3 * CHUNK)])
    const grown = Math.min(this.maxSize, bytes.length + add) - bytes.length
    return this.storeContent(Buffer.concat([bytes, bytesFor(key, Math.max(1, grown))]))
  }

  private async storeContent(bytes: Buffer): Promise<Content> {
    const sha = sha256(bytes)
    const existing = this.model.contents.get(sha)
    if (existing) return existing
    const path = join(this.dir, 'contents', `${sha.slice(0, 16)}.bin`)
    await writeFile(path, bytes)
    const content: Content = {sha256: sha, size: bytes.length, path, chunkShas: chunkHashes(bytes)}
    this.model.addContent(content)
    return content
  }

  private async upload(name: string, content: Content, who: string, killAfterMs?: number): Promise<void> {
    const attempt = this.model.begin(name, content.sha256, Date.now())
    const result = await runClient(
      ['upload', content.path, '--name', name, '--chunk-size', '1MiB', '--json', ...this.clientArgs()],
      this.procEnv,
      {deadlineMs: UPLOAD_DEADLINE_MS, killAfterMs},
    )
    const outcome = result.code === 0 ? 'ok' : result.killed !== 'no' ? 'killed' : 'failed'
    this.model.finish(attempt, outcome, result.end)
    this.stats.uploads[outcome]++
    this.logClient(who, result, `#${attempt.id} ${short(content.sha256)} ${content.size} B -> ${outcome}`)
    if (outcome === 'ok') {
      this.checkUploadJson(name, content, result, attempt)
      await this.checkDurable(name, content, attempt)
    }
  }

  /**
   * Invariant 1 right after an upload exits 0: every chunk of the committed file is on the disks of at
   * least W nodes at its committed version (a killed or paused node keeps its files). Only chunks still
   * current after the count are judged (a newer upload may have replaced them meanwhile), and not ones
   * the campaign itself rotted.
   */
  private async checkDurable(name: string, content: Content, attempt: Attempt): Promise<void> {
    const before = await this.fetchStatus()
    const file = before?.files.find((f) => f.name === name)
    if (!file || file.size !== content.size) return // replaced already by another upload of the name
    const short_: {chunk: StatusChunk; copies: string[]}[] = []
    for (const chunk of file.chunks) {
      if (chunk.sha256 !== content.chunkShas[chunk.index] || this.flippedAt.has(chunk.id)) continue
      const copies = NODES.filter((id) => existsSync(join(this.dir, id, 'chunks', chunk.id.slice(0, 2), `${chunk.id}.${chunk.version}.${chunk.sha256}`)))
      if (copies.length < W) short_.push({chunk, copies})
    }
    if (short_.length === 0) return
    const after = await this.fetchStatus()
    const still = short_.filter(({chunk}) => after?.files.find((f) => f.name === name)?.chunks.some((c) => c.id === chunk.id && c.version === chunk.version) ?? false)
    for (const {chunk, copies} of still.slice(0, 5)) {
      this.violate(
        'durable-before-done',
        `upload #${attempt.id} of ${name} exited 0, but chunk ${chunk.index} (${chunk.id} v${chunk.version}) is on ${copies.length} disk(s) [${copies.join(', ')}], fewer than W=${W}; status lists ${JSON.stringify(chunk.replicas)}`,
      )
    }
  }

  private async remove(name: string, who: string): Promise<void> {
    const attempt = this.model.begin(name, ABSENT, Date.now())
    const result = await runClient(['rm', name, '--json', ...this.clientArgs()], this.procEnv, {deadlineMs: DOWNLOAD_DEADLINE_MS})
    const outcome = result.code === 0 ? 'ok' : result.killed !== 'no' ? 'killed' : 'failed'
    this.model.finish(attempt, outcome, result.end)
    this.stats.removes[outcome]++
    // versions start again for a name that was removed: forget what was seen of it
    if (outcome === 'ok') for (const key of [...this.maxVersions.keys()]) if (key.startsWith(`${name}#`)) this.maxVersions.delete(key)
    this.logClient(who, result, `#${attempt.id} rm ${name} -> ${outcome}`)
  }

  private checkUploadJson(name: string, content: Content, result: ClientResult, attempt: Attempt): void {
    let doc: {name?: unknown; size?: unknown; chunks?: unknown; uploadedChunks?: unknown; skippedChunks?: unknown}
    try {
      doc = JSON.parse(result.stdout) as typeof doc
    } catch {
      return this.violate('upload-contract', `upload #${attempt.id} of ${name} exited 0 but stdout is not one JSON document: ${result.stdout.slice(0, 300)}`)
    }
    const chunks = Math.ceil(content.size / CHUNK)
    const sum = Number(doc.uploadedChunks) + Number(doc.skippedChunks)
    if (doc.name !== name || doc.size !== content.size || sum !== doc.chunks) {
      this.violate('upload-contract', `upload #${attempt.id} of ${name} (${content.size} B, ${chunks} chunks of 1 MiB) printed ${result.stdout.trim().slice(0, 300)}`)
    }
  }

  private async download(name: string, who: string, killAfterMs?: number): Promise<void> {
    const out = join(this.dir, 'downloads', `${who}-${this.opCounter++}.bin`)
    const result = await runClient(['download', name, '-o', out, '--json', ...this.clientArgs()], this.procEnv, {deadlineMs: DOWNLOAD_DEADLINE_MS, killAfterMs})
    const outcome = result.code === 0 ? 'ok' : result.killed !== 'no' ? 'killed' : 'failed'
    this.stats.downloads[outcome]++
    let verdict = outcome as string
    if (existsSync(out)) {
      const bytes = await readFile(out)
      const sha = sha256(bytes)
      verdict += ` ${short(sha)} ${bytes.length} B`
      const why = this.model.judgeDownload(name, sha, result.start, result.end, chunkHashes(bytes))
      // A download killed after it renamed its complete, verified file into place leaves that file: atomic
      // all the same. Killed with anything else there, or failed with any file there, it was not.
      if (outcome === 'killed' && !why) {
        this.stats.warnings.push(`download by ${who} was killed after its file was in place (${bytes.length} B, content as committed)`)
      } else if (outcome !== 'ok') {
        this.violate('reads-see-committed', `download of ${name} by ${who} did not exit 0 (${outcome}, code ${result.code}) yet left ${out} (${bytes.length} B${why ? `; ${why}` : ''}): a download must write its file atomically`)
      } else if (why) {
        this.violate('reads-see-committed', `download of ${name} by ${who} over [${fmt(result.start)}, ${fmt(result.end)}] ${why}`)
      }
      await rm(out, {force: true})
    } else if (outcome === 'ok') {
      this.violate('reads-see-committed', `download of ${name} by ${who} exited 0 but wrote no file ${out}`)
    }
    // a download killed with -9 may leave its temp file (it cannot clean up); note and remove it
    const leftovers = (await readdir(join(this.dir, 'downloads'))).filter((f) => f.startsWith(`.${who}-`))
    if (leftovers.length > 0 && outcome !== 'killed') this.stats.warnings.push(`download by ${who} (${outcome}) left ${leftovers.join(', ')}`)
    for (const f of leftovers) await rm(join(this.dir, 'downloads', f), {force: true})
    this.logClient(who, result, `download ${name} -> ${verdict}`)
  }

  private logClient(who: string, result: ClientResult, summary: string): void {
    if (result.code !== 0 && result.killed !== 'on-purpose') {
      const reason = `${result.args[0]}: ${result.killed === 'deadline' ? 'killed at its deadline' : blur(result.stderr.trim().split('\n').pop() ?? '')}`
      this.stats.clientErrors[reason] = (this.stats.clientErrors[reason] ?? 0) + 1
    }
    const args = result.args.filter((a, i) => a !== this.rwToken && result.args[i - 1] !== '--master')
    const err = result.code === 0 ? '' : ` | ${result.stderr.trim().split('\n').slice(-3).join(' / ').slice(0, 600)}`
    this.note(`${who}: ${args.slice(0, 4).join(' ')} [${fmt(result.start)}..${fmt(result.end)}] code=${result.code} signal=${result.signal} killed=${result.killed}: ${summary}${err}`)
  }

  // --- after the faults ---

  private async healAndAudit(): Promise<void> {
    const quiet = Date.now()
    const committed = this.lastStatus?.files.reduce((sum, f) => sum + f.size, 0) ?? 0
    const bound = NODE_TIMEOUT_MS + REPAIR_INTERVAL_MS + 2 * this.scrubMs + Math.ceil(((committed * R) / REPAIR_RATE_BYTES_PER_S) * 1000) + HEAL_SLACK_MS
    this.stats.healBoundMs = bound
    this.print(
      `chaos: healing; bound ${(bound / 1000).toFixed(1)} s from the last client's end = node timeout ${NODE_TIMEOUT_MS} ms + repair interval ${REPAIR_INTERVAL_MS} ms + 2 × scrub interval ${this.scrubMs} ms` +
        ` + ${(committed / MiB).toFixed(1)} MiB × R / ${REPAIR_RATE_BYTES_PER_S / MiB} MiB/s + ${HEAL_SLACK_MS / 1000} s slack`,
    )
    const deadline = quiet + bound
    // A flipped byte is only seen by a scrub pass (or a reader), and reported only while the node's
    // link is up: give every node two passes once everything is back (and after the last flip).
    const scrubbedAfter = this.lastFlip > 0 ? Math.max(this.lastFlip, this.restoredAt) + 2 * this.scrubMs + 1000 : 0
    let healthy: StatusDoc | undefined
    let last: StatusDoc | undefined
    let balance: Balance | undefined
    while (Date.now() < deadline) {
      const s = await this.fetchStatus()
      if (s) {
        last = s
        this.checkVersions(s, 'heal poll')
        // the audit needs a quiet cluster: no rebalancing move half done either (a master without one answers 404)
        balance = isHealthy(s) && Date.now() >= scrubbedAfter ? await this.fetchBalance() : undefined
        if (balance && balance.settled) {
          healthy = s
          break
        }
      }
      await sleep(500)
    }
    if (this.unbalanced) this.stats.warnings.push(this.unbalanced)
    if (!healthy) {
      const why = last && isHealthy(last) && balance && !balance.settled ? `healthy, but rebalancing has not settled: ${balance.text}` : last ? describeUnhealthy(last) : 'the master never answered status'
      this.violate('heals-in-bound', `not healed ${(bound / 1000).toFixed(1)} s after the faults stopped: ${why}`)
    } else {
      this.stats.healMs = Date.now() - this.restoredAt
      this.print(
        `chaos: healthy ${(this.stats.healMs / 1000).toFixed(1)} s after every fault was undone, ${((Date.now() - quiet) / 1000).toFixed(1)} s after the last client finished` +
          `${this.lastFlip > 0 ? ' (waiting for two scrub passes after the last flipped byte and the last fault)' : ''}`,
      )
    }

    // status through the CLI, as a user sees it, then the disk audit against it
    const cli = await runClient(['status', '--json', ...this.clientArgs()], this.procEnv, {deadlineMs: 30_000})
    let status: StatusDoc | undefined
    try {
      const doc: unknown = JSON.parse(cli.stdout)
      if (isStatusDoc(doc)) status = doc
    } catch {
      // reported below
    }
    if (!status) return this.violate('campaign', `chunky status --json did not answer a status document (code ${cli.code}): ${cli.stderr.slice(-500)}`)
    await writeFile(join(this.dir, 'logs', 'final-status.json'), JSON.stringify(status, null, 1))
    this.checkVersions(status, 'final status')
    if (healthy && !isHealthy(status)) this.violate('heals-in-bound', `healthy over the API, then chunky status --json says: ${describeUnhealthy(status)}`)
    this.stats.files = status.files.length
    this.stats.chunks = status.summary.chunks
    this.stats.committedBytes = status.files.reduce((sum, f) => sum + f.size, 0)
    await this.auditDisks(status)
    await this.auditOutside()
    await this.finalDownloads(status)
    await this.checkWritesWork()
  }

  /** A healed cluster takes a new upload and gives it back (catches a write path that fails for everyone). */
  private async checkWritesWork(): Promise<void> {
    const content = await this.makeContent(`${this.opts.seed}/after-heal`, 2 * CHUNK + 1)
    const name = 'after-heal/check.bin'
    await this.upload(name, content, 'after-heal')
    const attempt = this.model.attemptsOf(name)[0]!
    if (attempt.outcome !== 'ok') return this.violate('writes-work-when-healed', `upload of ${name} after healing ended ${attempt.outcome}; see campaign.log (after-heal)`)
    const out = join(this.dir, 'downloads', 'after-heal.bin')
    const result = await runClient(['download', name, '-o', out, '--json', ...this.clientArgs()], this.procEnv, {deadlineMs: DOWNLOAD_DEADLINE_MS})
    this.logClient('after-heal', result, `download ${name}`)
    const bytes = result.code === 0 ? await readFile(out) : undefined
    await rm(out, {force: true})
    if (!bytes || sha256(bytes) !== content.sha256) this.violate('writes-work-when-healed', `download of ${name} after healing: code ${result.code}${bytes ? `, ${short(sha256(bytes))} instead of ${short(content.sha256)}` : ''} ${result.stderr.trim().slice(-300)}`)
  }

  private async auditDisks(status: StatusDoc): Promise<void> {
    const byId = new Map<string, StatusChunk>()
    for (const file of status.files) for (const chunk of file.chunks) byId.set(chunk.id, chunk)
    const problems: string[] = []
    for (const file of status.files) {
      for (const chunk of file.chunks) {
        for (const replica of chunk.replicas) {
          if (replica.state !== 'fresh') continue
          const path = join(this.dir, replica.node, 'chunks', chunk.id.slice(0, 2), `${chunk.id}.${chunk.version}.${chunk.sha256}`)
          const where = `${file.name} chunk ${chunk.index} (${chunk.id} v${chunk.version}) on ${replica.node}`
          if (!existsSync(path)) {
            problems.push(`${where}: status says fresh, the file is not on disk`)
            continue
          }
          const bytes = await readFile(path)
          if (bytes.length !== chunk.size || sha256(bytes) !== chunk.sha256) problems.push(`${where}: status says fresh, the file on disk has ${bytes.length} B hashing to ${short(sha256(bytes))}, not ${chunk.size} B ${short(chunk.sha256)}`)
        }
      }
    }
    for (const p of problems.slice(0, 20)) this.violate('disk-matches-status', p)
    if (problems.length > 20) this.violate('disk-matches-status', `… and ${problems.length - 20} more`)

    let pending = 0
    let unreferenced = 0
    const leftovers: string[] = []
    const untracked: string[] = []
    for (const id of NODES) {
      const root = join(this.dir, id, 'chunks')
      for (const top of await readdir(root, {withFileTypes: true}).catch(() => [])) {
        if (!top.isDirectory()) {
          leftovers.push(`${id}: chunks/${top.name}`)
          continue
        }
        for (const entry of await readdir(join(root, top.name))) {
          const sidecar = /^([0-9a-f]{24}\.\d+\.[0-9a-f]{64})\.blocks$/.exec(entry)
          if (sidecar) {
            // per-block checksums kept beside a replica: fine while the replica is there
            if (!existsSync(join(root, top.name, sidecar[1]!))) leftovers.push(`${id}: chunks/${top.name}/${entry} (a sidecar whose replica is gone)`)
            continue
          }
          const match = /^([0-9a-f]{24})\.(\d+)\.([0-9a-f]{64})$/.exec(entry)
          if (!match) {
            leftovers.push(`${id}: chunks/${top.name}/${entry}${entry.endsWith('.tmp') ? ' (a temp file)' : ''}`)
            continue
          }
          const chunk = byId.get(match[1]!)
          const version = Number(match[2])
          const ever = this.everCommitted.get(match[1]!)
          if (!chunk && ever && version <= ever.version) {
            leftovers.push(`${id}: ${entry} belongs to chunk ${ever.index} of ${ever.name} (seen committed at v${ever.version}), which no committed file references any more (removed or cut off): its replicas should be deleted`)
          } else if (!chunk) unreferenced++
          else if (version < chunk.version) leftovers.push(`${id}: ${entry} is stale (committed v${chunk.version})`)
          else if (version > chunk.version) pending++
          else if (!chunk.replicas.some((r) => r.node === id && r.version === version)) untracked.push(`${id}: ${entry} is on disk, status lists no such replica`)
        }
      }
      // tus/ keeps the tails of unfinished browser uploads: the campaign makes none, so it must be empty
      const tusTails = existsSync(join(this.dir, id, 'tus')) ? await readdir(join(this.dir, id, 'tus')) : []
      const extra = (await readdir(join(this.dir, id))).filter((e) => e !== 'chunks' && e !== 'node-id' && !(e === 'tus' && tusTails.length === 0))
      if (extra.length > 0) this.stats.warnings.push(`${id} data dir also holds: ${extra.join(', ')}`)
    }
    for (const l of leftovers.slice(0, 20)) this.violate('no-leftovers', l)
    if (leftovers.length > 20) this.violate('no-leftovers', `… and ${leftovers.length - 20} more`)
    for (const u of untracked.slice(0, 20)) this.violate('disk-matches-status', u)
    if (pending > 0) this.stats.warnings.push(`${pending} replica file(s) at a version above the committed one (uploads that did not commit; kept for a resume)`)
    if (unreferenced > 0) this.stats.warnings.push(`${unreferenced} replica file(s) of chunk ids no committed file references (uploads that did not commit, or leaks)`)
  }

  private async auditOutside(): Promise<void> {
    const allowed = new Set(this.subfolders())
    const strays = (await readdir(this.dir)).filter((e) => !allowed.has(e))
    for (const dir of ['cwd', 'home', 'proc-tmp', 'downloads']) {
      for (const e of await readdir(join(this.dir, dir), {recursive: true})) strays.push(`${dir}/${e}`)
    }
    if (strays.length > 0) this.violate('nothing-outside-data-dirs', `written outside the data dirs: ${strays.slice(0, 20).join(', ')}`)
  }

  private async finalDownloads(status: StatusDoc): Promise<void> {
    const listed = new Set(status.files.map((f) => f.name))
    for (const name of listed) if (this.model.attemptsOf(name).length === 0) this.violate('committed-names-download', `status lists ${name}, which nobody uploaded`)
    for (const name of this.model.names()) {
      const t = Date.now()
      const allowed = this.model.mayBeCurrent(name, t)
      const out = join(this.dir, 'downloads', `final-${this.opCounter++}.bin`)
      const result = await runClient(['download', name, '-o', out, '--json', ...this.clientArgs()], this.procEnv, {deadlineMs: DOWNLOAD_DEADLINE_MS})
      this.logClient('final', result, `download ${name}`)
      const attempts = this.model.attemptsOf(name).map((a) => `#${a.id} ${short(a.sha256)} ${a.outcome} [${fmt(a.start)}..${fmt(a.end)}]`).join('; ')
      if (result.code !== 0) {
        if (this.model.mustExist(name, t) || listed.has(name)) {
          this.violate('committed-names-download', `${name} is committed${listed.has(name) ? ' and listed by status' : ''} but download exited ${result.code}: ${result.stderr.trim().slice(-400)} (attempts: ${attempts})`)
        }
        continue
      }
      const bytes = await readFile(out)
      await rm(out, {force: true})
      const sha = sha256(bytes)
      if (!allowed.has(sha)) {
        this.violate('committed-names-download', `${name} downloads as ${short(sha)} (${bytes.length} B), the model allows ${[...allowed].map(short).join(', ') || 'nothing'} (attempts: ${attempts})`)
      }
      const file = status.files.find((f) => f.name === name)
      if (!file) this.violate('committed-names-download', `${name} downloads but status --json does not list it`)
    }
  }

  private async shutdown(): Promise<void> {
    this.stopping = true
    this.shuttingDown = true
    const stops = [...this.nodes.values()].map(async (d) => ({d, r: await d.stop(5000)}))
    for (const {d, r} of await Promise.all(stops)) {
      if (r && r.code !== 0) this.stats.warnings.push(`${d.key} exited ${r.code ?? r.signal} on SIGTERM`)
    }
    for (const {daemon} of this.masters) {
      const r = await daemon.stop(5000)
      if (r && r.code !== 0) this.stats.warnings.push(`${daemon.key} exited ${r.code ?? r.signal} on SIGTERM`)
    }
    await killEverything()
    if (liveProcesses().length > 0) this.stats.warnings.push(`${liveProcesses().length} process(es) would not die`)
    await this.postgres?.destroy()
    for (const p of [...this.masterProxies(), ...this.dataProxies.values()]) await p?.close()
    for (const d of [...this.masters.map((m) => m.daemon), ...this.nodes.values()]) await d?.closeLog()
    await this.scanLogs()
  }

  /** Error-level log lines are not violations by themselves, but they are what to read first. */
  private async scanLogs(): Promise<void> {
    const seconds = Math.max(1, (Date.now() - this.start) / 1000)
    let masterLog = ''
    for (const key of this.masterKeys()) masterLog += await readFile(join(this.dir, 'logs', `${key}.log`), 'utf8').catch(() => '')
    const repairs = masterLog.split('"event":"repair.started"').length - 1
    this.stats.repairsStarted = repairs
    this.stats.leaderTerms = masterLog.split('"event":"master.leading"').length - 1
    if (repairs / seconds > MAX_REPAIRS_PER_S) {
      const sample = masterLog.split('\n').filter((l) => l.includes('"event":"repair.')).slice(-3).map((l) => l.slice(0, 300)).join('\n')
      this.violate('bounded-repair-work', `the master(s) started ${repairs} repair transfers in ${seconds.toFixed(0)} s (${(repairs / seconds).toFixed(0)}/s), their logs are ${(masterLog.length / MiB).toFixed(1)} MiB; last lines:\n${sample}`)
    }
    for (const key of [...this.masterKeys(), ...NODES]) {
      const text = await readFile(join(this.dir, 'logs', `${key}.log`), 'utf8').catch(() => '')
      const bad = text.split('\n').filter((l) => /"level":(50|60)/.test(l) || /^(Error|TypeError|RangeError)\b|Uncaught|node:internal/.test(l))
      if (bad.length > 0) this.stats.warnings.push(`${key}.log: ${bad.length} error line(s), first: ${bad[0]!.slice(0, 300)}`)
    }
  }

  private async writeReport(passed: boolean): Promise<void> {
    const lines = [
      `# chaos run, seed ${this.opts.seed}: ${passed ? 'passed' : 'FAILED'}`,
      '',
      `replay: ${this.replay()}`,
      '',
      `stats: ${JSON.stringify(this.stats, null, 1)}`,
      '',
      ...this.violations.map((v) => `- [${v.invariant}] ${v.at}: ${v.detail}`),
    ]
    await writeFile(join(this.dir, 'REPORT.md'), lines.join('\n') + '\n').catch(() => {})
  }

  private printSummary(passed: boolean, kept: boolean): void {
    const s = this.stats
    const faults = Object.entries(s.faults).map(([k, n]) => `${k} ${n}`).join(', ')
    this.print(
      `chaos: seed ${this.opts.seed}: uploads ${s.uploads.ok} ok / ${s.uploads.failed} failed / ${s.uploads.killed} killed; downloads ${s.downloads.ok} ok / ${s.downloads.failed} failed / ${s.downloads.killed} killed; rm ${s.removes.ok} ok / ${s.removes.failed} failed`,
    )
    this.print(`chaos: faults: ${faults || 'none'}${this.opts.meta === 'postgres' ? `; ${s.leaderTerms} leader terms over ${this.masters.length} masters on PostgreSQL` : ''}`)
    this.print(`chaos: committed ${s.files} files, ${s.chunks} chunks, ${(s.committedBytes / MiB).toFixed(1)} MiB; heal ${s.healMs === undefined ? 'not reached' : `${(s.healMs / 1000).toFixed(1)} s`} (bound ${((s.healBoundMs ?? 0) / 1000).toFixed(1)} s)`)
    const errors = Object.entries(s.clientErrors).sort((a, b) => b[1] - a[1])
    for (const [reason, n] of errors.slice(0, 6)) this.print(`chaos: client failures ×${n}: ${reason.slice(0, 300)}`)
    for (const w of s.warnings) this.print(`chaos: warning: ${w}`)
    if (passed) {
      this.print(`chaos: PASSED seed ${this.opts.seed}${kept ? `; folder kept: ${this.dir}` : ''}`)
      return
    }
    const byInvariant = new Map<Invariant, number>()
    for (const v of this.violations) byInvariant.set(v.invariant, (byInvariant.get(v.invariant) ?? 0) + 1)
    this.print(`chaos: FAILED seed ${this.opts.seed}: ${[...byInvariant].map(([k, n]) => `${k} ×${n}`).join(', ')}`)
    for (const [k] of byInvariant) this.print(`chaos:   ${k}: ${INVARIANTS[k]}`)
    this.print(`chaos: logs and REPORT.md kept in ${this.dir}`)
    this.print(`chaos: replay with: ${this.replay()}`)
  }
}

/** An error line with ids, ports, counts and paths blurred, so equal causes count together. */
function blur(line: string): string {
  return line
    .replace(/[0-9a-f]{12,}/g, 'ID')
    .replace(/\/tmp\/\S+/g, 'PATH')
    .replace(/\bn[1-5]\b/g, 'nX')
    .replace(/\b\d+\b/g, 'N')
    .slice(0, 400)
}

function chunkHashes(bytes: Buffer): string[] {
  const out: string[] = []
  for (let from = 0; from < bytes.length; from += CHUNK) out.push(createHash('sha256').update(bytes.subarray(from, from + CHUNK)).digest('hex'))
  return out
}
