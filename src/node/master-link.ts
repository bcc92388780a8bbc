import {randomBytes} from 'node:crypto'
import {setTimeout as sleep} from 'node:timers/promises'
import WebSocket from 'ws'
import {
  ChunkyError,
  type CredentialHashes,
  decode,
  type Hello,
  MAX_WS_PAYLOAD,
  MasterToNode,
  type NodeToMaster,
  PROTOCOL_VERSION,
  REPORT_BATCH_SIZE,
  type ReplicaInfo,
  WS_CLOSE,
} from '../protocol/index.js'
import type {StoreUsage} from '../storage/index.js'
import type {NodeMetrics} from '../telemetry/metrics.js'
import type {Logger} from '../util/log.js'

/** The commands a node carries out; `welcome` and `ack` are the link's own business. */
export type NodeCommand = Exclude<MasterToNode, {type: 'welcome'} | {type: 'ack'}>

/** Why the master refused this node for good: its credential, or its id (another node has it). */
export type LinkRefusal = 'credential' | 'id-in-use'

export interface MasterLinkOptions {
  /** The master's URL, or several comma-separated (`A,B`): the link goes to the one that leads. */
  masterUrl: string
  token: string
  /** CA certificates to trust for a wss:// master (undefined: the system's). */
  ca?: string[]
  heartbeatIntervalMs: number
  log: Logger
  /** Counts reconnects; optional so the link can run on its own (tests). */
  metrics?: NodeMetrics
  /** Who this node is, asked on every (re)connect. */
  identity(): {nodeId: string; url: string; zone: string}
  space(): Promise<StoreUsage>
  inventory(): AsyncIterable<ReplicaInfo>
  onCommand(command: NodeCommand): Promise<void>
  /** How long to wait for the master's `ack` of a `stored`. */
  ackTimeoutMs?: number
  /**
   * The master refused this node for good: its credential (401 unknown, 403 wrong kind), or its id,
   * in use by a connected node. Given: the link stops and calls this instead of retrying (retrying
   * cannot help). Not given: it keeps retrying.
   */
  onRefused?: (reason: string, refused: LinkRefusal) => void
}

interface PendingAck {
  resolve(): void
  reject(err: Error): void
  timer: NodeJS.Timeout
}

const MAX_BACKOFF_MS = 30_000
/**
 * A node gives up on a master it has heard nothing from for this long (or three heartbeats, if longer)
 * and dials again: a half-open TCP link never closes by itself. It asks a quiet master for a pong at half
 * of it, so this sets the master's idle load: at 15 s, a pong per node every 8 s.
 */
const MIN_SILENCE_MS = 15_000
/**
 * With several masters a silent one may be a paused leader that a standby replaced: the link gives up
 * on it sooner, and on a master that accepts TCP but never answers the upgrade (paused) as soon.
 */
const MIN_SILENCE_MS_OF_SEVERAL = 5_000

/** The WebSocket URL of a master given by its HTTP URL: ws(s)://host:port/ws. */
export function masterWsUrl(masterUrl: string): string {
  const url = new URL('/ws', masterUrl)
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:'
  return url.toString()
}

/** min(30 s, 0.5 s · 2^failures), jittered ±25% so a restarted master is not hit by every node at once. */
export function backoffMs(failures: number): number {
  const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(failures, 16))
  return Math.round(base * (0.75 + Math.random() * 0.5))
}

/**
 * The node's one connection to the master: hello, heartbeats, inventory reports, `stored`/`ack`
 * round trips, and commands. It reconnects with backoff until close(); a node is a member of the
 * cluster exactly while this link is open.
 */
export class MasterLink {
  /** Verifies write grants; learnt from `welcome`. Kept across reconnects: grants are checked by signature. */
  grantKey: string | undefined
  /** Hashes of the credentials the cluster accepts; learnt from `welcome`, kept across reconnects. */
  credentials: CredentialHashes | undefined
  /** The highest leader epoch seen per metadata store (welcomes and grants): anything older comes from a master that no longer leads. */
  private readonly epochs = new Map<string, number>()
  private readonly masters: string[]
  /** Which of `masters` this link dials (the one that welcomed it last). */
  private current = 0
  private ws: WebSocket | undefined
  private welcomed = false
  private everWelcomed = false
  private closing = false
  private readonly stopping = new AbortController()
  private running: Promise<void> | undefined
  private nextReqId = 1
  private readonly pending = new Map<number, PendingAck>()
  /** Rotten replicas found while the link was down: told after the next report, which still lists them. */
  private readonly unreportedCorrupt = new Map<string, {chunkId: string; version: number}>()

  constructor(private readonly opts: MasterLinkOptions) {
    this.masters = opts.masterUrl.split(',').map((url) => url.trim()).filter((url) => url !== '')
    if (this.masters.length === 0) throw new Error('no master URL given')
  }

  /** The master this link goes to now (with several, the leader once welcomed). */
  get masterUrl(): string {
    return this.masters[this.current]!
  }

  /**
   * Refuses a grant or welcome of a leader older than one already seen for the same store; remembers
   * a newer one. Undefined fence: a master that does not say (no fencing to do).
   */
  checkFence(fence: {storeId: string; epoch: number} | undefined, what: string): void {
    if (!fence) return
    const highest = this.epochs.get(fence.storeId) ?? 0
    if (fence.epoch < highest) {
      throw new ChunkyError('STALE_LEADER', `${what} comes from a master that no longer leads (epoch ${fence.epoch}, the leader's is ${highest}): ask the leader again`)
    }
    if (fence.epoch > highest) this.epochs.set(fence.storeId, fence.epoch)
  }

  get connected(): boolean {
    return this.welcomed && this.ws?.readyState === WebSocket.OPEN
  }

  start(): void {
    this.running ??= this.run()
  }

  /** Sends one message; rejects when the link is down (the caller decides whether that matters). */
  send(message: NodeToMaster): Promise<void> {
    const ws = this.ws
    if (!ws || !this.welcomed || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error('not connected to the master'))
    }
    return new Promise((resolve, reject) => ws.send(JSON.stringify(message), (err) => (err ? reject(err) : resolve())))
  }

  /** Tells the master a replica is durable here and waits for its ack; only an ok ack counts. */
  async confirmStored(replica: ReplicaInfo): Promise<void> {
    const reqId = this.nextReqId++
    const timeoutMs = this.opts.ackTimeoutMs ?? 10_000
    const acked = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(reqId)
        reject(new Error(`the master did not acknowledge within ${timeoutMs / 1000}s`))
      }, timeoutMs)
      this.pending.set(reqId, {resolve, reject, timer})
    })
    acked.catch(() => {}) // observed below; this stops an unhandled rejection if send() throws first
    try {
      await this.send({type: 'stored', reqId, replica})
    } catch (err) {
      this.settle(reqId, err as Error)
    }
    return acked
  }

  /**
   * Tells the master a replica here is rotten (scrub, verify, a read). When the link is down it is said
   * after the next report: the report lists the replica by its name, which still carries the right
   * checksum, so without this the master would count the rotten copy as fresh until the next scrub.
   */
  async reportCorrupt(chunkId: string, version: number): Promise<void> {
    const key = `${chunkId}.${version}`
    this.unreportedCorrupt.set(key, {chunkId, version})
    if (!this.connected) return
    await this.send({type: 'corrupt', chunkId, version})
    this.unreportedCorrupt.delete(key)
  }

  private async flushCorrupt(): Promise<void> {
    for (const [key, {chunkId, version}] of [...this.unreportedCorrupt]) {
      await this.send({type: 'corrupt', chunkId, version})
      this.unreportedCorrupt.delete(key)
    }
  }

  /** Sends the full inventory in batches of REPORT_BATCH_SIZE, one reportId, `done` on the last (even when empty). */
  async sendInventory(): Promise<void> {
    const reportId = randomBytes(8).toString('hex')
    let batch: ReplicaInfo[] = []
    for await (const replica of this.opts.inventory()) {
      batch.push(replica)
      if (batch.length === REPORT_BATCH_SIZE) {
        await this.send({type: 'report', reportId, done: false, replicas: batch}) // awaits the socket: bounded memory
        batch = []
      }
    }
    await this.send({type: 'report', reportId, done: true, replicas: batch})
  }

  async close(): Promise<void> {
    // Say goodbye first, so the master shows this node dead at once rather than after --node-timeout.
    if (this.connected) await this.send({type: 'leaving'}).catch(() => {})
    this.closing = true
    this.stopping.abort()
    this.ws?.close(WS_CLOSE.GOING_AWAY, 'node shutting down')
    const ws = this.ws
    const kill = setTimeout(() => ws?.terminate(), 1000) // do not wait ws's 30 s for a closing handshake
    await this.running
    clearTimeout(kill)
  }

  private async run(): Promise<void> {
    let failures = 0
    while (!this.closing) {
      const {welcomed, reason, refused} = await this.connectOnce()
      if (this.closing) break
      if (!welcomed && !refused && this.masters.length > 1) {
        // Another master may lead now (this one stands by, or is gone): try each once before backing off.
        this.current = (this.current + 1) % this.masters.length
        if (this.current !== 0) continue
      }
      if (refused && this.opts.onRefused) {
        this.opts.log.error({event: 'master.refused', master: this.masterUrl, reason}, `${reason}: not retrying`)
        this.opts.onRefused(reason ?? 'the master refused this node', refused)
        break
      }
      if (welcomed) failures = 0
      const delay = backoffMs(failures++)
      this.opts.log.warn(
        {event: 'master.lost', master: this.masterUrl, retryInMs: delay, reason},
        `lost master link, retrying in ${(delay / 1000).toFixed(1)}s${reason ? ` (${reason})` : ''}`,
      )
      try {
        await sleep(delay, undefined, {signal: this.stopping.signal})
      } catch {
        break // closing
      }
    }
  }

  /** One connection, from dial to close. Resolves (never rejects) with whether the master welcomed us. */
  private connectOnce(): Promise<{welcomed: boolean; reason?: string; refused?: LinkRefusal}> {
    return new Promise((resolve) => {
      const ws = new WebSocket(masterWsUrl(this.masterUrl), {
        headers: {authorization: `Bearer ${this.opts.token}`},
        maxPayload: MAX_WS_PAYLOAD,
        handshakeTimeout: this.minSilenceMs(),
        ...(this.opts.ca ? {ca: this.opts.ca} : {}),
      })
      this.ws = ws
      let welcomed = false
      let reason: string | undefined
      let refused: LinkRefusal | undefined
      let heartbeat: NodeJS.Timeout | undefined
      let silence: NodeJS.Timeout | undefined
      let silenceMs = Math.max(3 * this.opts.heartbeatIntervalMs, this.minSilenceMs())
      let lastHeardMs = Date.now()
      let pinged = false
      const stillThere = () => {
        // a half-open TCP link never closes by itself: anything heard from the master (pings too) proves it is there
        lastHeardMs = Date.now()
        pinged = false
        clearTimeout(silence)
        silence = setTimeout(() => {
          reason = `nothing heard from the master for ${silenceMs / 1000}s`
          ws.terminate()
        }, silenceMs)
      }

      ws.on('error', (err) => {
        reason ??= err.message // 'close' follows; with no listener an 'error' would crash the process
      })
      ws.on('unexpected-response', (req, res) => {
        // The master answered the upgrade with an error (401 wrong credential, 403 wrong kind): say why.
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (part: string) => (text = (text + part).slice(0, 2000)))
        res.on('error', () => {})
        res.on('end', () => {
          let detail = `HTTP ${res.statusCode}`
          try {
            detail += `: ${(JSON.parse(text) as {error: {message: string}}).error.message}`
          } catch {
            // no ErrorBody: the status says enough
          }
          reason = `the master refused this node's link (${detail})`
          if (res.statusCode === 401 || res.statusCode === 403) refused = 'credential'
          req.destroy()
          ws.terminate()
        })
      })
      ws.on('open', () => {
        stillThere()
        this.sendHello(ws).catch((err: Error) => {
          reason = `hello failed: ${err.message}`
          ws.terminate()
        })
      })
      ws.on('ping', stillThere)
      ws.on('pong', stillThere)
      ws.on('message', (data, isBinary) => {
        stillThere()
        let message: MasterToNode
        try {
          if (isBinary) throw new Error('binary frame')
          message = decode(MasterToNode, data as Buffer)
        } catch (err) {
          const error = (err as Error).message.slice(0, 200)
          this.opts.log.warn({event: 'master.malformed', error}, `ignored a malformed message from the master: ${error}`)
          return
        }
        if (message.type === 'welcome') {
          try {
            this.checkFence(message.fence, `the welcome of ${this.masterUrl}`)
          } catch (err) {
            reason = (err as Error).message
            ws.terminate()
            return
          }
          this.grantKey = message.grantKey
          if (message.credentials) this.credentials = message.credentials
          const wasWelcomed = welcomed
          welcomed = true
          this.welcomed = true
          silenceMs = Math.max(3 * Math.max(this.opts.heartbeatIntervalMs, message.heartbeatMs), this.minSilenceMs())
          stillThere()
          if (wasWelcomed) return
          if (this.everWelcomed) this.opts.metrics?.masterReconnects.inc()
          this.everWelcomed = true
          this.opts.log.info({event: 'master.connected', master: this.masterUrl, epoch: message.fence?.epoch}, 'connected to master')
          heartbeat = setInterval(() => {
            this.sendHeartbeat()
            // Heartbeats get no answer, so a quiet master is asked for a pong before the silence runs out.
            // Only when quiet: a pong per heartbeat was a third of an idle master's CPU at thousands of nodes.
            if (ws.readyState === WebSocket.OPEN && !pinged && Date.now() - lastHeardMs >= silenceMs / 2) {
              pinged = true
              ws.ping()
            }
          }, this.opts.heartbeatIntervalMs)
          this.sendInventory()
            .then(() => this.flushCorrupt())
            .catch((err: Error) => this.opts.log.warn({event: 'report.failed', error: err.message}, `chunk report failed: ${err.message}`))
          return
        }
        if (message.type === 'ack') {
          // A refusal is the master's verdict on the replica (not planned, or older than committed), not a lost link.
          this.settle(message.reqId, message.ok ? undefined : new ChunkyError('VERSION_CONFLICT', `the master refused: ${message.error ?? 'no reason given'}`))
          return
        }
        if (!welcomed) {
          this.opts.log.warn({event: 'master.early_command', type: message.type}, `ignored a ${message.type} command before welcome`)
          return
        }
        this.opts.onCommand(message).catch((err: Error) =>
          this.opts.log.warn({event: 'command.failed', type: message.type, error: err.message}, `${message.type} failed: ${err.message}`),
        )
      })
      ws.on('close', (code, why) => {
        clearInterval(heartbeat)
        clearTimeout(silence)
        this.welcomed = false
        if (this.ws === ws) this.ws = undefined
        for (const reqId of [...this.pending.keys()]) this.settle(reqId, new Error('lost the master link before its ack'))
        if (code !== 1000 && code !== 1005 && code !== 1006 && !reason) reason = `closed ${code}${why.length ? `: ${why.toString()}` : ''}`
        // Another node with this id is connected: at start that is a mistake to stop on (a second node on
        // a copied data dir or a repeated --id); after having been a member, it is our own old link that
        // the master has not seen die yet, and retrying gets in once it has.
        if (code === WS_CLOSE.DUPLICATE_ID && !this.everWelcomed) {
          refused = 'id-in-use'
          reason = `the master refused this node: ${why.toString() || 'its id is in use by a connected node'}`
        }
        resolve({welcomed, reason, refused})
      })
    })
  }

  private minSilenceMs(): number {
    return this.masters.length > 1 ? MIN_SILENCE_MS_OF_SEVERAL : MIN_SILENCE_MS
  }

  private async sendHello(ws: WebSocket): Promise<void> {
    const space = await this.opts.space()
    const hello: Hello = {type: 'hello', v: PROTOCOL_VERSION, ...this.opts.identity(), ...space}
    await new Promise<void>((resolve, reject) => ws.send(JSON.stringify(hello), (err) => (err ? reject(err) : resolve())))
  }

  private sendHeartbeat(): void {
    this.opts
      .space()
      .then((space) => this.send({type: 'heartbeat', ...space}))
      .catch(() => {}) // a dropped link shows up in 'close'; nothing to add here
  }

  private settle(reqId: number, err?: Error): void {
    const waiting = this.pending.get(reqId)
    if (!waiting) return // late or unknown ack: its waiter already timed out
    this.pending.delete(reqId)
    clearTimeout(waiting.timer)
    if (err) waiting.reject(err)
    else waiting.resolve()
  }
}
