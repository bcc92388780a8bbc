import {
  ChunkyError,
  NEVER_HEARD_MS,
  type FileManifest,
  type NodeInfo,
  type NodeInfoList,
  type PrefixFileList,
  type StatusDoc,
  type Target,
} from '../protocol/index.js'
import type {MasterContext} from './context.js'
import {Drains} from './drain.js'
import {REPLICA_STATE_SQL, type ReplicaState} from './replica-state.js'

type FileRow = {name: string; size: number; chunk_size: number; chunk_count: number; committed_at: string}
type ChunkRow = {idx: number; chunk_id: string; version: number; size: number; sha256: string}
type ReplicaRow = {node_id: string; version: number; state: ReplicaState}

type ClusterCounts = {files: number; chunks: number; underReplicated: number; stale: number; corrupt: number}


/**
 * Read-only views of the committed state: status, manifests, file and node lists. Each is built inside
 * one read transaction, so a reader sees the manifest before a commit or after it, never a mix.
 */
export class Views {
  private readonly q
  private counts: {key: string; value: ClusterCounts; atMs: number; tookMs: number} | undefined

  constructor(
    private readonly ctx: MasterContext,
    /** Running repair transfers per node: readers are sent to lightly loaded nodes first. */
    private readonly load: (nodeId: string) => number = () => 0,
    /** Nodes other nodes could not copy from lately (repair-loop.ts). */
    private readonly unreachable: (nodeId: string) => boolean = () => false,
    private readonly drains = new Drains(ctx),
    /** Under-replicated, stale and corrupt counts kept up to date by the repair loop's looks (undefined: not current now). */
    private readonly liveCounts: () => Omit<ClusterCounts, 'files' | 'chunks'> | undefined = () => undefined,
  ) {
    const db = ctx.db
    this.q = {
      files: db.prepare('SELECT * FROM files ORDER BY name'),
      file: db.prepare('SELECT * FROM files WHERE name = ?'),
      filesFrom: db.prepare('SELECT * FROM files WHERE name >= ? ORDER BY name'),
      chunks: db.prepare(`SELECT ci.idx, c.chunk_id, c.committed_version AS version, c.size, c.sha256
        FROM chunk_ids ci JOIN chunks c ON c.chunk_id = ci.chunk_id
        WHERE ci.name = ? AND ci.idx < ? AND c.committed_version > 0 ORDER BY ci.idx`),
      replicas: db.prepare('SELECT node_id, version, state FROM replica_states WHERE chunk_id = ? ORDER BY node_id, version'),
      totalChanges: db.prepare('SELECT total_changes()').pluck(),
      // Every committed chunk belongs to one committed file (chunk_ids.chunk_id is unique), and every chunk
      // of a committed file is committed: the files table alone counts them.
      sizes: db.prepare('SELECT count(*) AS files, total(chunk_count) AS chunks FROM files'),
      // Per committed chunk: its fresh replicas on alive nodes, stale and corrupt ones (by the one rule,
      // replica-state.ts), then summed over the cluster. A committed chunk always belongs to a committed
      // file (a commit retires a shorter file's tail, a removal its chunks), so no join to files.
      summary: db.prepare(`SELECT (SELECT count(*) FROM files) AS files, count(*) AS chunks,
          sum(fresh < @R) AS underReplicated, sum(stale) AS stale, sum(corrupt) AS corrupt
        FROM (
          SELECT total(state = 'fresh' AND node_id IN (SELECT value FROM json_each(@alive))) AS fresh,
            total(state = 'stale') AS stale, total(state = 'corrupt') AS corrupt
          FROM (SELECT c.chunk_id, r.node_id, ${REPLICA_STATE_SQL} AS state
            FROM chunks c LEFT JOIN replicas r ON r.chunk_id = c.chunk_id
              LEFT JOIN planned p ON p.chunk_id = r.chunk_id AND p.version = r.version
            WHERE c.committed_version > 0)
          GROUP BY chunk_id)`),
    }
  }

  status(name?: string): StatusDoc {
    const {nodes, replicas: R} = this.ctx
    return this.ctx.db.transaction(() => {
      const shown = name === undefined ? (this.q.files.all() as FileRow[]) : [this.q.file.get(name) as FileRow | undefined].filter((f) => f !== undefined)
      if (name !== undefined && shown.length === 0) throw fileNotFound(name)
      const files: StatusDoc['files'] = []
      for (const file of shown) {
        const chunks = []
        for (const chunk of this.q.chunks.all(file.name, file.chunk_count) as ChunkRow[]) {
          const replicas = []
          for (const replica of this.q.replicas.all(chunk.chunk_id) as ReplicaRow[]) {
            const {state} = replica
            if (state === 'pending' || state === 'unreferenced') continue // an upload in flight, or garbage on its way out: not part of the version report
            replicas.push({node: replica.node_id, version: replica.version, state})
          }
          chunks.push({index: chunk.idx, id: chunk.chunk_id, version: chunk.version, size: chunk.size, sha256: chunk.sha256, replicas})
        }
        files.push({name: file.name, size: file.size, chunkSize: file.chunk_size, chunks})
      }
      // status keeps the SPEC's alive/dead state; a drain shows in its own field
      const nodeDocs = nodes.all().map((node) => {
        const {alive, state, drain, ...info} = this.nodeInfo(node.id)
        return {...info, state: alive ? ('alive' as const) : ('dead' as const), ...(drain ? {drain: state === 'drained' ? ('drained' as const) : ('draining' as const)} : {})}
      })
      const alive = nodeDocs.filter((n) => n.state === 'alive').map((n) => n.id)
      // The summary is the whole cluster's, also when one file is shown.
      const summary = {nodes: nodeDocs.length, aliveNodes: alive.length, ...this.clusterCounts(alive, R)}
      return {nodes: nodeDocs, files, summary, replicas: R, minReplicas: this.ctx.minReplicas}
    })()
  }

  /**
   * Files, chunks, under-replicated, stale and corrupt counts over the whole cluster: kept by the repair
   * loop as it looks at what changes, or, while those are not current (a scan after a start or a death),
   * counted by query.
   */
  private clusterCounts(alive: string[], R: number): ClusterCounts {
    return this.currentCounts() ?? this.countByQuery(alive, R)
  }

  /** The counts from the repair loop's looks, when they are current. */
  private currentCounts(): ClusterCounts | undefined {
    const live = this.liveCounts()
    if (!live) return undefined
    const sizes = this.q.sizes.get() as {files: number; chunks: number}
    return {files: sizes.files, chunks: sizes.chunks, ...live}
  }

  /**
   * The counts by one aggregate query over every committed chunk (a million chunks take a second or so):
   * the reference the kept counts must match. It is kept until the database changes (SQLite's
   * total_changes() on this connection, which every write of the master goes through) or the set of
   * alive nodes does, so repeated calls between writes cost nothing.
   */
  countByQuery(alive: string[], R: number): ClusterCounts {
    const key = `${this.q.totalChanges.get() as number} ${R} ${alive.join(',')}`
    if (this.counts?.key === key) return this.counts.value
    const started = performance.now()
    const row = this.q.summary.get({alive: JSON.stringify(alive), R}) as Record<keyof ClusterCounts, number | null>
    const value: ClusterCounts = {
      files: row.files ?? 0,
      chunks: row.chunks ?? 0,
      underReplicated: row.underReplicated ?? 0,
      stale: row.stale ?? 0,
      corrupt: row.corrupt ?? 0,
    }
    this.counts = {key, value, atMs: this.ctx.clock.now(), tookMs: performance.now() - started}
    return value
  }

  /**
   * The cluster counts for /metrics: the cached ones when still current, or when computing them again
   * would spend more than 1/20 of the time since the last computation (at a million chunks a scrape
   * must not block the master for a second every time something changed).
   */
  summaryForMetrics(): ClusterCounts {
    const {nodes} = this.ctx
    const current = this.currentCounts()
    if (current) return current
    const cached = this.counts
    if (cached && this.ctx.clock.now() - cached.atMs < 20 * cached.tookMs) return cached.value
    const alive = nodes.all().filter((node) => nodes.isAlive(node.id)).map((node) => node.id) // the order status() uses
    return this.clusterCounts(alive, this.ctx.replicas)
  }

  /** GET /api/files/:name: each chunk with its fresh replicas on alive nodes, lightly loaded first. */
  manifest(name: string): FileManifest {
    return this.ctx.db.transaction(() => {
      const file = this.q.file.get(name) as FileRow | undefined
      if (!file) throw fileNotFound(name)
      const chunks = (this.q.chunks.all(file.name, file.chunk_count) as ChunkRow[]).map((chunk) => ({
        index: chunk.idx,
        chunkId: chunk.chunk_id,
        version: chunk.version,
        size: chunk.size,
        sha256: chunk.sha256,
        replicas: this.freshTargets(chunk),
      }))
      return {name: file.name, size: file.size, chunkSize: file.chunk_size, committedAt: file.committed_at, chunks}
    })()
  }

  fileList() {
    return this.ctx.db.transaction(() => {
      const files = (this.q.files.all() as FileRow[]).map((file) => {
        const chunks = this.q.chunks.all(file.name, file.chunk_count) as ChunkRow[]
        const counts = chunks.map((chunk) => this.freshTargets(chunk).length)
        return {
          name: file.name,
          size: file.size,
          chunks: file.chunk_count,
          committedAt: file.committed_at,
          minReplicas: counts.length === 0 ? this.ctx.replicas : counts.reduce((low, n) => Math.min(low, n), Infinity),
        }
      })
      return {files, replicas: this.ctx.replicas}
    })()
  }

  /**
   * GET /api/files?prefix=P&chunks=1: the committed files whose names start with `prefix`, each with its
   * chunk SHA-256s, in one read transaction (a folder sync asks once, not once per file).
   */
  filesUnder(prefix: string): PrefixFileList {
    return this.ctx.db.transaction(() => {
      // names sort bytewise, so the files under a prefix are one run from the first name >= prefix
      const rows: FileRow[] = []
      for (const file of this.q.filesFrom.iterate(prefix) as IterableIterator<FileRow>) {
        if (!file.name.startsWith(prefix)) break
        rows.push(file)
      }
      const files = rows.map((file) => ({
        name: file.name,
        size: file.size,
        chunkSize: file.chunk_size,
        committedAt: file.committed_at,
        chunks: (this.q.chunks.all(file.name, file.chunk_count) as ChunkRow[]).map((chunk) => chunk.sha256),
      }))
      return {files}
    })()
  }

  /** GET /api/nodes and `chunky nodes`: every node with its state (drain.ts decides it), space and drain progress. */
  nodeList(): NodeInfoList {
    return {nodes: this.ctx.nodes.all().map((node) => this.nodeInfo(node.id))}
  }

  nodeInfo(nodeId: string): NodeInfo {
    const {nodes} = this.ctx
    const node = nodes.get(nodeId)
    if (!node) throw new ChunkyError('NODE_NOT_FOUND', `no node with id "${nodeId}": see \`chunky nodes\``)
    const progress = this.drains.progress(node.id)
    const now = this.ctx.clock.now()
    return {
      id: node.id,
      url: node.url,
      zone: node.zone,
      state: this.drains.state(node.id, progress),
      alive: nodes.isAlive(node.id),
      lastHeartbeatMsAgo: node.lastHeartbeatMs === null ? NEVER_HEARD_MS : Math.max(0, now - node.lastHeartbeatMs),
      chunks: node.chunkCount,
      bytes: node.usedBytes,
      freeBytes: node.freeBytes,
      reachable: !this.unreachable(node.id),
      ...(progress
        ? {drain: {startedAt: new Date(progress.startedMs).toISOString(), chunksLeft: progress.chunksLeft, pendingCopies: progress.pendingCopies,
            uploadsInFlight: progress.uploadsInFlight, ...(progress.waiting ? {waiting: progress.waiting} : {})}}
        : {}),
    }
  }

  private freshTargets(chunk: ChunkRow): Target[] {
    const {nodes} = this.ctx
    const holders = (this.q.replicas.all(chunk.chunk_id) as ReplicaRow[])
      .filter((replica) => replica.state === 'fresh' && nodes.isAlive(replica.node_id))
      .flatMap((replica) => nodes.get(replica.node_id) ?? [])
    holders.sort((a, b) => this.load(a.id) - this.load(b.id) || a.usedBytes - b.usedBytes || a.id.localeCompare(b.id))
    return holders.map((node) => ({id: node.id, url: node.url, zone: node.zone}))
  }
}

function fileNotFound(name: string): ChunkyError {
  return new ChunkyError('FILE_NOT_FOUND', `no file named "${name}": see chunky status`)
}
