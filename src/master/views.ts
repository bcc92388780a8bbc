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
import {ChunkCountPasses} from './chunk-counts.js'
import type {ReplicaState} from './replica-state.js'

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
  private readonly passes: ChunkCountPasses

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
    this.passes = new ChunkCountPasses(db)
    this.q = {
      files: db.prepare('SELECT * FROM files ORDER BY name'),
      file: db.prepare('SELECT * FROM files WHERE name = ?'),
      filesFrom: db.prepare('SELECT * FROM files WHERE name >= ? ORDER BY name'),
      chunks: db.prepare(`SELECT ci.idx, c.chunk_id, c.committed_version AS version, c.size, c.sha256
        FROM chunk_ids ci JOIN chunks c ON c.chunk_id = ci.chunk_id
        WHERE ci.name = ? AND ci.idx < ? AND c.committed_version > 0 ORDER BY ci.idx`),
      replicas: db.prepare('SELECT node_id, version, state FROM replica_states WHERE chunk_id = ? ORDER BY node_id, version'),
      // Every committed chunk belongs to one committed file (chunk_ids.chunk_id is unique), and every chunk
      // of a committed file is committed: the files table alone counts them.
      sizes: db.prepare('SELECT count(*) AS files, total(chunk_count) AS chunks FROM files'),
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
   * counted by query, in passes when the cluster is large (chunk-counts.ts).
   */
  private clusterCounts(alive: string[], R: number): ClusterCounts {
    const sizes = this.q.sizes.get() as {files: number; chunks: number}
    const counts = this.liveCounts() ?? this.passes.get(alive, R, sizes.chunks)
    return {files: sizes.files, chunks: sizes.chunks, ...counts}
  }

  /** The counts by one aggregate query over every committed chunk, now: the reference the kept counts must match. */
  countByQuery(alive: string[], R: number): ClusterCounts {
    const files = (this.q.sizes.get() as {files: number}).files
    return {files, ...this.passes.exact(alive, R)}
  }

  /** The cluster counts for /metrics and the dashboard. */
  summaryForMetrics(): ClusterCounts {
    const {nodes} = this.ctx
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
