import type {ReplicaInfo} from '../protocol/index.js'
import type {MasterContext} from './context.js'
import {DeleteSender} from './nodes.js'
import {judgeReplica, type ChunkRecord, type ReplicaContext, type Verdict} from './report.js'

type LookupRow = ChunkRecord & {plannedSize: number | null; plannedSha: string | null; corrupt: number | null}
type ReportBatch = {reportId: string; done: boolean; replicas: ReplicaInfo[]}

interface ReportProgress {
  reportId: string
  startedMs: number
  counts: Record<Verdict, number>
  staleLogged: number
}

/** Individual "chunk X on node N is stale" lines per report; the rest are counted in its summary line. */
const STALE_LINES_PER_REPORT = 20

/** What nodes tell the master about the replicas they hold: stored, deleted, corrupt, full reports. */
export class ReplicaRecords {
  private readonly q
  private readonly reports = new Map<string, ReportProgress>()
  /** Report deletes are logged once per report, apart from other deletes. */
  private readonly deletes: DeleteSender

  constructor(private readonly ctx: MasterContext) {
    this.deletes = new DeleteSender(ctx.nodes, ctx.log)
    const db = ctx.db
    this.q = {
      lookup: db.prepare(`SELECT c.committed_version AS committedVersion, c.max_version AS maxVersion, c.size, c.sha256,
          p.size AS plannedSize, p.sha256 AS plannedSha, r.corrupt
        FROM chunks c
          LEFT JOIN planned p ON p.chunk_id = c.chunk_id AND p.version = @version
          LEFT JOIN replicas r ON r.chunk_id = c.chunk_id AND r.version = @version AND r.node_id = @nodeId
        WHERE c.chunk_id = @chunkId`),
      upsert: db.prepare(`INSERT INTO replicas (chunk_id, node_id, version, sha256, corrupt, seen) VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (chunk_id, node_id, version) DO UPDATE SET sha256 = excluded.sha256, corrupt = excluded.corrupt,
          seen = coalesce(excluded.seen, replicas.seen)`),
      markCorrupt: db.prepare('UPDATE replicas SET corrupt = 1 WHERE chunk_id = ? AND node_id = ? AND version = ?'),
      remove: db.prepare('DELETE FROM replicas WHERE chunk_id = ? AND node_id = ? AND version = ?'),
      raiseMaxVersion: db.prepare('UPDATE chunks SET max_version = max(max_version, ?) WHERE chunk_id = ?'),
      plannedRecovered: db.prepare(
        "INSERT OR IGNORE INTO planned (chunk_id, version, size, sha256, upload_id) VALUES (?, ?, ?, ?, 'recovered')",
      ),
      forgetUnseen: db.prepare('DELETE FROM replicas WHERE node_id = ? AND (seen IS NULL OR seen NOT IN (?, ?))'),
    }
  }

  /**
   * A replica became durable on a node. Recorded only if the master planned it (or it is the committed
   * version with the same bytes, e.g. a repair copy); the node answers the client only after this.
   */
  stored(nodeId: string, linkId: number, replica: ReplicaInfo): {ok: true} | {ok: false; error: string} {
    const verdict = judgeReplica(replica, this.context(nodeId, replica, false))
    if (verdict === 'fresh' || verdict === 'pending') {
      this.q.upsert.run(replica.chunkId, nodeId, replica.version, replica.sha256, 0, storedMarker(linkId))
      return {ok: true}
    }
    const error =
      verdict === 'stale'
        ? `chunk ${replica.chunkId} v${replica.version} is older than the committed version`
        : `chunk ${replica.chunkId} v${replica.version} with these bytes was not planned by the master`
    this.ctx.deletes.send(nodeId, replica.chunkId, replica.version, verdict === 'stale' ? 'stale' : 'unreferenced')
    this.ctx.deletes.flush(`(refused stored from ${nodeId}: ${error})`)
    return {ok: false, error}
  }

  deleted(nodeId: string, chunkId: string, version: number): void {
    this.q.remove.run(chunkId, nodeId, version)
  }

  /** Scrubbing or a verify found rotten bytes: mark it, have it deleted; the repair loop replaces it. */
  corrupt(nodeId: string, chunkId: string, version: number): void {
    const marked = this.q.markCorrupt.run(chunkId, nodeId, version).changes > 0
    this.ctx.log(`replica of chunk ${chunkId} v${version} on ${nodeId} is corrupt${marked ? '' : ' (not on record)'}: deleting it`)
    this.ctx.deletes.send(nodeId, chunkId, version, 'corrupt')
    this.ctx.deletes.flush('(corrupt replica)')
  }

  /**
   * One batch of a node's full inventory, in one transaction. On the batch with done: true, the node's
   * replica rows that no batch of this report mentioned are forgotten. Returns true when the report is done.
   */
  reportBatch(nodeId: string, linkId: number, batch: ReportBatch): boolean {
    let progress = this.reports.get(nodeId)
    if (!progress || progress.reportId !== batch.reportId) {
      progress = {reportId: batch.reportId, startedMs: this.ctx.clock.now(), counts: emptyCounts(), staleLogged: 0}
      this.reports.set(nodeId, progress)
    }
    const report = progress
    const toDelete: {replica: ReplicaInfo; reason: 'stale' | 'corrupt' | 'unreferenced'}[] = []

    this.ctx.db.transaction(() => {
      for (const replica of batch.replicas) {
        const context = this.context(nodeId, replica, true)
        const verdict = judgeReplica(replica, context)
        report.counts[verdict]++
        const {chunkId, version, sha256} = replica
        switch (verdict) {
          case 'fresh':
          case 'pending':
            this.q.upsert.run(chunkId, nodeId, version, sha256, 0, report.reportId)
            break
          case 'corrupt':
            this.q.upsert.run(chunkId, nodeId, version, sha256, 1, report.reportId)
            toDelete.push({replica, reason: 'corrupt'})
            break
          case 'stale':
            // Recorded so status shows it as stale (true) until the node confirms the delete.
            this.q.upsert.run(chunkId, nodeId, version, sha256, context.knownCorrupt ? 1 : 0, report.reportId)
            toDelete.push({replica, reason: 'stale'})
            if (report.staleLogged++ < STALE_LINES_PER_REPORT) {
              this.ctx.log(`chunk ${chunkId} on node ${nodeId} is stale (v${version} < v${context.chunk!.committedVersion})`)
            }
            break
          case 'ahead':
            this.q.raiseMaxVersion.run(version, chunkId) // never hand this number out again
            this.q.plannedRecovered.run(chunkId, version, replica.size, sha256)
            this.q.upsert.run(chunkId, nodeId, version, sha256, 0, report.reportId)
            this.ctx.log(
              `chunk ${chunkId} on node ${nodeId} is at v${version}, above any version this master handed out ` +
                `(v${context.chunk!.maxVersion}): keeping it as pending, versions continue above it`,
            )
            break
          case 'unreferenced':
            this.q.remove.run(chunkId, nodeId, version)
            toDelete.push({replica, reason: 'unreferenced'})
            break
        }
      }
      if (batch.done) this.q.forgetUnseen.run(nodeId, report.reportId, storedMarker(linkId))
    })()

    for (const {replica, reason} of toDelete) this.deletes.send(nodeId, replica.chunkId, replica.version, reason)
    if (!batch.done) return false

    this.reports.delete(nodeId)
    const c = report.counts
    const total = Object.values(c).reduce((a, b) => a + b, 0)
    const moreStale = report.staleLogged > STALE_LINES_PER_REPORT ? ` (${report.staleLogged - STALE_LINES_PER_REPORT} stale not listed)` : ''
    this.ctx.log(
      `report from ${nodeId}: ${total} replicas (fresh ${c.fresh}, stale ${c.stale}, corrupt ${c.corrupt}, ` +
        `pending ${c.pending + c.ahead}, unreferenced ${c.unreferenced}) in ${this.ctx.clock.now() - report.startedMs}ms${moreStale}`,
    )
    this.deletes.flush(`after ${nodeId}'s report`)
    return true
  }

  /** A node's link closed: an unfinished report of it will never finish. */
  forgetReport(nodeId: string): void {
    this.reports.delete(nodeId)
  }

  /** Everything judging one replica needs, in one statement (reports come 2000 entries at a time). */
  private context(nodeId: string, replica: ReplicaInfo, fromReport: boolean): ReplicaContext {
    const row = this.q.lookup.get({chunkId: replica.chunkId, version: replica.version, nodeId}) as LookupRow | undefined
    if (!row) return {chunk: undefined, planned: undefined, knownCorrupt: false}
    const {committedVersion, maxVersion, size, sha256} = row
    return {
      chunk: {committedVersion, maxVersion, size, sha256},
      planned: row.plannedSha === null ? undefined : {size: row.plannedSize!, sha256: row.plannedSha},
      knownCorrupt: fromReport && row.corrupt === 1,
    }
  }
}

/**
 * `seen` of a replica recorded by `stored` on link N. A report's last batch forgets the node's rows
 * that neither this report nor a `stored` on the same link mentioned: a chunk stored after the node
 * listed its inventory is not in the report, yet it is there. Rows from older links must be reported.
 */
function storedMarker(linkId: number): string {
  return `link:${linkId}`
}

function emptyCounts(): Record<Verdict, number> {
  return {fresh: 0, stale: 0, corrupt: 0, pending: 0, ahead: 0, unreferenced: 0}
}
