import {randomBytes} from 'node:crypto'
import {
  ChunkyError,
  DEFAULT_CHUNK_SIZE,
  signGrant,
  type CommitResult,
  type PlannedChunk,
  type ReplanRequest,
  type Target,
  type UploadPlan,
  type UploadPlanRequest,
} from '../protocol/index.js'
import type {MasterContext} from './context.js'
import {checkChunkLayout} from './layout.js'
import {placeChunk, type PlacementCandidate, type PlacementRequest} from './placement.js'

/** Write grants last this long; a slow client asks for a replan, which signs a new one. */
export const GRANT_TTL_MS = 15 * 60_000

type ChunkRow = {chunk_id: string; committed_version: number; max_version: number; size: number; sha256: string}
type UploadRow = {upload_id: string; name: string; size: number; chunk_size: number; chunk_count: number; created_ms: number}
type UploadChunkRow = {upload_id: string; idx: number; chunk_id: string; version: number; size: number; sha256: string; skip: number}
type Replica = {nodeId: string; chunkId: string; version: number}

/** Upload planning, replanning and commit: where versions are handed out and manifests change. */
export class Uploads {
  private readonly q

  constructor(private readonly ctx: MasterContext) {
    const db = ctx.db
    this.q = {
      chunkIdOf: db.prepare('SELECT chunk_id FROM chunk_ids WHERE name = ? AND idx = ?').pluck(),
      insertChunkId: db.prepare('INSERT INTO chunk_ids (name, idx, chunk_id) VALUES (?, ?, ?)'),
      chunk: db.prepare('SELECT * FROM chunks WHERE chunk_id = ?'),
      insertChunk: db.prepare('INSERT OR IGNORE INTO chunks (chunk_id) VALUES (?)'),
      raiseMaxVersion: db.prepare('UPDATE chunks SET max_version = ? WHERE chunk_id = ?'),
      plannedSame: db.prepare('SELECT version FROM planned WHERE chunk_id = ? AND size = ? AND sha256 = ? AND version > ? ORDER BY version DESC'),
      planned: db.prepare('SELECT * FROM planned WHERE chunk_id = ? AND version = ?'),
      insertPlanned: db.prepare('INSERT INTO planned (chunk_id, version, size, sha256, upload_id) VALUES (?, ?, ?, ?, ?)'),
      // Holders of a version with these bytes that the one rule (replica-state.ts) counts: fresh when it is
      // the committed version, pending when it is a planned one.
      goodHolders: db.prepare(`SELECT node_id FROM replica_states WHERE chunk_id = ? AND version = ? AND sha256 = ?
        AND state IN ('fresh', 'pending')`).pluck(),
      insertUpload: db.prepare(
        'INSERT INTO uploads (upload_id, name, size, chunk_size, chunk_count, created_ms) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      insertUploadChunk: db.prepare(
        'INSERT INTO upload_chunks (upload_id, idx, chunk_id, version, size, sha256, skip) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      upload: db.prepare('SELECT * FROM uploads WHERE upload_id = ?'),
      uploadChunks: db.prepare('SELECT * FROM upload_chunks WHERE upload_id = ? ORDER BY idx'),
      uploadChunk: db.prepare('SELECT * FROM upload_chunks WHERE upload_id = ? AND idx = ?'),
      deleteUploadChunk: db.prepare('DELETE FROM upload_chunks WHERE upload_id = ? AND idx = ?'),
      setUploadSize: db.prepare('UPDATE uploads SET size = ?, chunk_count = ? WHERE upload_id = ?'),
      commitChunk: db.prepare('UPDATE chunks SET committed_version = ?, size = ?, sha256 = ? WHERE chunk_id = ?'),
      olderReplicas: db.prepare('SELECT node_id AS nodeId, chunk_id AS chunkId, version FROM replicas WHERE chunk_id = ? AND version < ?'),
      deletePlannedUpTo: db.prepare('DELETE FROM planned WHERE chunk_id = ? AND version <= ?'),
      tailChunkIds: db.prepare('SELECT chunk_id FROM chunk_ids WHERE name = ? AND idx >= ?').pluck(),
      deleteChunkIdsOf: db.prepare('DELETE FROM chunk_ids WHERE name = ?'),
      // A delete and an insert, not an update of the key: the change capture (meta-sync.ts) ships rows by key.
      dropChunkId: db.prepare('DELETE FROM chunk_ids WHERE chunk_id = ?'),
      replicasOf: db.prepare('SELECT node_id AS nodeId, chunk_id AS chunkId, version FROM replicas WHERE chunk_id = ?'),
      // A dropped chunk keeps its id and its highest version handed out: if the file grows back to this
      // index, the chunk's versions go on rising instead of starting again at 1 (invariant 2).
      retireChunk: db.prepare("UPDATE chunks SET committed_version = 0, size = 0, sha256 = '' WHERE chunk_id = ?"),
      deletePlannedOf: db.prepare('DELETE FROM planned WHERE chunk_id = ?'),
      upsertFile: db.prepare(`INSERT INTO files (name, size, chunk_size, chunk_count, committed_at) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (name) DO UPDATE SET size = excluded.size, chunk_size = excluded.chunk_size,
          chunk_count = excluded.chunk_count, committed_at = excluded.committed_at`),
      file: db.prepare('SELECT * FROM files WHERE name = ?'),
      deleteFile: db.prepare('DELETE FROM files WHERE name = ?'),
      uploadsOf: db.prepare('SELECT upload_id FROM uploads WHERE name = ?').pluck(),
      deleteUpload: db.prepare('DELETE FROM uploads WHERE upload_id = ?'),
      deleteUploadChunks: db.prepare('DELETE FROM upload_chunks WHERE upload_id = ?'),
      deletePlannedOfUpload: db.prepare('DELETE FROM planned WHERE upload_id = ?'),
      plannedChunksOfUpload: db.prepare('SELECT DISTINCT chunk_id FROM planned WHERE upload_id = ?').pluck(),
      expiredUploads: db.prepare('SELECT upload_id FROM uploads WHERE created_ms < ?').pluck(),
    }
  }

  /**
   * POST /api/uploads. Every new version is max_version + 1, committed to SQLite (synchronous=FULL)
   * together with its planned row and the upload row BEFORE this returns (invariant 2); with the
   * metadata in PostgreSQL, the route answers only once that transaction reached it (MetaSync.flush).
   */
  plan(request: UploadPlanRequest & {exclude: string[]}): UploadPlan {
    checkChunkLayout(request)
    const {replicas: R, minReplicas: W} = this.ctx
    const candidates = this.candidates()
    const uploadId = randomBytes(12).toString('hex')
    const now = this.ctx.clock.now()

    const placed = this.ctx.db.transaction(() => {
      this.q.insertUpload.run(uploadId, request.name, request.size, request.chunkSize, request.chunks.length, now)
      return request.chunks.map((input) => this.planChunkRow(uploadId, request.name, input, candidates, {entryNode: request.entryNode, byRtt: request.byRtt}, request.exclude))
    })() // throws (and rolls back: nothing handed out) on NO_NODES

    const fresh = placed.filter((chunk) => !chunk.skip)
    const versions = fresh.slice(0, 5).map((chunk) => `${chunk.index}:v${chunk.version}`).join(', ')
    this.ctx.metrics.versionsHandedOut.inc(fresh.length)
    // One line per plan, listing every version handed out (up to 1000 chunks: 10 GB at 10 MiB chunks).
    const handedOut = fresh.slice(0, 1000).map(({index, chunkId, version}) => ({index, chunkId, version}))
    this.ctx.log.info(
      {event: 'version.handed_out', uploadId, name: request.name, count: fresh.length, skipped: placed.length - fresh.length, chunks: handedOut,
        ...(fresh.length > handedOut.length ? {notListed: fresh.length - handedOut.length} : {})},
      `upload ${uploadId} of ${request.name}: ${fresh.length} version${fresh.length === 1 ? '' : 's'} handed out` +
        (fresh.length > 0 ? ` (${versions}${fresh.length > 5 ? ', …' : ''})` : '') +
        `, ${placed.length - fresh.length} chunk${placed.length - fresh.length === 1 ? '' : 's'} already held`,
    )
    return {
      uploadId,
      name: request.name,
      size: request.size,
      chunkSize: request.chunkSize,
      replicas: R,
      minReplicas: W,
      chunks: placed.map((chunk) => this.planned(chunk, chunk.targets)),
    }
  }

  /** Plans one chunk of an upload: skipped at the version already held, else a new version placed on targets. */
  private planChunkRow(uploadId: string, name: string, input: {index: number; size: number; sha256: string}, candidates: PlacementCandidate[], near: Pick<PlacementRequest, 'entryNode' | 'byRtt'>, exclude: string[]) {
    const {replicas: R, minReplicas: W} = this.ctx
    const chunkId = this.chunkIdFor(name, input.index)
    const chunk = this.q.chunk.get(chunkId) as ChunkRow
    const skipVersion = this.versionAlreadyHeld(chunk, input.size, input.sha256)
    if (skipVersion !== undefined) {
      this.q.insertUploadChunk.run(uploadId, input.index, chunkId, skipVersion, input.size, input.sha256, 1)
      return {index: input.index, chunkId, version: skipVersion, size: input.size, sha256: input.sha256, targets: [] as PlacementCandidate[], skip: true}
    }
    const version = chunk.max_version + 1
    const targets = placeChunk({candidates, size: input.size, replicas: R, minReplicas: W, ...near, exclude})
    for (const target of targets) {
      target.freeBytes -= input.size // so a big file spreads over the nodes
      target.usedBytes = (target.usedBytes ?? 0) + input.size
    }
    this.q.raiseMaxVersion.run(version, chunkId)
    this.q.insertPlanned.run(chunkId, version, input.size, input.sha256, uploadId)
    this.q.insertUploadChunk.run(uploadId, input.index, chunkId, version, input.size, input.sha256, 0)
    return {index: input.index, chunkId, version, size: input.size, sha256: input.sha256, targets, skip: false}
  }

  /**
   * An upload whose chunks are planned one by one as their bytes arrive (tus): its row now, with the
   * size when known (setSize() later otherwise); it expires and commits like any other.
   */
  open(name: string, size: number, chunkSize: number): string {
    const uploadId = randomBytes(12).toString('hex')
    this.q.insertUpload.run(uploadId, name, size, chunkSize, Math.ceil(size / chunkSize), this.ctx.clock.now())
    return uploadId
  }

  setSize(uploadId: string, size: number): void {
    const upload = this.q.upload.get(uploadId) as UploadRow | undefined
    if (!upload) throw uploadNotFound(uploadId)
    this.q.setUploadSize.run(size, Math.ceil(size / upload.chunk_size), uploadId)
  }

  /**
   * One chunk of an upload opened with open(): the same bytes again (a retry) keep their version and
   * get new targets avoiding `exclude`; other bytes at that index get a new version. Persisted before
   * it returns, like plan().
   */
  planOne(uploadId: string, input: {index: number; size: number; sha256: string}, entryNode: string, exclude: string[]): PlannedChunk {
    const upload = this.q.upload.get(uploadId) as UploadRow | undefined
    if (!upload) throw uploadNotFound(uploadId)
    const row = this.q.uploadChunk.get(uploadId, input.index) as UploadChunkRow | undefined
    if (row && row.size === input.size && row.sha256 === input.sha256 && (row.skip || this.q.planned.get(row.chunk_id, row.version))) {
      return this.replan(uploadId, {index: input.index, exclude})
    }
    const placed = this.ctx.db.transaction(() => {
      if (row) this.q.deleteUploadChunk.run(uploadId, input.index)
      return this.planChunkRow(uploadId, upload.name, input, this.candidates(), {entryNode}, exclude)
    })()
    if (!placed.skip) this.ctx.metrics.versionsHandedOut.inc()
    this.ctx.log.info(
      {event: 'version.handed_out', uploadId, name: upload.name, count: placed.skip ? 0 : 1, skipped: placed.skip ? 1 : 0, chunks: placed.skip ? [] : [{index: placed.index, chunkId: placed.chunkId, version: placed.version}]},
      `upload ${uploadId} of ${upload.name}: chunk ${placed.index} ` + (placed.skip ? `already held at v${placed.version}` : `v${placed.version} handed out`),
    )
    return this.planned(placed, placed.targets)
  }

  /** Whether chunk `index` of an upload is stored at its planned version on ≥ W nodes (or was already held). */
  isDurable(uploadId: string, index: number): boolean {
    const row = this.q.uploadChunk.get(uploadId, index) as UploadChunkRow | undefined
    if (!row) return false
    if (row.skip) return true
    return (this.q.goodHolders.all(row.chunk_id, row.version, row.sha256) as string[]).length >= this.ctx.minReplicas
  }

  chunkSizeOf(uploadId: string, index: number): number {
    return (this.q.uploadChunk.get(uploadId, index) as UploadChunkRow).size
  }

  /** Forgets uploads (terminated or expired tus sessions); their pending replicas become garbage. */
  forget(uploadIds: readonly string[]): void {
    const touched = this.ctx.db.transaction(() => uploadIds.flatMap((uploadId) => this.dropUpload(uploadId)))()
    this.ctx.replicaTable.touched(touched)
  }

  /** POST /api/uploads/:id/replan: same version and bytes, new targets avoiding the failed ones, new grant. */
  replan(uploadId: string, request: ReplanRequest): PlannedChunk {
    if (!this.q.upload.get(uploadId)) throw uploadNotFound(uploadId)
    const row = this.q.uploadChunk.get(uploadId, request.index) as UploadChunkRow | undefined
    if (!row) throw new ChunkyError('BAD_REQUEST', `upload ${uploadId} has no chunk ${request.index}`)
    const chunk = {index: row.idx, chunkId: row.chunk_id, version: row.version, size: row.size, sha256: row.sha256}
    if (row.skip) return this.planned({...chunk, skip: true}, [])
    if (!this.q.planned.get(row.chunk_id, row.version)) {
      throw new ChunkyError('VERSION_CONFLICT', `chunk ${row.idx} was changed by a newer upload of this file: upload again`)
    }
    const {replicas: R, minReplicas: W} = this.ctx
    const targets = placeChunk({candidates: this.candidates(), size: row.size, replicas: R, minReplicas: W, exclude: request.exclude})
    this.ctx.log.info(
      {event: 'upload.replanned', uploadId, index: row.idx, chunkId: row.chunk_id, version: row.version, targets: targets.map((t) => t.id), excluded: request.exclude},
      `upload ${uploadId}: chunk ${row.idx} v${row.version} re-placed on ${targets.map((t) => t.id).join(', ')}`,
    )
    return this.planned({...chunk, skip: false}, targets)
  }

  /**
   * POST /api/uploads/:id/commit. One transaction: check every chunk is durable (≥ W replicas at its
   * planned version) and still current, then switch the manifest. Readers see the old or the new one.
   */
  commit(uploadId: string): CommitResult {
    const {db, minReplicas: W} = this.ctx
    const result = db.transaction(() => {
      const upload = this.q.upload.get(uploadId) as UploadRow | undefined
      if (!upload) throw uploadNotFound(uploadId)
      const rows = this.q.uploadChunks.all(uploadId) as UploadChunkRow[]
      const changed: UploadChunkRow[] = []
      for (const row of rows) {
        const chunk = this.q.chunk.get(row.chunk_id) as ChunkRow | undefined
        if (!chunk) throw new ChunkyError('VERSION_CONFLICT', `chunk ${row.idx} no longer exists (the file was removed): upload again`)
        if (chunk.committed_version === row.version && chunk.sha256 === row.sha256) continue // already current
        if (chunk.committed_version >= row.version) {
          throw new ChunkyError('VERSION_CONFLICT', `chunk ${row.idx} was changed by a newer upload of this file: upload again`)
        }
        if (!this.q.planned.get(row.chunk_id, row.version)) {
          throw new ChunkyError('VERSION_CONFLICT', `chunk ${row.idx} was changed or dropped by a newer upload or a removal of this file: upload again`)
        }
        const recorded = (this.q.goodHolders.all(row.chunk_id, row.version, row.sha256) as string[]).length
        if (recorded < W) {
          throw new ChunkyError(
            'NOT_DURABLE',
            `chunk ${row.idx} has ${recorded} of the ${W} replicas needed at version ${row.version}: send it again, then commit`,
          )
        }
        changed.push(row)
      }

      const stale: Replica[] = []
      for (const row of changed) {
        this.q.commitChunk.run(row.version, row.size, row.sha256, row.chunk_id)
        stale.push(...(this.q.olderReplicas.all(row.chunk_id, row.version) as Replica[]))
        this.q.deletePlannedUpTo.run(row.chunk_id, row.version)
      }
      const dropped = this.removeChunks(upload.name, rows.length) // a shorter file drops its tail
      const committedAt = new Date(this.ctx.clock.now()).toISOString()
      this.q.upsertFile.run(upload.name, upload.size, upload.chunk_size, rows.length, committedAt)
      this.q.deleteUploadChunks.run(uploadId)
      this.q.deleteUpload.run(uploadId)
      const sentBytes = changed.reduce((sum, row) => sum + row.size, 0)
      return {commit: {name: upload.name, size: upload.size, chunks: rows.length, committedAt}, stale, dropped, changed: changed.length, sentBytes, createdMs: upload.created_ms,
        touched: [...changed.map((row) => row.chunk_id), ...dropped.map((r) => r.chunkId)]}
    })()
    this.ctx.replicaTable.touched(result.touched) // their replicas' states changed with the committed versions

    for (const r of result.stale) this.ctx.deletes.send(r.nodeId, r.chunkId, r.version, 'stale')
    for (const r of result.dropped) this.ctx.deletes.send(r.nodeId, r.chunkId, r.version, 'unreferenced')
    this.ctx.deletes.flush(`after committing ${result.commit.name}`)
    const ms = this.ctx.clock.now() - result.createdMs
    this.ctx.metrics.uploadsCommitted.inc()
    this.ctx.metrics.uploadBytes.inc(result.sentBytes)
    this.ctx.metrics.uploadSeconds.observe(ms / 1000)
    this.ctx.log.info(
      {event: 'upload.committed', uploadId, name: result.commit.name, size: result.commit.size, chunks: result.commit.chunks, changedChunks: result.changed, bytes: result.sentBytes, ms},
      `committed ${result.commit.name} (${result.commit.chunks} chunk${result.commit.chunks === 1 ? '' : 's'})`,
    )
    return result.commit
  }

  /**
   * A tus final upload: the chunks of finished uploads (the partials, opened with open()), in order,
   * become the file `name`, committed in one transaction with `within` (the sessions' rows). No byte
   * moves: the file's (name, index) rows point at the partials' chunk ids, so only a partial's last
   * chunk may be shorter than the chunk size and readers place chunks by their sizes, not by index ×
   * chunk size. The file's chunks before are dropped, as by remove() (their replicas deleted).
   */
  join(name: string, uploadIds: readonly string[], within: () => void): CommitResult {
    const {db, minReplicas: W} = this.ctx
    const result = db.transaction(() => {
      const joined: UploadChunkRow[] = []
      let size = 0
      let createdMs = Number.MAX_SAFE_INTEGER
      for (const uploadId of uploadIds) {
        const upload = this.q.upload.get(uploadId) as UploadRow | undefined
        if (!upload) throw uploadNotFound(uploadId)
        const rows = this.q.uploadChunks.all(uploadId) as UploadChunkRow[]
        if (rows.length !== upload.chunk_count) throw new ChunkyError('BAD_REQUEST', `a partial upload of ${upload.size} bytes has ${rows.length} of its ${upload.chunk_count} chunks: finish it first`)
        for (const row of rows) {
          if (!this.q.planned.get(row.chunk_id, row.version)) throw new ChunkyError('VERSION_CONFLICT', `chunk ${row.idx} of a partial upload is no longer planned (it expired): upload it again`)
          const recorded = (this.q.goodHolders.all(row.chunk_id, row.version, row.sha256) as string[]).length
          if (recorded < W) throw new ChunkyError('NOT_DURABLE', `chunk ${row.idx} of a partial upload has ${recorded} of the ${W} replicas needed: upload that partial again`)
        }
        joined.push(...rows)
        size += upload.size
        createdMs = Math.min(createdMs, upload.created_ms)
      }
      const dropped = this.removeChunks(name, 0)
      this.q.deleteChunkIdsOf.run(name) // the file's indexes now name the partials' chunks
      joined.forEach((row, index) => {
        this.q.dropChunkId.run(row.chunk_id)
        this.q.insertChunkId.run(name, index, row.chunk_id)
        this.q.commitChunk.run(row.version, row.size, row.sha256, row.chunk_id)
        this.q.deletePlannedUpTo.run(row.chunk_id, row.version)
      })
      for (const uploadId of uploadIds) {
        this.q.deleteUploadChunks.run(uploadId)
        this.q.deleteUpload.run(uploadId)
      }
      const committedAt = new Date(this.ctx.clock.now()).toISOString()
      this.q.upsertFile.run(name, size, DEFAULT_CHUNK_SIZE, joined.length, committedAt)
      within()
      return {commit: {name, size, chunks: joined.length, committedAt}, dropped, createdMs, touched: [...joined.map((row) => row.chunk_id), ...dropped.map((r) => r.chunkId)]}
    })()
    this.ctx.replicaTable.touched(result.touched)
    for (const r of result.dropped) this.ctx.deletes.send(r.nodeId, r.chunkId, r.version, 'unreferenced')
    this.ctx.deletes.flush(`after committing ${name}`)
    const ms = this.ctx.clock.now() - result.createdMs
    this.ctx.metrics.uploadsCommitted.inc()
    this.ctx.metrics.uploadSeconds.observe(ms / 1000)
    this.ctx.log.info(
      {event: 'upload.committed', name, size: result.commit.size, chunks: result.commit.chunks, joinedUploads: uploadIds.length, ms},
      `committed ${name} (${result.commit.chunks} chunk${result.commit.chunks === 1 ? '' : 's'}, joined from ${uploadIds.length} partial uploads)`,
    )
    return result.commit
  }

  /** DELETE /api/files/:name. Replica rows stay until the nodes confirm (or report them unreferenced). */
  remove(name: string): {name: string; removedChunks: number} {
    const result = this.ctx.db.transaction(() => {
      const file = this.q.file.get(name) as {chunk_count: number} | undefined
      if (!file) throw new ChunkyError('FILE_NOT_FOUND', `no file named "${name}": see chunky status`)
      const chunkCount = file.chunk_count
      const replicas = this.removeChunks(name, 0)
      this.q.deleteFile.run(name)
      for (const uploadId of this.q.uploadsOf.all(name) as string[]) this.dropUpload(uploadId)
      return {chunkCount, replicas}
    })()
    this.ctx.replicaTable.touched(result.replicas.map((r) => r.chunkId))
    for (const r of result.replicas) this.ctx.deletes.send(r.nodeId, r.chunkId, r.version, 'unreferenced')
    this.ctx.deletes.flush(`after removing ${name}`)
    this.ctx.log.info({event: 'file.removed', name, chunks: result.chunkCount}, `removed ${name} (${result.chunkCount} chunk${result.chunkCount === 1 ? '' : 's'})`)
    return {name, removedChunks: result.chunkCount}
  }

  /** Forgets uploads never committed within maxAgeMs; their pending replicas become garbage. */
  expire(maxAgeMs: number): number {
    const touched: string[] = []
    const count = this.ctx.db.transaction(() => {
      const expired = this.q.expiredUploads.all(this.ctx.clock.now() - maxAgeMs) as string[]
      for (const uploadId of expired) touched.push(...this.dropUpload(uploadId))
      return expired.length
    })()
    this.ctx.replicaTable.touched(touched) // their pending replicas are garbage now
    return count
  }

  /** Forgets an upload and its planned versions; returns the chunks that had one. */
  private dropUpload(uploadId: string): string[] {
    const chunkIds = this.q.plannedChunksOfUpload.all(uploadId) as string[]
    this.q.deletePlannedOfUpload.run(uploadId)
    this.q.deleteUploadChunks.run(uploadId)
    this.q.deleteUpload.run(uploadId)
    return chunkIds
  }

  /** Removes the chunks of `name` from index `from` on; returns their replicas (to be told to delete). */
  private removeChunks(name: string, from: number): Replica[] {
    const replicas: Replica[] = []
    for (const chunkId of this.q.tailChunkIds.all(name, from) as string[]) {
      replicas.push(...(this.q.replicasOf.all(chunkId) as Replica[]))
      this.q.retireChunk.run(chunkId)
      this.q.deletePlannedOf.run(chunkId)
    }
    return replicas
  }

  private chunkIdFor(name: string, index: number): string {
    let chunkId = this.q.chunkIdOf.get(name, index) as string | undefined
    if (!chunkId) {
      chunkId = randomBytes(12).toString('hex')
      this.q.insertChunkId.run(name, index, chunkId)
    }
    this.q.insertChunk.run(chunkId)
    return chunkId
  }

  /**
   * The version to skip at, when the cluster already holds these bytes: the committed version with the
   * same bytes and a fresh replica on an alive node, or a planned version with the same bytes and ≥ W
   * replicas recorded (a re-run of an interrupted upload resumes instead of starting over).
   */
  private versionAlreadyHeld(chunk: ChunkRow, size: number, sha256: string): number | undefined {
    const v = chunk.committed_version
    if (v > 0 && chunk.size === size && chunk.sha256 === sha256) {
      const holders = this.q.goodHolders.all(chunk.chunk_id, v, sha256) as string[]
      if (holders.some((node) => this.ctx.nodes.isAlive(node))) return v
    }
    for (const version of this.q.plannedSame.all(chunk.chunk_id, size, sha256, v).map((r) => (r as {version: number}).version)) {
      if ((this.q.goodHolders.all(chunk.chunk_id, version, sha256) as string[]).length >= this.ctx.minReplicas) return version
    }
    return undefined
  }

  private candidates(): PlacementCandidate[] {
    return this.ctx.nodes.placeable().map((node) => ({id: node.id, zone: node.zone, freeBytes: node.freeBytes, usedBytes: node.usedBytes}))
  }

  private planned(
    chunk: {index: number; chunkId: string; version: number; size: number; sha256: string; skip: boolean},
    placed: readonly PlacementCandidate[],
  ): PlannedChunk {
    const targets: Target[] = placed.map((p) => {
      const node = this.ctx.nodes.get(p.id)!
      return {id: node.id, url: node.url, zone: node.zone}
    })
    const grant = chunk.skip
      ? ''
      : signGrant(
          {
            chunkId: chunk.chunkId,
            version: chunk.version,
            size: chunk.size,
            sha256: chunk.sha256,
            nodes: targets.map((t) => t.id),
            exp: this.ctx.clock.now() + GRANT_TTL_MS,
            fence: this.ctx.leadership,
          },
          this.ctx.grantKey,
        )
    return {index: chunk.index, chunkId: chunk.chunkId, version: chunk.version, size: chunk.size, sha256: chunk.sha256, skip: chunk.skip, targets, grant}
  }
}

function uploadNotFound(uploadId: string): ChunkyError {
  return new ChunkyError('UPLOAD_NOT_FOUND', `no upload ${uploadId} in progress (it was committed, removed or expired): upload again`)
}
