import type {IncomingMessage, Server, ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'
import type {Duplex} from 'node:stream'
import {WebSocketServer} from 'ws'
import {authorize} from '../http/auth.js'
import {countAsNodeLink, createEdgeServer, DEFAULT_LIMITS, type HttpLimits, type TlsFiles} from '../http/limits.js'
import {sendError, sendJson, toChunkyError} from '../http/server.js'
import {ChunkyError, credentialHashes, MAX_WS_PAYLOAD, WS_CLOSE, type MasterHealth} from '../protocol/index.js'
import {systemClock, type Clock} from '../util/clock.js'
import {MasterMetrics} from '../telemetry/metrics.js'
import {silentLogger, type Logger} from '../util/log.js'
import {formatDuration} from '../util/parse.js'
import {createMasterContext} from './context.js'
import {createDashboard, type LiveOptions} from './dashboard/index.js'
import {lockDataDir, openDatabase, type Db} from './db.js'
import {Drains} from './drain.js'
import {createHttpApi} from './http-api.js'
import {NodeLinks} from './node-link.js'
import {RepairLoop, UPLOAD_TTL_MS} from './repair-loop.js'
import {ReplicaRecords} from './replicas.js'
import type {LeaderInfo, Leadership, MetaStore} from './meta-store.js'
import {MetaSync, WarmCopy} from './meta-sync.js'
import {PostgresMetaStore} from './postgres-meta-store.js'
import {SqliteMetaStore} from './sqlite-meta-store.js'
import {TusSessions} from './tus-sessions.js'
import {Uploads} from './uploads.js'
import {Views} from './views.js'

export interface MasterOptions {
  /** Bind address, e.g. '127.0.0.1'. */
  host: string
  /** 0 = any free port. */
  port: number
  /** SQLite lives here (created, recursively). */
  dataDir: string
  /** R, default 3. */
  replicas: number
  /** W, default min(2, R); must be 1..R. */
  minReplicas: number
  /** Silence after which a node is dead; default 10_000. */
  nodeTimeoutMs: number
  /** Default 5_000. */
  repairIntervalMs: number
  /** Unfinished uploads (CLI and tus) are forgotten this long after they began; default 24h. */
  uploadExpiryMs?: number
  /** Unfinished tus uploads one node may have created; default 1000. */
  maxTusSessionsPerNode?: number
  /** Move copies from the fullest nodes to the emptiest while nothing needs repair (default true). */
  rebalance?: boolean
  /** The cluster secret, never empty: valid for everything; node, rw and ro credentials are derived from it. */
  token: string
  /** Serve HTTPS and WSS with this certificate. */
  tls?: TlsFiles
  /** Overrides of the HTTP edge limits (tests use short timeouts). */
  limits?: Partial<HttpLimits>
  /** Overrides of the dashboard's live stream timing and limit (tests). */
  live?: Partial<LiveOptions>
  log?: Logger
  clock?: Clock
  /** Where the metadata lives: `sqlite:DIR` / undefined (the data dir's SQLite) or a postgres:// URL (several masters, one leads). */
  meta?: string
  /** The URL other masters, nodes and clients reach this one at (a standby tells them the leader's); default http(s)://HOST:PORT. */
  advertise?: (port: number) => string
}

export interface RunningMaster {
  /** http(s)://HOST:PORT with the real port. */
  url: string
  port: number
  close(): Promise<void>
}

/** Persist heartbeats (kept in memory between) this often. */
const PERSIST_NODES_MS = 5_000
/** Changes made outside a request (expiry, a report's version above any handed out) reach the store this often. */
const FLUSH_MS = 200
/** A standby reads the leader's new writes from the store this often. */
const FOLLOW_MS = 500
/** A step of the committed-bytes count this often: 10,000 chunks a second, a million in under two minutes. */
const COUNT_STEP_MS = 250

/** What one term of leading serves; it ends with close() when the master steps down or stops. */
interface Term {
  http(req: IncomingMessage, res: ServerResponse): void
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void
  close(): Promise<void>
}

export async function startMaster(opts: MasterOptions): Promise<RunningMaster> {
  checkOptions(opts)
  const log = opts.log ?? silentLogger
  const lock = lockDataDir(opts.dataDir) // one master per data dir: a second one stops here
  let db: Db | undefined
  let store: MetaStore
  let postgres: PostgresMetaStore | undefined
  try {
    db = openDatabase(opts.dataDir, {workingCopy: isPostgresUrl(opts.meta)})
    if (isPostgresUrl(opts.meta)) {
      // A paused leader loses the lock after one node timeout: a standby leads within that plus its retry.
      store = postgres = new PostgresMetaStore(opts.meta, {leaseMs: opts.nodeTimeoutMs, log})
      await postgres.init()
    } else {
      store = new SqliteMetaStore(db)
    }
  } catch (err) {
    db?.close()
    lock.release()
    throw err
  }
  const workingCopy = db
  const warm = postgres ? new WarmCopy(workingCopy, postgres, log) : undefined

  let term: Term | undefined
  /** Where the leader is, as the store said last (what a standby answers). */
  let known: LeaderInfo | undefined
  const leading = () => term !== undefined && (postgres === undefined || postgres.holdsLease())

  const standby = createStandbyApi(() => known)
  const server = createEdgeServer((req, res) => (leading() ? term!.http(req, res) : standby.http(req, res)), {tls: opts.tls, limits: opts.limits, log: (line) => log.warn({event: 'http.peer_limit'}, line)})
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {}) // a peer that resets mid-upgrade must not crash the master
    if (leading()) return term!.upgrade(req, socket, head)
    refuseUpgrade(socket, '503 Service Unavailable', notLeader(known))
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject)
      resolve()
    })
  }).catch(async (err) => {
    await store.close()
    workingCopy.close()
    lock.release()
    throw err
  })
  const port = (server.address() as AddressInfo).port
  const shownHost = opts.host.includes(':') ? `[${opts.host}]` : opts.host
  const url = `${opts.tls ? 'https' : 'http'}://${shownHost}:${port}`
  const advertised = opts.advertise?.(port) ?? url

  const stopping = new AbortController()
  /** One term after the other: lead, serve until leadership is lost, step down, stand by again. */
  const serve = async (leadership: Leadership): Promise<void> => {
    known = {epoch: leadership.epoch, url: advertised}
    let lost!: (reason: string) => void
    const ended = new Promise<string>((resolve) => (lost = resolve))
    store.onLost((reason) => lost(reason))
    let sync: MetaSync | undefined
    if (warm) {
      const started = Date.now()
      await warm.stop()
      const waitedMs = Date.now() - started // for a load under way (a standby that had just started)
      // The epoch is raised: no older leader can write past the log's end now, so this misses nothing.
      const caught = await warm.catchUp().catch(async (err: unknown) => {
        await postgres!.release() // let another master try
        throw err
      })
      warm.forget() // this term writes to the copy
      sync = new MetaSync(workingCopy, store, leadership.epoch, (err) => lost(err.message))
      const what = caught.full ? `loaded ${caught.rows} metadata rows` : `applied ${caught.rows} changes the standby had not seen yet`
      const waited = waitedMs >= 100 ? ` (${waitedMs} ms of it waiting for the working copy's load under way)` : ''
      log.info({event: 'master.leading', epoch: leadership.epoch, full: caught.full, rows: caught.rows, waitedMs, ms: Date.now() - started}, `leading (epoch ${leadership.epoch}): ${what} in ${Date.now() - started} ms${waited}`)
    }
    term = startTerm({...opts, log, clock: opts.clock ?? systemClock}, workingCopy, {epoch: leadership.epoch, storeId: leadership.storeId}, sync, advertised)
    const reason = await Promise.race([ended, new Promise<string>((resolve) => stopping.signal.addEventListener('abort', () => resolve('stopping'), {once: true}))])
    const ending = term
    term = undefined
    await ending.close()
    if (reason === 'stopping') return
    log.error({event: 'master.stepped_down', epoch: leadership.epoch, reason}, `no longer leading (epoch ${leadership.epoch}): ${reason}; standing by`)
    await postgres?.release()
  }
  const takeOver = async () => {
    warm?.follow(FOLLOW_MS) // standing by: keep the working copy current while waiting for the lock
    return serve(await store.lead(advertised, stopping.signal))
  }
  let elections: Promise<void> = Promise.resolve()
  if (postgres) {
    const watch = setInterval(() => {
      if (!leading()) postgres.leader().then((info) => (known = info), () => {})
    }, 1000)
    elections = (async () => {
      while (!stopping.signal.aborted) {
        await takeOver().catch((err: unknown) => {
          if (!stopping.signal.aborted) log.error({event: 'master.lead_failed', error: (err as Error).message}, `taking over failed: ${(err as Error).message}`)
        })
      }
      clearInterval(watch)
    })()
  } else {
    // SQLite: one master per data dir, so this one leads at once, and for good.
    elections = serve(await store.lead(advertised, stopping.signal))
    if (!term) {
      await elections.catch(async (err: unknown) => {
        await closeHttp(server)
        workingCopy.close()
        lock.release()
        throw err
      })
    }
  }

  let closing: Promise<void> | undefined
  const close = () =>
    (closing ??= (async () => {
      stopping.abort()
      await warm?.stop(true) // a load under way ends at its next page; no takeover starts after the abort
      await elections.catch(() => {})
      await closeHttp(server)
      await store.close()
      workingCopy.close()
      lock.release()
    })())

  return {url, port, close}
}

function isPostgresUrl(meta: string | undefined): meta is string {
  return meta !== undefined && /^postgres(ql)?:\/\//.test(meta)
}

function notLeader(known: LeaderInfo | undefined): ChunkyError {
  return new ChunkyError(
    'NOT_LEADER',
    known?.url ? `this master is a standby: the leader is ${known.url}` : 'this master is a standby and no master leads yet: try again in a few seconds',
  )
}

/** A standby answers /healthz with where the leader is, and refuses everything else with the same hint. */
function createStandbyApi(known: () => LeaderInfo | undefined) {
  return {
    http(req: IncomingMessage, res: ServerResponse) {
      const info = known()
      if (req.method === 'GET' && (req.url ?? '').split('?')[0] === '/healthz') {
        return sendJson(res, 200, {ok: true, role: 'standby', epoch: info?.epoch ?? 0, leader: info?.url || null} satisfies MasterHealth)
      }
      if (info?.url) res.setHeader('x-chunky-leader', info.url)
      sendError(res, notLeader(info))
    },
  }
}

function refuseUpgrade(socket: Duplex, status: string, err: ChunkyError): void {
  const body = JSON.stringify({error: {code: err.code, message: err.message}})
  const lines = `HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}`
  socket.end(`${lines}\r\n\r\n${body}`, () => socket.destroy())
}

/** The leader's master: node links, uploads, repair, views and the dashboard on the working copy. */
function startTerm(opts: MasterOptions & {log: Logger; clock: Clock}, db: Db, leadership: Leadership, sync: MetaSync | undefined, url: string): Term {
  const {log, clock} = opts
  const metrics = new MasterMetrics()
  const ctx = createMasterContext({db, clock, log, metrics, nodeTimeoutMs: opts.nodeTimeoutMs, replicas: opts.replicas, minReplicas: opts.minReplicas, leadership, durable: sync && (() => sync.flush())})
  const {nodes} = ctx
  const uploads = new Uploads(ctx)
  const uploadExpiryMs = opts.uploadExpiryMs ?? UPLOAD_TTL_MS
  const tus = new TusSessions(ctx, uploads, {expiryMs: uploadExpiryMs, maxOpenPerNode: opts.maxTusSessionsPerNode ?? 1000})
  const heartbeatMs = Math.max(100, Math.round(opts.nodeTimeoutMs / 5))
  const repair = new RepairLoop(ctx, () => tus.expire() + uploads.expire(uploadExpiryMs), opts.rebalance ?? true, 3 * heartbeatMs, uploadExpiryMs)
  const records = new ReplicaRecords(ctx)
  const drains = new Drains(ctx)
  const views = new Views(ctx, (nodeId) => repair.loadOf(nodeId), (nodeId) => repair.unreachable(nodeId), drains, () => repair.counts())
  const credentials = credentialHashes(opts.token)
  const links = new NodeLinks(ctx, records, repair, heartbeatMs, credentials)
  metrics.attach({
    nodes: () => {
      const alive = nodes.aliveIds().length
      return {alive, dead: nodes.all().length - alive}
    },
    heartbeatAges: () => nodes.all().map((node) => ({nodeId: node.id, seconds: node.lastHeartbeatMs === null ? null : Math.max(0, clock.now() - node.lastHeartbeatMs) / 1000})),
    cluster: () => views.summaryForMetrics(),
    repair: () => repair.queue(),
  })

  const dashboard = createDashboard(ctx, {repairProgress: () => repair.progress(), health: () => views.summaryForMetrics(), nodeState: (nodeId) => drains.state(nodeId)}, opts.live)
  const persist = sync
    ? () =>
        sync.flush().catch((err: Error) => {
          throw new ChunkyError('NOT_LEADER', `this master could not record the change in PostgreSQL and no longer leads (${err.message}): try again`)
        })
    : async () => {}
  const http = createHttpApi({ctx, uploads, tus, views, credentials, dashboard, balance: () => repair.balance(), persist, leader: url})
  // Every message is JSON checked by its schema after decoding, so ws's own UTF-8 check of each frame
  // (a few per cent of an idle master at thousands of nodes) adds nothing: bad bytes decode to U+FFFD.
  const wss = new WebSocketServer({noServer: true, maxPayload: MAX_WS_PAYLOAD, skipUTF8Validation: true})
  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if ((req.url ?? '').split('?')[0] !== '/ws') return refuseUpgrade(socket, '404 Not Found', new ChunkyError('NOT_FOUND', 'WebSocket links go to /ws'))
    try {
      authorize(req, credentials, 'node') // a node with a wrong credential never says hello, so never shows in status
      if (!countAsNodeLink(req.socket)) throw new ChunkyError('BUSY', `this address holds the most node links it may (${{...DEFAULT_LIMITS, ...opts.limits}.maxNodeLinksPerPeer})`)
    } catch (err) {
      const refused = toChunkyError(err)
      metrics.requestErrors.inc({status: refused.status, code: refused.code})
      log.warn({event: 'node.link_refused', remote: req.socket.remoteAddress, code: refused.code}, `refused a node link from ${req.socket.remoteAddress}: ${refused.message}`)
      const line = {403: '403 Forbidden', 503: '503 Service Unavailable'}[refused.status] ?? '401 Unauthorized'
      return refuseUpgrade(socket, line, refused)
    }
    wss.handleUpgrade(req, socket, head, (ws) => links.accept(ws, `${req.socket.remoteAddress}:${req.socket.remotePort}`))
  }

  const timeoutText = opts.nodeTimeoutMs % 1000 === 0 ? `${opts.nodeTimeoutMs / 1000}s` : formatDuration(opts.nodeTimeoutMs)
  let lastPersist = clock.now()
  const sweepEveryMs = Math.max(50, Math.min(1000, Math.round(opts.nodeTimeoutMs / 4)))
  let lastSweepMs = performance.now()
  let skippedSweep = false
  const sweepLiveness = () => {
    // A sweep that fires late follows a blocked event loop: the heartbeats of that time sit unread
    // in the sockets, so this turn is skipped (once) to read them before anyone is judged silent.
    const now = performance.now()
    const late = now - lastSweepMs > 2 * sweepEveryMs
    lastSweepMs = now
    if (late && !skippedSweep) {
      skippedSweep = true
      return
    }
    skippedSweep = false
    try {
      for (const nodeId of nodes.sweep()) {
        log.info({event: 'node.dead', nodeId, timeoutMs: opts.nodeTimeoutMs}, `node ${nodeId} is dead (no heartbeat for ${timeoutText})`)
      }
      if (clock.now() - lastPersist >= PERSIST_NODES_MS) {
        lastPersist = clock.now()
        nodes.persist()
      }
    } catch (err) {
      log.error({event: 'liveness.failed', error: (err as Error).message}, `liveness sweep failed: ${(err as Error).message}`)
    }
  }
  // setImmediate: the sweep runs after this turn's poll phase, so heartbeats that arrived are read first.
  const sweep = setInterval(() => setImmediate(sweepLiveness), sweepEveryMs)
  // A new leader of a shared store gives every node one --node-timeout to reconnect and report before repairing.
  let repairTimer: NodeJS.Timeout | undefined
  const countTimer = setInterval(() => repair.countCommittedBytes(), COUNT_STEP_MS)
  const repairStart = setTimeout(() => {
    repairTimer = setInterval(() => repair.runSafely(), opts.repairIntervalMs)
  }, sync ? opts.nodeTimeoutMs : 0)
  const flushTimer = sync ? setInterval(() => void sync.flush().catch(() => {}), FLUSH_MS) : undefined

  return {
    http,
    upgrade,
    async close() {
      clearInterval(sweep)
      clearTimeout(repairStart)
      clearInterval(repairTimer)
      clearInterval(countTimer)
      clearInterval(flushTimer)
      repair.stop()
      dashboard.close()
      nodes.closeAll(WS_CLOSE.GOING_AWAY, 'master shutting down')
      await closeWebSockets(wss)
      try {
        nodes.persist(true)
      } catch {
        // best effort: last heartbeats are a convenience for status after a restart
      }
    },
  }
}

function checkOptions(opts: MasterOptions): void {
  const problems: string[] = []
  if (!Number.isInteger(opts.replicas) || opts.replicas < 1) problems.push('--replicas must be a whole number ≥ 1')
  if (!Number.isInteger(opts.minReplicas) || opts.minReplicas < 1 || opts.minReplicas > opts.replicas) {
    problems.push(`--min-replicas must be between 1 and --replicas (${opts.replicas})`)
  }
  if (!(opts.nodeTimeoutMs > 0)) problems.push('--node-timeout must be positive')
  if (!(opts.repairIntervalMs > 0)) problems.push('--repair-interval must be positive')
  if (!opts.token) problems.push('a cluster secret is needed (--secret, --secret-file or CHUNKY_SECRET)')
  if (problems.length > 0) throw new Error(problems.join('; '))
}

/** Closes every link with 1001; a peer that does not finish the close handshake in 1s is cut. */
async function closeWebSockets(wss: WebSocketServer): Promise<void> {
  for (const ws of wss.clients) ws.close(WS_CLOSE.GOING_AWAY, 'master shutting down')
  const deadline = Date.now() + 1000
  while (wss.clients.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  for (const ws of wss.clients) ws.terminate()
  await new Promise<void>((resolve) => wss.close(() => resolve()))
}

/** Stops accepting, ends idle keep-alive sockets, and cuts busy ones that take longer than 2s. */
async function closeHttp(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()))
  server.closeIdleConnections()
  const timer = setTimeout(() => server.closeAllConnections(), 2000)
  await closed
  clearTimeout(timer)
}
