import type {ReplicaInfo} from '../protocol/index.js'
import type {MasterContext} from './context.js'
import {relaxedDurability} from './db.js'
import {DeleteSender} from './nodes.js'
import type {ReplicaTable} from './replica-table.js'
import {judgeReplica, type ChunkRecord, type ReplicaContext, type Verdict} from './report.js'

type LookupRow = ChunkRecord & {plannedSha: string | null; corrupt: number | null}
type BatchLookupRow = LookupRow & {i: number; recordedSha: string | null}
/** What the master already has on record for a reported replica: unchanged rows are not written again. */
type Recorded = {sha256: string; corrupt: number} | undefined
type ReportBatch = {reportId: string; done: boolean; replicas: ReplicaInfo[]}

interface ReportProgress {
  reportId: string
  startedMs: number
  /** `chunkId.version` of every entry so far: the last batch forgets the node's rows not among them. */
  reported: Set<string>
  /** Those of `reported` that have a row on record now (everything but 'unreferenced'). */
  recorded: Set<string>
  /** table.removals() when the report began: rows removed meanwhile by anything else make counting unsafe. */
  removalsAtStart: number
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

  private readonly table: ReplicaTable

  constructor(private readonly ctx: MasterContext) {
    this.deletes = new DeleteSender(ctx.nodes, ctx.log, ctx.metrics, ctx.pendingDeletes, ctx.durable)
    this.table = ctx.replicaTable
    const db = ctx.db
    this.q = {
      lookup: db.prepare(`SELECT c.committed_version AS committedVersion, c.max_version AS maxVersion, c.size, c.sha256,
          p.sha256 AS plannedSha, r.corrupt
        FROM chunks c
          LEFT JOIN planned p ON p.chunk_id = c.chunk_id AND p.version = @version
          LEFT JOIN replicas r ON r.chunk_id = c.chunk_id AND r.version = @version AND r.node_id = @nodeId
        WHERE c.chunk_id = @chunkId`),
      raiseMaxVersion: db.prepare('UPDATE chunks SET max_version = max(max_version, ?) WHERE chunk_id = ?'),
      plannedRecovered: db.prepare(
        "INSERT OR IGNORE INTO planned (chunk_id, version, size, sha256, upload_id) VALUES (?, ?, ?, ?, 'recovered')",
      ),
      // The lookup above for a whole report batch at once: entries as JSON [[chunkId, version], ...].
      lookupMany: db.prepare(`SELECT e.i, c.committed_version AS committedVersion, c.max_version AS maxVersion, c.size, c.sha256,
          p.sha256 AS plannedSha, r.corrupt, r.sha256 AS recordedSha
        FROM (SELECT key AS i, value ->> 0 AS chunkId, value ->> 1 AS version FROM json_each(@entries)) e
          JOIN chunks c ON c.chunk_id = e.chunkId
          LEFT JOIN planned p ON p.chunk_id = c.chunk_id AND p.version = e.version
          LEFT JOIN replicas r ON r.chunk_id = c.chunk_id AND r.version = e.version AND r.node_id = @nodeId`),
    }
  }

  /**
   * A replica became durable on a node. Recorded only if the master planned it (or it is the committed
   * version with the same bytes, e.g. a repair copy); the node answers the client only after this.
   */
  stored(nodeId: string, linkId: string, replica: ReplicaInfo): {ok: true} | {ok: false; error: string} {
    const verdict = judgeReplica(replica, this.context(nodeId, replica, false))
    if (verdict === 'fresh' || verdict === 'pending') {
      // Relaxed: the commit that counts this row is a synchronous=FULL transaction (see relaxedDurability).
      relaxedDurability(this.ctx.db, () => this.table.record(nodeId, replica.chunkId, replica.version, replica.sha256, false, storedMarker(linkId)))
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
    // Relaxed: a removal lost in a crash is undone by the node's next report, which leaves this copy out.
    relaxedDurability(this.ctx.db, () => this.table.remove(nodeId, chunkId, version))
    this.ctx.pendingDeletes.confirmed(nodeId, chunkId, version)
  }

  /** Scrubbing or a verify found rotten bytes: mark it, have it deleted; the repair loop replaces it. */
  corrupt(nodeId: string, chunkId: string, version: number): void {
    const marked = this.table.markCorrupt(nodeId, chunkId, version)
    this.ctx.log.warn({event: 'replica.corrupt', nodeId, chunkId, version, onRecord: marked}, `replica of chunk ${chunkId} v${version} on ${nodeId} is corrupt${marked ? '' : ' (not on record)'}: deleting it`)
    this.ctx.deletes.send(nodeId, chunkId, version, 'corrupt')
    this.ctx.deletes.flush('(corrupt replica)')
  }

  /**
   * One batch of a node's full inventory, in one transaction. On the batch with done: true, the node's
   * replica rows that no batch of this report mentioned are forgotten. Returns true when the report is done.
   */
  reportBatch(nodeId: string, linkId: string, batch: ReportBatch): boolean {
    let progress = this.reports.get(nodeId)
    if (!progress || progress.reportId !== batch.reportId) {
      progress = {
        reportId: batch.reportId,
        startedMs: this.ctx.clock.now(),
        reported: new Set(),
        recorded: new Set(),
        removalsAtStart: this.table.removals(),
        counts: emptyCounts(),
        staleLogged: 0,
      }
      this.reports.set(nodeId, progress)
    }
    const report = progress
    const toDelete: {replica: ReplicaInfo; reason: 'stale' | 'corrupt' | 'unreferenced'}[] = []

    // One transaction per batch, replica rows only (relaxed: the nodes report them again after a crash);
    // the lookups and the common upserts go through one statement per batch, not one per entry.
    relaxedDurability(this.ctx.db, () => this.ctx.db.transaction(() => {
      const contexts = this.contexts(nodeId, batch.replicas)
      const upserts: [string, number, string, 0 | 1][] = []
      batch.replicas.forEach((replica, i) => {
        const {context, recorded} = contexts[i]!
        const verdict = judgeReplica(replica, context)
        report.counts[verdict]++
        const {chunkId, version, sha256} = replica
        const key = replicaKey(chunkId, version)
        report.reported.add(key)
        if (verdict === 'unreferenced') report.recorded.delete(key)
        else report.recorded.add(key)
        // A row already on record as it is now (the common case on a reconnect) is not written again.
        const record = (corrupt: 0 | 1) => {
          if (recorded?.sha256 !== sha256 || recorded.corrupt !== corrupt) upserts.push([chunkId, version, sha256, corrupt])
        }
        switch (verdict) {
          case 'fresh':
          case 'pending':
            record(0)
            break
          case 'corrupt':
            record(1)
            toDelete.push({replica, reason: 'corrupt'})
            break
          case 'stale':
            // Recorded so status shows it as stale (true) until the node confirms the delete.
            record(0)
            toDelete.push({replica, reason: 'stale'})
            {
              // The first STALE_LINES_PER_REPORT at info, the rest at debug (the report's summary line counts them).
              const level = report.staleLogged++ < STALE_LINES_PER_REPORT ? 'info' : 'debug'
              const committedVersion = context.chunk!.committedVersion
              this.ctx.log[level]({event: 'chunk.stale', nodeId, chunkId, version, committedVersion}, `chunk ${chunkId} on node ${nodeId} is stale (v${version} < v${committedVersion})`)
            }
            break
          case 'ahead':
            this.q.raiseMaxVersion.run(version, chunkId) // never hand this number out again
            this.q.plannedRecovered.run(chunkId, version, replica.size, sha256)
            record(0)
            this.ctx.log.warn(
              {event: 'chunk.ahead', nodeId, chunkId, version, maxVersion: context.chunk!.maxVersion},
              `chunk ${chunkId} on node ${nodeId} is at v${version}, above any version this master handed out ` +
                `(v${context.chunk!.maxVersion}): keeping it as pending, versions continue above it`,
            )
            break
          case 'unreferenced':
            this.table.remove(nodeId, chunkId, version)
            toDelete.push({replica, reason: 'unreferenced'})
            break
        }
      })
      this.table.recordMany(nodeId, upserts, report.reportId)
      if (batch.done) this.forgetUnreported(nodeId, linkId, report)
    })())

    for (const {replica, reason} of toDelete) this.deletes.send(nodeId, replica.chunkId, replica.version, reason)
    if (!batch.done) return false

    this.reports.delete(nodeId)
    const c = report.counts
    const total = Object.values(c).reduce((a, b) => a + b, 0)
    const moreStale = report.staleLogged > STALE_LINES_PER_REPORT ? ` (${report.staleLogged - STALE_LINES_PER_REPORT} stale not listed)` : ''
    this.ctx.log.info(
      {event: 'report.done', nodeId, replicas: total, fresh: c.fresh, stale: c.stale, corrupt: c.corrupt, pending: c.pending + c.ahead, unreferenced: c.unreferenced, ms: this.ctx.clock.now() - report.startedMs},
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

  /** Everything judging one replica needs, in one statement. */
  private context(nodeId: string, replica: ReplicaInfo, fromReport: boolean): ReplicaContext {
    const row = this.q.lookup.get({chunkId: replica.chunkId, version: replica.version, nodeId}) as LookupRow | undefined
    return toContext(row, fromReport)
  }

  /** context() of every entry of a report batch (2000 at a time), and its row on record, in one statement. */
  private contexts(nodeId: string, replicas: readonly ReplicaInfo[]): {context: ReplicaContext; recorded: Recorded}[] {
    const rows = this.q.lookupMany.all({nodeId, entries: JSON.stringify(replicas.map((r) => [r.chunkId, r.version]))}) as BatchLookupRow[]
    const byIndex: (BatchLookupRow | undefined)[] = new Array(replicas.length)
    for (const row of rows) byIndex[row.i] = row
    return replicas.map((_, i) => {
      const row = byIndex[i]
      const recorded = row && row.recordedSha !== null ? {sha256: row.recordedSha, corrupt: row.corrupt ?? 0} : undefined
      return {context: toContext(row, true), recorded}
    })
  }

  /**
   * The end of a report: the node's rows that no batch of it mentioned are gone from the node, except
   * those a `stored` on this same link recorded (written after the node listed its inventory).
   */
  private forgetUnreported(nodeId: string, linkId: string, report: ReportProgress): void {
    // The common case (a node reconnecting with what the master knows): every row of the node is one
    // this report recorded, so there is nothing to forget and no need to read the rows back.
    // Exact only if no row was removed meanwhile (a removed reported row could hide an unreported one).
    if (this.table.countOfNode(nodeId) === report.recorded.size && this.table.removals() === report.removalsAtStart) return
    const {reported} = report
    const marker = storedMarker(linkId)
    for (const row of this.table.rowsOfNode(nodeId)) {
      if (row.seen !== marker && !reported.has(replicaKey(row.chunkId, row.version))) this.table.remove(nodeId, row.chunkId, row.version)
    }
  }
}

function toContext(row: LookupRow | undefined, fromReport: boolean): ReplicaContext {
  if (!row) return {chunk: undefined, planned: undefined, knownCorrupt: false}
  const {committedVersion, maxVersion, size, sha256} = row
  return {
    chunk: {committedVersion, maxVersion, size, sha256},
    planned: row.plannedSha === null ? undefined : {sha256: row.plannedSha},
    knownCorrupt: fromReport && row.corrupt === 1,
  }
}

/**
 * `seen` of a replica recorded by `stored` on link N. A report's last batch forgets the node's rows
 * that neither this report nor a `stored` on the same link mentioned: a chunk stored after the node
 * listed its inventory is not in the report, yet it is there. Rows from older links must be reported.
 * Link ids are unique across master restarts (node-link.ts), or a row stored on link 3 of an earlier
 * run would pass as stored on this run's link 3 and survive every report.
 */
function storedMarker(linkId: string): string {
  return `link:${linkId}`
}

const replicaKey = (chunkId: string, version: number) => `${chunkId}.${version}`

function emptyCounts(): Record<Verdict, number> {
  return {fresh: 0, stale: 0, corrupt: 0, pending: 0, ahead: 0, unreferenced: 0}
}
