import {
  ChunkyError,
  type FileManifest,
  type StatusDoc,
  type Target,
} from '../protocol/index.js'
import type {MasterContext} from './context.js'

type FileRow = {name: string; size: number; chunk_size: number; chunk_count: number; committed_at: string}
type ChunkRow = {idx: number; chunk_id: string; version: number; size: number; sha256: string}
type ReplicaRow = {node_id: string; version: number; sha256: string; corrupt: number}

export type ReplicaState = 'fresh' | 'stale' | 'corrupt' | 'pending'

/** A replica's state is derived from the committed record, never stored. */
export function replicaState(replica: ReplicaRow, chunk: {version: number; sha256: string}): ReplicaState {
  if (replica.corrupt) return 'corrupt'
  if (replica.version < chunk.version) return 'stale'
  if (replica.version > chunk.version) return 'pending'
  return replica.sha256 === chunk.sha256 ? 'fresh' : 'corrupt'
}

/** "Never heard from" in status: larger than any real gap. */
export const NEVER_HEARD_MS = Number.MAX_SAFE_INTEGER

/**
 * Read-only views of the committed state: status, manifests, file and node lists. Each is built inside
 * one read transaction, so a reader sees the manifest before a commit or after it, never a mix.
 */
export class Views {
  private readonly q

  constructor(
    private readonly ctx: MasterContext,
    /** Running repair transfers per node: readers are sent to lightly loaded nodes first. */
    private readonly load: (nodeId: string) => number = () => 0,
  ) {
    const db = ctx.db
    this.q = {
      files: db.prepare('SELECT * FROM files ORDER BY name'),
      file: db.prepare('SELECT * FROM files WHERE name = ?'),
      chunks: db.prepare(`SELECT ci.idx, c.chunk_id, c.committed_version AS version, c.size, c.sha256
        FROM chunk_ids ci JOIN chunks c ON c.chunk_id = ci.chunk_id
        WHERE ci.name = ? AND ci.idx < ? AND c.committed_version > 0 ORDER BY ci.idx`),
      replicas: db.prepare('SELECT node_id, version, sha256, corrupt FROM replicas WHERE chunk_id = ? ORDER BY node_id, version'),
    }
  }

  status(name?: string): StatusDoc {
    const {nodes, replicas: R} = this.ctx
    return this.ctx.db.transaction(() => {
      const allFiles = this.q.files.all() as FileRow[]
      const shown = name === undefined ? allFiles : allFiles.filter((f) => f.name === name)
      if (name !== undefined && shown.length === 0) throw fileNotFound(name)
      const summary = {nodes: 0, aliveNodes: 0, files: allFiles.length, chunks: 0, underReplicated: 0, stale: 0, corrupt: 0}
      const files: StatusDoc['files'] = []
      // The summary is the whole cluster's, also when one file is shown.
      for (const file of allFiles) {
        const show = name === undefined || file.name === name
        const chunks = []
        for (const chunk of this.q.chunks.all(file.name, file.chunk_count) as ChunkRow[]) {
          const replicas = []
          let freshAlive = 0
          for (const replica of this.q.replicas.all(chunk.chunk_id) as ReplicaRow[]) {
            const state = replicaState(replica, chunk)
            if (state === 'pending') continue // an upload in flight: not part of the version report
            if (state === 'fresh' && nodes.isAlive(replica.node_id)) freshAlive++
            if (state === 'stale') summary.stale++
            if (state === 'corrupt') summary.corrupt++
            replicas.push({node: replica.node_id, version: replica.version, state})
          }
          summary.chunks++
          if (freshAlive < R) summary.underReplicated++
          if (show) chunks.push({index: chunk.idx, id: chunk.chunk_id, version: chunk.version, size: chunk.size, sha256: chunk.sha256, replicas})
        }
        if (show) files.push({name: file.name, size: file.size, chunkSize: file.chunk_size, chunks})
      }
      const now = this.ctx.clock.now()
      const nodeDocs = nodes.all().map((node) => ({
        id: node.id,
        url: node.url,
        zone: node.zone,
        state: nodes.isAlive(node.id) ? ('alive' as const) : ('dead' as const),
        lastHeartbeatMsAgo: node.lastHeartbeatMs === null ? NEVER_HEARD_MS : Math.max(0, now - node.lastHeartbeatMs),
        chunks: node.chunkCount,
        bytes: node.usedBytes,
        freeBytes: node.freeBytes,
      }))
      summary.nodes = nodeDocs.length
      summary.aliveNodes = nodeDocs.filter((n) => n.state === 'alive').length
      return {nodes: nodeDocs, files, summary, replicas: R, minReplicas: this.ctx.minReplicas}
    })()
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
      return {files}
    })()
  }

  nodeList() {
    const {nodes} = this.ctx
    return {
      nodes: nodes.all().map((node) => ({
        id: node.id,
        url: node.url,
        zone: node.zone,
        state: nodes.isAlive(node.id) ? ('alive' as const) : ('dead' as const),
      })),
    }
  }

  private freshTargets(chunk: ChunkRow): Target[] {
    const {nodes} = this.ctx
    const holders = (this.q.replicas.all(chunk.chunk_id) as ReplicaRow[])
      .filter((replica) => replicaState(replica, chunk) === 'fresh' && nodes.isAlive(replica.node_id))
      .flatMap((replica) => nodes.get(replica.node_id) ?? [])
    holders.sort((a, b) => this.load(a.id) - this.load(b.id) || a.usedBytes - b.usedBytes || a.id.localeCompare(b.id))
    return holders.map((node) => ({id: node.id, url: node.url, zone: node.zone}))
  }
}

function fileNotFound(name: string): ChunkyError {
  return new ChunkyError('FILE_NOT_FOUND', `no file named "${name}": see chunky status`)
}
