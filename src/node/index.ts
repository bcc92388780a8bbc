import {randomBytes} from 'node:crypto'
import type {AddressInfo} from 'node:net'
import {rootCertificates} from 'node:tls'
import {mkdir} from 'node:fs/promises'
import {join} from 'node:path'
import {createEdgeServer, type HttpLimits, type TlsFiles} from '../http/limits.js'
import {claimedKind, credentialHash, type CredentialHashes, DEFAULT_CHUNK_SIZE, NodeId} from '../protocol/index.js'
import {FileChunkStore} from '../storage/index.js'
import {NodeMetrics} from '../telemetry/metrics.js'
import {silentLogger, withFields, type Logger} from '../util/log.js'
import {ByteBudget} from './byte-budget.js'
import {commandHandler} from './commands.js'
import type {NodeContext} from './context.js'
import {InflightWork} from './inflight.js'
import {ManifestCache} from './manifests.js'
import {MasterLink, type LinkRefusal} from './master-link.js'
import {loadOrCreateNodeId} from './node-id.js'
import {nodeRequestHandler} from './routes.js'
import {Scrubber, type ScrubResult} from './scrub.js'
import {TUS_MEMORY_BUDGET} from './tus.js'
import {TusMaster} from './tus-master.js'
import {TusTails} from './tus-tails.js'
import {trackVersions, VersionFloor} from './version-floor.js'

export type {LinkRefusal}

export interface NodeOptions {
  /** http(s)://host:port of the master; its WebSocket is ws(s)://host:port/ws */
  masterUrl: string
  host: string
  /** 0 = any free port */
  port: number
  /** What others use to reach this node; default http://HOST:REALPORT */
  publicUrl?: string
  /** Default: DATA_DIR/node-id, else a new `node-<6 hex>` persisted there */
  id?: string
  zone: string
  dataDir: string
  heartbeatIntervalMs: number
  /** 0 = off */
  scrubIntervalMs: number
  /** This node's credential: the node credential `chunky master` prints (or the cluster secret). */
  token: string
  /** Serve HTTPS with this certificate (the default public URL is then https://). */
  tls?: TlsFiles
  /** PEM CA certificate(s) to trust, besides the system's, for the master and other nodes. */
  ca?: string | string[]
  /** Overrides of the HTTP edge limits (tests use short timeouts). */
  limits?: Partial<HttpLimits>
  log?: Logger
  /** Origins whose web pages may read files from this node (`--cors-origin`); '*' for any. */
  corsOrigins?: string[]
  /** Bytes all tus PATCHes may hold in memory at once; default TUS_MEMORY_BUDGET (256 MiB), at least one chunk. */
  tusMemoryBytes?: number
  /** The master refused this node's credential or its id: the link stops instead of retrying (see MasterLink). */
  onLinkRefused?: (reason: string, refused: LinkRefusal) => void
}

export interface RunningNode {
  /** public URL */
  url: string
  id: string
  port: number
  close(): Promise<void>
  /** One scrub pass now (tests, commands); also runs every scrubIntervalMs. */
  scrubNow(): Promise<ScrubResult>
}

/** How long close() lets writes in flight finish before cutting them off (their temp files are removed). */
const CLOSE_GRACE_MS = 1000

/**
 * Starts a storage node: opens the chunk store (cleaning what a crash left), listens for HTTP, and
 * links to the master in the background (reconnecting with backoff). Resolves once it listens.
 */
export async function startNode(opts: NodeOptions): Promise<RunningNode> {
  const tusMemory = opts.tusMemoryBytes ?? TUS_MEMORY_BUDGET
  if (tusMemory < DEFAULT_CHUNK_SIZE) throw new Error(`the tus memory budget must hold at least one chunk (${DEFAULT_CHUNK_SIZE} bytes), not ${tusMemory}`)
  const tusBudget = new ByteBudget(tusMemory)
  const metrics = new NodeMetrics()
  await mkdir(opts.dataDir, {recursive: true})
  const id = opts.id ?? (await loadOrCreateNodeId(opts.dataDir))
  if (!NodeId.safeParse(id).success) throw new Error(`"${id}" is not a valid node id: use 1-64 letters, digits, ".", "_" or "-"`)
  const log = withFields(opts.log ?? silentLogger, {nodeId: id})
  const diskStore = await FileChunkStore.open(join(opts.dataDir, 'chunks'), {log})
  const versions = new VersionFloor()
  for await (const replica of diskStore.list()) versions.held(replica.chunkId, replica.version)
  const store = trackVersions(diskStore, versions)
  const ca = opts.ca === undefined ? undefined : [...rootCertificates, ...(Array.isArray(opts.ca) ? opts.ca : [opts.ca])]
  const inflight = new InflightWork()
  let publicUrl = opts.publicUrl ?? '' // known once listening; the link only asks after start()

  const link = new MasterLink({
    masterUrl: opts.masterUrl,
    token: opts.token,
    ca,
    heartbeatIntervalMs: opts.heartbeatIntervalMs,
    log,
    metrics,
    identity: () => ({nodeId: id, url: publicUrl, zone: opts.zone}),
    space: () => store.usage(),
    inventory: () => store.list(),
    onCommand: (command) => onCommand(command), // commands arrive only after start(), below
    onRefused: opts.onLinkRefused,
  })
  const ownOnly = ownCredentialOnly(opts.token)
  const ctx: NodeContext = {
    id,
    token: opts.token,
    store,
    inflight,
    log,
    metrics,
    link,
    closing: false,
    credentials: () => link.credentials ?? ownOnly,
    versions,
    ca,
    limits: opts.limits,
    ranges: diskStore,
    manifests: new ManifestCache({masterUrl: () => link.masterUrl, token: opts.token, ca}), // the leader the link follows
    cors: opts.corsOrigins?.length ? {origins: opts.corsOrigins} : undefined,
    tus: {
      master: new TusMaster({masterUrl: opts.masterUrl, token: opts.token, ca}),
      tails: await TusTails.open(join(opts.dataDir, 'tus')),
      publicUrl: () => publicUrl,
      busy: new Set(),
      budget: tusBudget,
      uploads: new Map(),
    },
  }
  const onCommand = commandHandler(ctx)
  metrics.attach({connected: () => link.connected, usage: () => store.usage(), tusMemory: () => tusBudget})

  // Slow clients must not hold sockets forever, but a 10 MiB chunk on a slow link needs minutes (limits.ts).
  const server = createEdgeServer(nodeRequestHandler(ctx), {tls: opts.tls, limits: opts.limits, log: (line) => log.warn({event: 'http.peer_limit'}, line)})
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const port = (server.address() as AddressInfo).port
  publicUrl ||= `${opts.tls ? 'https' : 'http'}://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}`

  const scrubber = new Scrubber({
    store,
    intervalMs: opts.scrubIntervalMs,
    log,
    metrics,
    onCorrupt: (r) => link.reportCorrupt(r.chunkId, r.version),
  })
  link.start()
  scrubber.start()

  let closing: Promise<void> | undefined
  return {
    url: publicUrl,
    id,
    port,
    scrubNow: () => scrubber.scrubOnce(),
    close: () =>
      (closing ??= (async () => {
        // Stop new work first; in-flight writes keep the link so their `stored` can still be acked.
        ctx.closing = true
        await scrubber.stop()
        const httpClosed = new Promise<void>((resolve) => server.close(() => resolve()))
        server.closeIdleConnections()
        await inflight.drain(CLOSE_GRACE_MS)
        await link.close()
        server.closeAllConnections()
        await httpClosed
      })()),
  }
}

/**
 * Until the master's `welcome` says which credentials the cluster accepts, a node accepts only its
 * own, as the kind its prefix names (no prefix: the cluster secret). Unknown slots get a hash nothing matches.
 */
function ownCredentialOnly(token: string): CredentialHashes {
  const nothing = () => credentialHash(randomBytes(32).toString('hex'))
  const hashes: CredentialHashes = {admin: nothing(), node: nothing(), rw: nothing(), ro: nothing()}
  hashes[claimedKind(token) ?? 'admin'] = credentialHash(token)
  return hashes
}
