import type {NodeState, StatusDoc} from '../../protocol/index.js'
import type {MasterContext} from '../context.js'
import type {RepairProgress} from '../repair-loop.js'
import type {ReplicaState} from '../replica-state.js'

// What the dashboard page shows, in sections the live stream sends separately (each only when it
// changed). The browser mirrors these types in src/dashboard/types.ts: keep the two in step.

export interface DashboardCluster {
  /** R and W. */
  replicas: number
  minReplicas: number
  /** The counts `chunky status` sums up (views.ts; on a very big cluster they may be up to a minute old). */
  health: ClusterHealth
}

export interface ClusterHealth {
  underReplicated: number
  stale: number
  corrupt: number
}

/** What the dashboard reads from the rest of the master. */
export interface DashboardSources {
  repairProgress(): RepairProgress
  health(): ClusterHealth
  /** alive, dead, draining or drained (drain.ts). */
  nodeState(nodeId: string): NodeState
}

export interface DashboardNode {
  id: string
  url: string
  zone: string
  state: NodeState
  /** Heard from within --node-timeout (a drained node may be either). */
  alive: boolean
  /** Epoch ms of the last sign of life; null if never heard from. The page ages it with the server's clock. */
  lastHeartbeatMs: number | null
  usedBytes: number
  freeBytes: number
  chunks: number
}

export interface DashboardFile {
  name: string
  size: number
  chunks: number
  /** The lowest count of fresh replicas on alive nodes over the file's chunks. */
  minReplicas: number
  committedAt: string
}

export interface DashboardFiles {
  /** Files in the cluster; `files` holds the `limit` most recently changed of them. */
  total: number
  limit: number
  files: DashboardFile[]
}

export interface DashboardRepairs extends RepairProgress {
  /** Bytes repaired per second over the last RATE_WINDOW_MS. */
  bytesPerSecond: number
}

/** One file's chunk-by-node versions (as in `chunky status NAME`); `found: false` once it is removed. */
export interface DashboardGrid {
  name: string
  found: boolean
  /** Chunks in the file; `chunks` holds the first GRID_MAX_CHUNKS of them. */
  totalChunks: number
  chunks: StatusDoc['files'][number]['chunks']
}

/** The page lists this many files, most recently changed first. */
export const FILES_SHOWN = 500
/** A grid shows at most this many chunks (rows). */
export const GRID_MAX_CHUNKS = 2000
export const RATE_WINDOW_MS = 10_000

type FileRow = {name: string; size: number; chunk_count: number; committed_at: string; min_fresh: number | null}
type ChunkRow = {idx: number; chunk_id: string; version: number; size: number; sha256: string}
type ReplicaRow = {node_id: string; version: number; state: ReplicaState}

export interface Cached<T> {
  key: string
  value: T
  /** performance.now() when it was built, and how long that took. */
  builtAt: number
  costMs: number
}

/**
 * A section is rebuilt when its key changes, but no sooner than REBUILD_COST_FACTOR times its last
 * build time after that build: on a big, busy cluster (500 files of 100 chunks take ~0.35 s) the
 * dashboard takes at most about a tenth of the master's time, and shows data a few seconds old.
 */
const REBUILD_COST_FACTOR = 10

/**
 * Builds the dashboard's sections. Reads go through the master's one SQLite connection; the files
 * list and grids are kept until the database changes (total_changes()) or the set of alive nodes does,
 * so a stream ticking every 300 ms costs almost nothing while the cluster is quiet; on a busy one
 * they are rebuilt no more often than REBUILD_COST_FACTOR allows.
 */
export class DashboardData {
  private readonly q
  private filesCache: Cached<DashboardFiles> | undefined
  private readonly gridCache = new Map<string, Cached<DashboardGrid>>()
  /** (time, bytesRepaired) samples for the repair rate, oldest first. */
  private readonly repairSamples: {ms: number; bytes: number}[] = []

  constructor(
    private readonly ctx: MasterContext,
    private readonly sources: DashboardSources,
    /** Tests pass 0: rebuild on every change, however long it took. */
    private readonly rebuildCostFactor = REBUILD_COST_FACTOR,
  ) {
    const db = ctx.db
    this.q = {
      totalChanges: db.prepare('SELECT total_changes()').pluck(),
      fileCount: db.prepare('SELECT count(*) FROM files').pluck(),
      // The most recent files, each with its lowest count of fresh replicas on alive nodes (the one rule,
      // replica-state.ts).
      files: db.prepare(`SELECT f.name, f.size, f.chunk_count, f.committed_at,
          (SELECT min(fresh) FROM (
            SELECT (SELECT count(*) FROM replica_states s WHERE s.chunk_id = c.chunk_id AND s.state = 'fresh'
                AND s.node_id IN (SELECT value FROM json_each(@alive))) AS fresh
            FROM chunk_ids ci JOIN chunks c ON c.chunk_id = ci.chunk_id
            WHERE ci.name = f.name AND ci.idx < f.chunk_count AND c.committed_version > 0)) AS min_fresh
        FROM (SELECT * FROM files ORDER BY committed_at DESC, name LIMIT @limit) f
        ORDER BY f.committed_at DESC, f.name`),
      // The grid's rows: the queries of views.ts status(name) without its cluster-wide summary (which
      // takes a second or more on a big cluster after every change) and only as many chunks as shown.
      file: db.prepare('SELECT chunk_count FROM files WHERE name = ?').pluck(),
      chunks: db.prepare(`SELECT ci.idx, c.chunk_id, c.committed_version AS version, c.size, c.sha256
        FROM chunk_ids ci JOIN chunks c ON c.chunk_id = ci.chunk_id
        WHERE ci.name = ? AND ci.idx < ? AND c.committed_version > 0 ORDER BY ci.idx LIMIT ?`),
      committedChunks: db.prepare(`SELECT count(*) FROM chunk_ids ci JOIN chunks c ON c.chunk_id = ci.chunk_id
        WHERE ci.name = ? AND ci.idx < ? AND c.committed_version > 0`).pluck(),
      replicas: db.prepare('SELECT node_id, version, state FROM replica_states WHERE chunk_id = ? ORDER BY node_id, version'),
    }
  }

  /** The master's clock: the page ages heartbeats against it, not against the browser's clock. */
  now(): number {
    return this.ctx.clock.now()
  }

  cluster(): DashboardCluster {
    const {underReplicated, stale, corrupt} = this.sources.health()
    return {replicas: this.ctx.replicas, minReplicas: this.ctx.minReplicas, health: {underReplicated, stale, corrupt}}
  }

  nodes(): DashboardNode[] {
    const {nodes} = this.ctx
    return nodes.all().map((node) => ({
      id: node.id,
      url: node.url,
      zone: node.zone,
      state: this.sources.nodeState(node.id),
      alive: nodes.isAlive(node.id),
      lastHeartbeatMs: node.lastHeartbeatMs,
      usedBytes: node.usedBytes,
      freeBytes: node.freeBytes,
      chunks: node.chunkCount,
    }))
  }

  files(): DashboardFiles {
    this.filesCache = rebuilt(this.filesCache, this.stateKey(), this.rebuildCostFactor, () => this.buildFiles())
    return this.filesCache.value
  }

  private buildFiles(): DashboardFiles {
    const alive = JSON.stringify(this.ctx.nodes.aliveIds())
    return this.ctx.db.transaction(() => {
      const rows = this.q.files.all({alive, limit: FILES_SHOWN}) as FileRow[]
      return {
        total: this.q.fileCount.get() as number,
        limit: FILES_SHOWN,
        files: rows.map((row) => ({
          name: row.name,
          size: row.size,
          chunks: row.chunk_count,
          minReplicas: row.min_fresh ?? this.ctx.replicas, // no chunks (an empty file): nothing is missing
          committedAt: row.committed_at,
        })),
      }
    })()
  }

  grid(name: string): DashboardGrid {
    const entry = rebuilt(this.gridCache.get(name), this.stateKey(), this.rebuildCostFactor, () => this.buildGrid(name))
    this.gridCache.delete(name) // re-inserted last: the map stays in least-recently-used order
    this.gridCache.set(name, entry)
    for (const oldest of this.gridCache.keys()) {
      if (this.gridCache.size <= 64) break
      this.gridCache.delete(oldest)
    }
    return entry.value
  }

  /** Each chunk's replicas and their states by the one rule (pending uploads and garbage left out, as in status). */
  private buildGrid(name: string): DashboardGrid {
    return this.ctx.db.transaction((): DashboardGrid => {
      const chunkCount = this.q.file.get(name) as number | undefined
      if (chunkCount === undefined) return {name, found: false, totalChunks: 0, chunks: []}
      const chunks = (this.q.chunks.all(name, chunkCount, GRID_MAX_CHUNKS) as ChunkRow[]).map((chunk) => {
        const replicas: DashboardGrid['chunks'][number]['replicas'] = []
        for (const {node_id: node, version, state} of this.q.replicas.all(chunk.chunk_id) as ReplicaRow[]) {
          if (state !== 'pending' && state !== 'unreferenced') replicas.push({node, version, state})
        }
        return {index: chunk.idx, id: chunk.chunk_id, version: chunk.version, size: chunk.size, sha256: chunk.sha256, replicas}
      })
      const totalChunks = chunks.length < GRID_MAX_CHUNKS ? chunks.length : (this.q.committedChunks.get(name, chunkCount) as number)
      return {name, found: true, totalChunks, chunks}
    })()
  }

  /** Repairs in flight, bytes repaired so far, and the rate over the last RATE_WINDOW_MS (call it regularly). */
  repairs(): DashboardRepairs {
    const progress = this.sources.repairProgress()
    const now = this.ctx.clock.now()
    const samples = this.repairSamples
    samples.push({ms: now, bytes: progress.bytesRepaired})
    // Keep one sample at or before the window's start, so the rate covers the whole window.
    while (samples.length > 2 && samples[1]!.ms <= now - RATE_WINDOW_MS) samples.shift()
    // Over the whole span the samples cover, at least the window (samples stop while nobody watches).
    const oldest = samples[0]!
    const bytesPerSecond = Math.round(((progress.bytesRepaired - oldest.bytes) * 1000) / Math.max(RATE_WINDOW_MS, now - oldest.ms))
    return {...progress, bytesPerSecond}
  }

  /** Changes whenever the database or the set of alive nodes does. */
  private stateKey(): string {
    return `${this.q.totalChanges.get() as number} ${this.ctx.nodes.aliveIds().sort().join(',')}`
  }
}

/** The cached entry while its key holds (or while a rebuild would come too soon), else a new one. */
export function rebuilt<T>(entry: Cached<T> | undefined, key: string, costFactor: number, build: () => T): Cached<T> {
  const now = performance.now()
  if (entry && (entry.key === key || now - entry.builtAt < entry.costMs * costFactor)) return entry
  const value = build()
  return {key, value, builtAt: now, costMs: performance.now() - now}
}
