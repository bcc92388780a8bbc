import {randomBytes} from 'node:crypto'
import {type ReplicaInfo, signTransferGrant} from '../protocol/index.js'
import {formatBytes} from '../util/parse.js'
import type {MasterContext} from './context.js'
import {DeleteSender, type DeleteReason} from './nodes.js'
import {planExcess, planReplication, type RepairChunk, type RepairNode} from './repair.js'

/** A transfer not answered within this long is forgotten (its slot freed; the chunks are planned again). */
export const TASK_TIMEOUT_MS = 120_000
/** Uploads not committed within this long are forgotten; their pending replicas become garbage. */
export const UPLOAD_TTL_MS = 24 * 3_600_000
/** A delete not confirmed within this long is sent again, at most this many per round. */
const DELETE_RESEND_MS = 30_000
const DELETE_RESENDS_PER_ROUND = 1000
/**
 * Transfers per node at once, and copies per transfer. Several smaller transfers rather than one long
 * one: within a transfer the target overlaps only a few entries (node/replicate.ts), so parallel
 * transfers keep disk and network busy (bench/: one 64-chunk transfer ran at about a third of rsync's
 * throughput). Still bounded, so repair does not starve uploads.
 */
const REPAIR_TASKS_PER_NODE = 4
const REPAIR_REPLICAS_PER_TASK = 8

/** What the dashboard shows of repair (read-only): transfers in flight and bytes copied so far. */
export interface RepairProgress {
  running: {id: string; source: string; target: string; chunks: number; bytes: number; startedMs: number}[]
  /** Bytes of replicas that finished transfers copied since the master started (only ever grows). */
  bytesRepaired: number
}

interface RunningTask {
  id: string
  source: string
  target: string
  replicas: ReplicaInfo[]
  startedMs: number
}

type ChunkRow = {chunk_id: string; version: number; size: number; sha256: string}
type ReplicaRow = {node_id: string; version: number; sha256: string; corrupt: number}
type LeftoverRow = {node_id: string; chunk_id: string; version: number; reason: DeleteReason}

/**
 * The self-healing loop (issue 3): brings every committed chunk back to R fresh replicas on alive
 * nodes, trims replicas beyond R, and resends deletes that were never confirmed. Runs every
 * repairIntervalMs, and soon after a node dies or finishes its report (kick()).
 */
export class RepairLoop {
  private readonly running = new Map<string, RunningTask>()
  private readonly loggedUnrepairable = new Set<string>()
  private readonly deletes: DeleteSender
  private readonly resentAt = new Map<string, number>()
  private readonly q
  private kicked: NodeJS.Immediate | undefined
  private stopped = false
  /** Chunks below R at the last round and not in a transfer (metrics: the repair queue). */
  private queued = 0
  private bytesRepaired = 0

  constructor(
    private readonly ctx: MasterContext,
    private readonly expireUploads: (maxAgeMs: number) => number,
  ) {
    this.deletes = new DeleteSender(ctx.nodes, ctx.log, ctx.metrics)
    const db = ctx.db
    // Committed chunks whose count of fresh replicas on alive nodes is not R.
    this.q = {
      unbalanced: db.prepare(`SELECT * FROM (
          SELECT c.chunk_id, c.committed_version AS version, c.size, c.sha256,
            (SELECT count(*) FROM replicas r WHERE r.chunk_id = c.chunk_id AND r.version = c.committed_version
              AND r.sha256 = c.sha256 AND r.corrupt = 0 AND r.node_id IN (SELECT value FROM json_each(?))) AS fresh
          FROM chunks c WHERE c.committed_version > 0)
        WHERE fresh != ?`),
      replicas: db.prepare('SELECT node_id, version, sha256, corrupt FROM replicas WHERE chunk_id = ?'),
      removeReplica: db.prepare('DELETE FROM replicas WHERE chunk_id = ? AND node_id = ? AND version = ?'),
      leftovers: db.prepare(`SELECT r.node_id, r.chunk_id, r.version,
          CASE WHEN c.chunk_id IS NULL THEN 'unreferenced' WHEN r.version < c.committed_version THEN 'stale' ELSE 'corrupt' END AS reason
        FROM replicas r LEFT JOIN chunks c ON c.chunk_id = r.chunk_id
        WHERE r.node_id IN (SELECT value FROM json_each(?))
          AND (c.chunk_id IS NULL OR r.version < c.committed_version OR r.corrupt = 1
            OR (r.version = c.committed_version AND r.sha256 != c.sha256))
        LIMIT 20000`),
    }
  }

  /** Transfers a node takes part in now (readers prefer lightly loaded nodes). */
  loadOf(nodeId: string): number {
    let n = 0
    for (const task of this.running.values()) if (task.source === nodeId || task.target === nodeId) n++
    return n
  }

  /** Transfers in flight and bytes repaired so far (for the dashboard; changes nothing). */
  progress(): RepairProgress {
    const running = [...this.running.values()].map((task) => ({
      id: task.id,
      source: task.source,
      target: task.target,
      chunks: task.replicas.length,
      bytes: task.replicas.reduce((sum, r) => sum + r.size, 0),
      startedMs: task.startedMs,
    }))
    return {running, bytesRepaired: this.bytesRepaired}
  }

  /** The repair queue for metrics: chunks waiting for a transfer (as of the last round) and transfers running. */
  queue(): {queued: number; running: number} {
    return {queued: this.queued, running: this.running.size}
  }

  /** Run a round soon (coalesced): after a node died or finished its report. */
  kick(): void {
    if (this.kicked || this.stopped) return
    this.kicked = setImmediate(() => {
      this.kicked = undefined
      this.runSafely()
    })
  }

  stop(): void {
    this.stopped = true
    if (this.kicked) clearImmediate(this.kicked)
  }

  runSafely(): void {
    if (this.stopped) return
    try {
      this.run()
    } catch (err) {
      this.ctx.log.error({event: 'repair.round_failed', error: (err as Error).message}, `repair round failed: ${(err as Error).message}`)
    }
  }

  /** One round: forget timed-out transfers, start new ones, trim surplus, resend lost deletes. */
  run(): void {
    const {ctx} = this
    const now = ctx.clock.now()
    for (const task of this.running.values()) {
      if (now - task.startedMs > TASK_TIMEOUT_MS) {
        this.running.delete(task.id)
        ctx.metrics.repairTransfers.inc({event: 'timed_out'})
        ctx.log.warn(
          {event: 'repair.timed_out', taskId: task.id, source: task.source, target: task.target, chunks: task.replicas.length},
          `repair ${task.id} from ${task.source} to ${task.target} got no answer in ${TASK_TIMEOUT_MS / 1000}s: forgotten`,
        )
      }
    }

    const nodes = this.repairNodes()
    const alive = nodes.filter((node) => node.alive).map((node) => node.id)
    const rows = this.q.unbalanced.all(JSON.stringify(alive), ctx.replicas) as (ChunkRow & {fresh: number})[]
    const chunks = rows.map((row) => this.repairChunk(row))
    const busy = new Set([...this.running.values()].flatMap((task) => task.replicas.map((r) => r.chunkId)))
    const running = new Map(nodes.map((node) => [node.id, this.loadOf(node.id)]))

    const {tasks, unrepairable} = planReplication({
      chunks, nodes, replicas: ctx.replicas, running, busyChunks: busy,
      maxTasksPerNode: REPAIR_TASKS_PER_NODE, maxReplicasPerTask: REPAIR_REPLICAS_PER_TASK,
    })
    for (const planned of tasks) this.start(planned.source, planned.target, planned.replicas)
    const inTransfer = new Set([...this.running.values()].flatMap((task) => task.replicas.map((r) => r.chunkId)))
    this.queued = rows.filter((row) => row.fresh < ctx.replicas && !inTransfer.has(row.chunk_id)).length
    this.noteUnrepairable(unrepairable)

    for (const excess of planExcess(chunks, nodes, ctx.replicas)) {
      // Forget the row at once so the next round does not count it and trim a second holder.
      this.q.removeReplica.run(excess.chunkId, excess.nodeId, excess.version)
      this.deletes.send(excess.nodeId, excess.chunkId, excess.version, 'excess')
    }
    this.deletes.flush('(replicas beyond R)')

    this.resendDeletes(nodes.filter((node) => node.usable).map((node) => node.id), now)
    const expired = this.expireUploads(UPLOAD_TTL_MS)
    if (expired > 0) ctx.log.info({event: 'upload.expired', count: expired}, `forgot ${expired} upload${expired === 1 ? '' : 's'} never committed within ${UPLOAD_TTL_MS / 3_600_000}h`)
  }

  /** A `replicated` answer: frees the transfer's slot. Returns the task (undefined if unknown or timed out). */
  finish(taskId: string, okReplicas: readonly ReplicaInfo[], failed: number): RunningTask | undefined {
    const task = this.running.get(taskId)
    if (!task) return undefined
    this.running.delete(taskId)
    const seconds = Math.max(0.001, (this.ctx.clock.now() - task.startedMs) / 1000)
    const bytes = okReplicas.reduce((sum, r) => sum + r.size, 0)
    this.bytesRepaired += bytes
    const rate = (bytes / 1e6 / seconds).toFixed(1)
    this.ctx.metrics.repairTransfers.inc({event: 'finished'})
    this.ctx.metrics.repairedChunks.inc(okReplicas.length)
    this.ctx.metrics.repairedBytes.inc(bytes)
    this.ctx.log.info(
      {event: 'repair.finished', taskId, source: task.source, target: task.target, chunks: okReplicas.length, bytes, ms: Math.round(seconds * 1000), failed},
      `repair ${taskId} finished: ${okReplicas.length} chunk${okReplicas.length === 1 ? '' : 's'} from ${task.source} to ${task.target} ` +
        `(${formatBytes(bytes)} in ${seconds.toFixed(2)}s, ${rate} MB/s)${failed > 0 ? `, ${failed} failed` : ''}`,
    )
    this.kick() // there may be more to do now that slots are free
    return task
  }

  private start(source: string, target: string, replicas: ReplicaInfo[]): void {
    const sourceNode = this.ctx.nodes.get(source)
    if (!sourceNode) return
    const id = randomBytes(6).toString('hex')
    // The source serves the transfer only with this grant (and a node credential): nobody else can pull chunks.
    const grant = signTransferGrant(
      {kind: 'transfer', source, target, replicas: replicas.map(({chunkId, version}) => ({chunkId, version})), exp: this.ctx.clock.now() + TASK_TIMEOUT_MS},
      this.ctx.grantKey,
    )
    const sent = this.ctx.nodes.send(target, {type: 'replicate', taskId: id, source: {id: source, url: sourceNode.url}, replicas, grant})
    if (!sent) return
    this.running.set(id, {id, source, target, replicas, startedMs: this.ctx.clock.now()})
    const bytes = replicas.reduce((sum, r) => sum + r.size, 0)
    this.ctx.metrics.repairTransfers.inc({event: 'started'})
    this.ctx.log.info(
      {event: 'repair.started', taskId: id, source, target, chunks: replicas.map(({chunkId, version}) => ({chunkId, version})), bytes},
      `repair ${id} started: ${replicas.length} chunk${replicas.length === 1 ? '' : 's'} (${formatBytes(bytes)}) from ${source} to ${target}`,
    )
  }

  private noteUnrepairable(chunkIds: string[]): void {
    const now = new Set(chunkIds)
    const fresh = chunkIds.filter((id) => !this.loggedUnrepairable.has(id))
    for (const id of this.loggedUnrepairable) if (!now.has(id)) this.loggedUnrepairable.delete(id)
    for (const id of fresh) this.loggedUnrepairable.add(id)
    if (fresh.length === 0) return
    const listed = fresh.slice(0, 5).join(', ') + (fresh.length > 5 ? `, and ${fresh.length - 5} more` : '')
    this.ctx.log.warn({event: 'repair.unrepairable', count: fresh.length, chunkIds: fresh.slice(0, 1000)}, `cannot repair ${fresh.length} chunk${fresh.length === 1 ? '' : 's'} now: no fresh replica on an alive node (${listed})`)
  }

  /** Stale, corrupt and orphaned rows on connected nodes whose delete was lost: send it again (bounded). */
  private resendDeletes(connected: string[], now: number): void {
    for (const [key, at] of this.resentAt) if (now - at > 10 * DELETE_RESEND_MS) this.resentAt.delete(key)
    let sent = 0
    for (const row of this.q.leftovers.all(JSON.stringify(connected)) as LeftoverRow[]) {
      const key = `${row.node_id} ${row.chunk_id} ${row.version}`
      const last = this.resentAt.get(key)
      if (last === undefined) {
        this.resentAt.set(key, now) // the first delete went out when it was found; give it time
        continue
      }
      if (now - last < DELETE_RESEND_MS) continue
      this.resentAt.set(key, now)
      this.deletes.send(row.node_id, row.chunk_id, row.version, row.reason)
      if (++sent >= DELETE_RESENDS_PER_ROUND) break
    }
    this.deletes.flush('(resent: not confirmed yet)')
  }

  private repairNodes(): RepairNode[] {
    const {nodes} = this.ctx
    return nodes.all().map((node) => {
      const alive = nodes.isAlive(node.id)
      return {id: node.id, zone: node.zone, freeBytes: node.freeBytes, alive, usable: alive && nodes.isConnected(node.id)}
    })
  }

  private repairChunk(row: ChunkRow): RepairChunk {
    const replicas = (this.q.replicas.all(row.chunk_id) as ReplicaRow[]).map((r) => ({
      nodeId: r.node_id,
      version: r.version,
      sha256: r.sha256,
      corrupt: r.corrupt === 1,
    }))
    return {chunkId: row.chunk_id, version: row.version, size: row.size, sha256: row.sha256, replicas}
  }
}
