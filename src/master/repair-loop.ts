import {randomBytes} from 'node:crypto'
import {type ReplicaInfo, signTransferGrant} from '../protocol/index.js'
import {formatBytes, formatDuration} from '../util/parse.js'
import {CommittedBytes} from './committed-bytes.js'
import type {MasterContext} from './context.js'
import {relaxedDurability} from './db.js'
import {DeleteSender, type DeleteReason, type NodeChange} from './nodes.js'
import {countsTowardR, planExcess, planReplication, transferKey, type RepairChunk, type RepairNode} from './repair.js'
import {replicaState} from './replica-state.js'
import type {ReplicaRow} from './replica-table.js'

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
/** One slice of a round works at most this long before it lets heartbeats and requests in. */
const SLICE_MS = 12
/** Chunks looked at per database query. */
const EVALUATE_BATCH = 100
/** counts() looks at up to this many waiting changes itself (a few ms); more, and the caller counts apart (chunk-counts.ts). */
const LOOK_NOW_LIMIT = 500
/** Chunk ids of one node (after it died or came back) marked for a look per page. */
const NODE_SCAN_PAGE = 2000
/** At most this many chunks are planned in one round (there are never more free transfer slots than that). */
const PLAN_PER_ROUND = 256
/** Chunks planned at once, and the time a slice may spend planning groups of them. */
const PLAN_GROUP = 32
const PLAN_MS = 8
/** Rebalancing: nodes count as balanced within this share of the mean fill, plus this many chunks' worth. */
export const BALANCE_BAND = 0.1
const BALANCE_SLACK_CHUNKS = 2
/** Background work (rebalancing, forgetting expired uploads) is looked at this often, not on every round. */
const HOUSEKEEPING_MS = 1000
/** Moves run only while nothing needs repair, at most this many transfers at once (one per node). */
const MOVE_TASKS = 2
/** Chunk ids of the fullest node looked through per round for copies to move. */
const MOVE_SCAN = 400
/** A source→target pair whose transfer copied nothing waits this long, doubling up to the maximum. */
const PAIR_BACKOFF_MS = 1000
const PAIR_BACKOFF_MAX_MS = 60_000

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
  /** A rebalancing move: once the copy is recorded, the source's copy is the one trimmed. */
  move: boolean
}

/** Where the cluster stands on balance (GET /api/rebalance, `chunky rebalance`). */
export interface BalanceReport {
  enabled: boolean
  balanced: boolean
  /**
   * The mean fill of alive nodes with a link, and the band around it. A node's fill is the bytes of the
   * fresh copies the master records there ÷ its capacity (used + free): only those copies can move.
   */
  meanFill: number
  band: number
  nodes: {id: string; fill: number; committedBytes: number; usedBytes: number; freeBytes: number; outOfBand: boolean}[]
  /** Copies being moved now, and moved since the master started. */
  moving: number
  moved: number
  /** Why nothing moves now, when something is out of band. */
  waiting?: string
}

type ChunkRecordRow = {chunk_id: string; committed_version: number; size: number; sha256: string}

/**
 * The self-healing loop (issue 3): brings every committed chunk back to R fresh replicas on alive
 * nodes, trims replicas beyond R, and deletes stale, corrupt and unreferenced ones.
 *
 * Its work is proportional to what changed, never to what is stored: every change of a chunk's replicas
 * (replica-table.ts), of its committed version, or of a holder's liveness marks the chunk for a look;
 * a look files the chunk by its count of fresh copies on alive nodes (`needy`), and planning takes
 * from there, fewest copies first, as many as there are free transfer slots. A round with nothing
 * changed and nothing needy costs nothing. Rounds run in slices of at most SLICE_MS, so heartbeats are
 * answered while the master plans, and continue on the next turn of the event loop.
 */
export class RepairLoop {
  private readonly running = new Map<string, RunningTask>()
  /** transferKey of every replica in a running transfer. */
  private readonly busy = new Set<string>()
  /** Chunks to look at. */
  private readonly dirty = new Set<string>()
  /** Nodes whose chunks are to be marked for a look: node id -> the last chunk id marked so far. */
  private readonly nodeScans = new Map<string, string>()
  /** Every chunk is looked at once after the master starts: the last chunk id marked so far. */
  private startScan: string | undefined = ''
  /**
   * Committed chunks below R fresh copies that count (countsTowardR), by that count; index 0: nothing to
   * copy from. A chunk whose only fresh copies are on draining nodes is filed at 1: it has a source.
   */
  private readonly needy: Set<string>[]
  /** Committed chunks below R fresh copies on alive nodes (draining ones count here), as last looked at (status counts). */
  private readonly underReplicated = new Set<string>()
  /** Stale and corrupt copies of each committed chunk that has any, as last looked at, and their totals (status counts). */
  private readonly badCopies = new Map<string, {stale: number; corrupt: number}>()
  private readonly badTotals = {stale: 0, corrupt: 0}
  private readonly pairFailures = new Map<string, {failures: number; untilMs: number}>()
  /** Per source: targets whose pulls from it copied nothing since its last good transfer. */
  private readonly failedPulls = new Map<string, Set<string>>()
  private readonly loggedUnrepairable = new Set<string>()
  private readonly deletes: DeleteSender
  private readonly q
  private kicked: NodeJS.Immediate | undefined
  private stopped = false
  private bytesRepaired = 0
  /** Moves whose copy landed: chunk id -> the node whose copy is to go. */
  private readonly moveSources = new Map<string, string>()
  /** Where the look through the fullest node for copies to move got to. */
  private moveCursor = new Map<string, string>()
  private moved = 0
  /** Rebalancing and upload expiry run at most once per HOUSEKEEPING_MS (and when a move ends). */
  private lastHousekeepingMs = -Infinity
  private moveDue = false
  /** When each node last took part in a move that ended. */
  private readonly lastMoveMs = new Map<string, number>()
  private readonly committed: CommittedBytes

  constructor(
    private readonly ctx: MasterContext,
    private readonly expireUploads: (maxAgeMs: number) => number,
    /** Move copies from the fullest nodes to the emptiest while nothing needs repair. */
    private readonly rebalance = true,
    /**
     * A node just part of a move takes no other move for this long: the source's copies are trimmed and
     * the counts redone after the move, and planning on stale numbers would overshoot and move copies
     * back and forth.
     */
    private readonly moveCooldownMs = 2000,
    /** Only for the log line: how old an unfinished upload is when expireUploads forgets it. */
    private readonly uploadTtlMs = UPLOAD_TTL_MS,
  ) {
    this.deletes = new DeleteSender(ctx.nodes, ctx.log, ctx.metrics, ctx.pendingDeletes, ctx.durable)
    this.needy = Array.from({length: ctx.replicas}, () => new Set<string>())
    const db = ctx.db
    this.q = {
      chunks: db.prepare('SELECT chunk_id, committed_version, size, sha256 FROM chunks WHERE chunk_id IN (SELECT value FROM json_each(?))'),
      allChunkIds: db.prepare('SELECT chunk_id FROM chunks WHERE chunk_id > ? ORDER BY chunk_id LIMIT ?').pluck(),
      plannedSha: db.prepare('SELECT sha256 FROM planned WHERE chunk_id = ? AND version = ?').pluck(),
    }
    this.committed = new CommittedBytes(db)
    ctx.replicaTable.onChange((chunkId) => {
      this.dirty.add(chunkId)
      this.committed.changed()
    })
    ctx.nodes.onChange((nodeId, change) => this.nodeChanged(nodeId, change))
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

  /** The repair queue for metrics: chunks below R waiting for a transfer, transfers running, and whether changes wait for a look. */
  queue(): {queued: number; running: number; looking: boolean} {
    let queued = 0
    for (const bucket of this.needy) queued += bucket.size
    return {queued: Math.max(0, queued - this.busy.size), running: this.running.size, looking: this.hasChangesToLookAt()}
  }

  /** True when transfers from this node to two or more other nodes copied nothing since its last good one. */
  unreachable(nodeId: string): boolean {
    return (this.failedPulls.get(nodeId)?.size ?? 0) >= 2
  }

  /** True while changed chunks wait for a look (the next slices will take them). */
  hasChangesToLookAt(): boolean {
    return this.dirty.size > 0 || this.nodeScans.size > 0 || this.startScan !== undefined
  }

  /**
   * One step of the count the rebalancer steers by (committed bytes per node, committed-bytes.ts). Its
   * own timer drives it: while a count is under way each step reads a page of the chunk table, work
   * that grows with what is stored, so it is kept out of the repair rounds, which cost only what changed.
   */
  countCommittedBytes(): void {
    try {
      this.committed.step()
    } catch (err) {
      this.ctx.log.error({event: 'rebalance.count_failed', error: (err as Error).message}, `counting committed bytes failed: ${(err as Error).message}`)
    }
  }

  /** Run a round soon (coalesced). */
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
    const started = performance.now()
    try {
      this.run()
      this.ctx.metrics.repairRoundSeconds.observe((performance.now() - started) / 1000)
    } catch (err) {
      this.ctx.log.error({event: 'repair.round_failed', error: (err as Error).message}, `repair round failed: ${(err as Error).message}`)
    }
  }

  /**
   * One slice of a round: forget timed-out transfers, look at what changed (for at most SLICE_MS),
   * start transfers for the neediest chunks, resend lost deletes. When changes are left to look at, the
   * next slice follows on the next turn of the event loop.
   */
  run(): void {
    const {ctx} = this
    const now = ctx.clock.now()
    for (const task of [...this.running.values()]) {
      if (now - task.startedMs > TASK_TIMEOUT_MS) {
        this.end(task)
        ctx.metrics.repairTransfers.inc({event: 'timed_out'})
        ctx.log.warn(
          {event: 'repair.timed_out', taskId: task.id, source: task.source, target: task.target, chunks: task.replicas.length},
          `repair ${task.id} from ${task.source} to ${task.target} got no answer in ${TASK_TIMEOUT_MS / 1000}s: forgotten`,
        )
      }
    }

    // The node list is built only when something is looked at or planned: at thousands of nodes a round
    // triggered by a join or a heartbeat coming back must not cost a pass over every node.
    let nodes: RepairNode[] | undefined
    const nodeList = () => (nodes ??= this.repairNodes())
    const deadline = performance.now() + SLICE_MS
    const newlyUnrepairable: string[] = []
    while (performance.now() < deadline && this.markMore()) {
      const batch = this.takeDirty(EVALUATE_BATCH)
      if (batch.length > 0) this.evaluate(batch, nodeList(), newlyUnrepairable)
    }
    this.noteUnrepairable(newlyUnrepairable)
    if (this.needsCopies()) this.plan(nodeList())
    else if (now - this.lastHousekeepingMs >= HOUSEKEEPING_MS || this.moveDue) this.planMoves(nodeList())
    this.resendDeletes(now)
    if (now - this.lastHousekeepingMs < HOUSEKEEPING_MS) {
      if (this.hasChangesToLookAt()) this.kick()
      return
    }
    this.lastHousekeepingMs = now
    this.moveDue = false
    const expired = this.expireUploads(this.uploadTtlMs)
    if (expired > 0) ctx.log.info({event: 'upload.expired', count: expired}, `forgot ${expired} upload${expired === 1 ? '' : 's'} never committed within ${this.uploadTtlMs >= 3_600_000 ? `${+(this.uploadTtlMs / 3_600_000).toFixed(2)}h` : formatDuration(this.uploadTtlMs)}`)
    if (this.hasChangesToLookAt()) this.kick()
  }

  /** A `replicated` answer: frees the transfer's slot. Returns the task (undefined if unknown, timed out or cancelled). */
  finish(taskId: string, okReplicas: readonly ReplicaInfo[], failed: number): RunningTask | undefined {
    const task = this.running.get(taskId)
    if (!task) return undefined
    this.end(task)
    if (task.move) {
      this.moveDue = true
      this.moved += okReplicas.length
      for (const id of [task.source, task.target]) this.lastMoveMs.set(id, this.ctx.clock.now())
    }
    const seconds = Math.max(0.001, (this.ctx.clock.now() - task.startedMs) / 1000)
    const bytes = okReplicas.reduce((sum, r) => sum + r.size, 0)
    this.bytesRepaired += bytes
    this.notePair(task, okReplicas.length > 0 || failed === 0)
    this.ctx.metrics.repairTransfers.inc({event: 'finished'})
    this.ctx.metrics.repairedChunks.inc(okReplicas.length)
    this.ctx.metrics.repairedBytes.inc(bytes)
    this.ctx.log.info(
      {event: 'repair.finished', taskId, source: task.source, target: task.target, chunks: okReplicas.length, bytes, ms: Math.round(seconds * 1000), failed},
      `repair ${taskId} finished: ${okReplicas.length} chunk${okReplicas.length === 1 ? '' : 's'} from ${task.source} to ${task.target} ` +
        `(${formatBytes(bytes)} in ${seconds.toFixed(2)}s, ${formatBytes(bytes / seconds)}/s)${failed > 0 ? `, ${failed} failed` : ''}`, // MiB/s, as every other figure
    )
    this.kick() // there may be more to do now that slots are free
    return task
  }

  /** A node came alive or its link opened, or it died, left or lost its link: its chunks need a look. */
  private nodeChanged(nodeId: string, change: NodeChange): void {
    if (change === 'down') {
      // Its transfers cannot finish (or their answer cannot arrive): free their chunks now, not in two minutes.
      for (const task of [...this.running.values()]) {
        if (task.source !== nodeId && task.target !== nodeId) continue
        this.end(task)
        this.ctx.metrics.repairTransfers.inc({event: 'cancelled'})
        this.ctx.log.info(
          {event: 'repair.cancelled', taskId: task.id, source: task.source, target: task.target, nodeId},
          `repair ${task.id} from ${task.source} to ${task.target} cancelled: ${nodeId} is gone`,
        )
      }
    }
    this.nodeScans.set(nodeId, '')
    this.kick()
  }

  /** Marks chunks for a look from the scans in progress until enough are marked; false when nothing is left to look at. */
  private markMore(): boolean {
    if (this.dirty.size >= EVALUATE_BATCH) return true
    for (const [nodeId, after] of this.nodeScans) {
      const ids = this.ctx.replicaTable.chunkIdsOfNode(nodeId, after, NODE_SCAN_PAGE)
      for (const id of ids) this.dirty.add(id)
      if (ids.length < NODE_SCAN_PAGE) this.nodeScans.delete(nodeId)
      else this.nodeScans.set(nodeId, ids[ids.length - 1]!)
      if (this.dirty.size >= EVALUATE_BATCH) return true
    }
    if (this.startScan !== undefined) {
      const ids = this.q.allChunkIds.all(this.startScan, NODE_SCAN_PAGE) as string[]
      for (const id of ids) this.dirty.add(id)
      this.startScan = ids.length < NODE_SCAN_PAGE ? undefined : ids[ids.length - 1]!
    }
    return this.dirty.size > 0
  }

  private takeDirty(limit: number): string[] {
    const batch: string[] = []
    for (const id of this.dirty) {
      batch.push(id)
      this.dirty.delete(id)
      if (batch.length >= limit) break
    }
    return batch
  }

  /**
   * Files each chunk by its fresh copies on alive nodes, trims copies beyond R, and makes sure every
   * stale, corrupt or unreferenced copy on a connected node has a delete on its way.
   */
  private evaluate(chunkIds: string[], nodes: RepairNode[], newlyUnrepairable: string[]): void {
    const {ctx} = this
    const R = ctx.replicas
    const byId = new Map(nodes.map((node) => [node.id, node]))
    const records = new Map((this.q.chunks.all(JSON.stringify(chunkIds)) as ChunkRecordRow[]).map((row) => [row.chunk_id, row]))
    const rowsOf = this.rowsWithState(chunkIds, records)
    const excessCandidates: RepairChunk[] = []
    for (const chunkId of chunkIds) {
      for (const bucket of this.needy) bucket.delete(chunkId)
      const record = records.get(chunkId)
      const rows = rowsOf.get(chunkId) ?? []
      for (const row of rows) this.ensureDeleted(row, byId)
      const committed = record !== undefined && record.committed_version > 0
      this.noteBadCopies(chunkId, committed ? rows : [])
      if (!committed) {
        this.underReplicated.delete(chunkId)
        continue
      }
      const fresh = rows.filter((row) => row.state === 'fresh' && countsTowardR(byId.get(row.nodeId))).length
      const onAlive = rows.filter((row) => row.state === 'fresh' && byId.get(row.nodeId)?.alive).length
      if (onAlive < R) this.underReplicated.add(chunkId)
      else this.underReplicated.delete(chunkId)
      if (fresh < R) {
        this.needy[fresh === 0 && onAlive > 0 ? 1 : fresh]!.add(chunkId)
        if (onAlive === 0 && !this.loggedUnrepairable.has(chunkId)) newlyUnrepairable.push(chunkId)
      }
      if (onAlive > 0) this.loggedUnrepairable.delete(chunkId)
      // A move that ended without its copy landing, or whose source copy is gone already: drop the hint.
      if (fresh <= R && !this.busy.has(transferKey(chunkId, record.committed_version))) this.moveSources.delete(chunkId)
      if (fresh > R) excessCandidates.push(toRepairChunk(record, rows))
    }
    const excesses = planExcess(excessCandidates, nodes, R, this.moveSources)
    for (const chunk of excessCandidates) this.moveSources.delete(chunk.chunkId) // used once: a hint, never a block
    // Forget the rows at once so the next look does not count them and trim a second holder. In one
    // relaxed transaction: a removal lost in a crash is undone by the node's next report (one fsync
    // per trimmed copy made a look at chunks with extra copies take seconds).
    if (excesses.length > 0) {
      relaxedDurability(ctx.db, () => ctx.db.transaction(() => {
        for (const excess of excesses) ctx.replicaTable.remove(excess.nodeId, excess.chunkId, excess.version)
      })())
    }
    for (const excess of excesses) this.deletes.send(excess.nodeId, excess.chunkId, excess.version, 'excess')
    this.deletes.flush('(repair)')
  }

  private noteBadCopies(chunkId: string, rows: readonly ReplicaRow[]): void {
    const before = this.badCopies.get(chunkId)
    if (before) {
      this.badTotals.stale -= before.stale
      this.badTotals.corrupt -= before.corrupt
      this.badCopies.delete(chunkId)
    }
    let stale = 0
    let corrupt = 0
    for (const row of rows) {
      if (row.state === 'stale') stale++
      else if (row.state === 'corrupt') corrupt++
    }
    if (stale === 0 && corrupt === 0) return
    this.badCopies.set(chunkId, {stale, corrupt})
    this.badTotals.stale += stale
    this.badTotals.corrupt += corrupt
  }

  /**
   * The status counts as the looks so far found them: committed chunks below R fresh copies on alive
   * nodes, and stale and corrupt copies of committed chunks (what the summary query counts, without
   * reading every chunk). A few changes waiting for a look are looked at now, so the counts are current;
   * while a scan is under way or many changes wait, undefined: the caller counts apart then (chunk-counts.ts).
   */
  counts(): {underReplicated: number; stale: number; corrupt: number} | undefined {
    if (this.startScan !== undefined || this.nodeScans.size > 0 || this.dirty.size > LOOK_NOW_LIMIT) return undefined
    if (this.dirty.size > 0) {
      const nodes = this.repairNodes()
      const newlyUnrepairable: string[] = []
      while (this.dirty.size > 0) this.evaluate(this.takeDirty(EVALUATE_BATCH), nodes, newlyUnrepairable)
      this.noteUnrepairable(newlyUnrepairable)
      if (this.needsCopies()) this.kick()
    }
    return {underReplicated: this.underReplicated.size, ...this.badTotals}
  }

  /** The replica rows of these chunks with their state by the one rule, from the chunk records at hand. */
  private rowsWithState(chunkIds: readonly string[], records: ReadonlyMap<string, ChunkRecordRow>): Map<string, ReplicaRow[]> {
    const byChunk = new Map<string, ReplicaRow[]>()
    for (const [chunkId, rows] of this.ctx.replicaTable.rawOfChunks(chunkIds)) {
      const record = records.get(chunkId)
      const chunk = record && {committedVersion: record.committed_version, sha256: record.sha256}
      byChunk.set(chunkId, rows.map((row) => {
        // Only a version above the committed one needs its planned row (an upload in flight): rare.
        const planned = chunk && row.version > chunk.committedVersion ? (this.q.plannedSha.get(chunkId, row.version) as string | undefined) : undefined
        return {...row, state: replicaState(row, chunk, planned === undefined ? undefined : {sha256: planned})}
      }))
    }
    return byChunk
  }

  /** A copy nobody needs on a connected node gets a delete, unless one is already on its way (resent later). */
  private ensureDeleted(row: ReplicaRow, nodes: Map<string, RepairNode>): void {
    if (row.state === 'fresh' || row.state === 'pending') return
    if (!nodes.get(row.nodeId)?.usable || this.ctx.pendingDeletes.has(row.nodeId, row.chunkId, row.version)) return
    this.deletes.send(row.nodeId, row.chunkId, row.version, row.state as DeleteReason)
  }

  /** Starts transfers for the neediest chunks, as many as there are free slots. */
  private plan(nodes: RepairNode[]): void {
    const {ctx} = this
    let slots = 0
    for (const node of nodes) if (node.usable) slots += Math.max(0, REPAIR_TASKS_PER_NODE - this.loadOf(node.id))
    const capacity = Math.min(PLAN_PER_ROUND, slots * REPAIR_REPLICAS_PER_TASK)
    if (capacity === 0) return
    const picked: string[] = []
    // Fewest fresh copies first; index 0 has nothing to copy from.
    for (let fresh = 1; fresh < this.needy.length && picked.length < capacity; fresh++) {
      for (const chunkId of this.needy[fresh]!) {
        picked.push(chunkId)
        if (picked.length >= capacity) break
      }
    }
    if (picked.length === 0) return
    // In groups, within a time budget: planning weighs every node for every copy, and at hundreds of
    // nodes all of a round's picks at once held the event loop for 30–60 ms. Picks not reached keep
    // their place for the next slice.
    const now = ctx.clock.now()
    const deadline = performance.now() + PLAN_MS
    const started = new Set<string>()
    let tried = 0
    while (tried < picked.length && (tried === 0 || performance.now() < deadline)) {
      const group = picked.slice(tried, tried + PLAN_GROUP)
      tried += group.length
      const records = this.q.chunks.all(JSON.stringify(group)) as ChunkRecordRow[]
      const rowsOf = this.rowsWithState(group, new Map(records.map((row) => [row.chunk_id, row])))
      const chunks = records.filter((r) => r.committed_version > 0).map((record) => toRepairChunk(record, rowsOf.get(record.chunk_id) ?? []))
      const {tasks} = planReplication({
        chunks, nodes, replicas: ctx.replicas, running: new Map(nodes.map((node) => [node.id, this.loadOf(node.id)])), busyChunks: this.busy,
        blocked: (source, target) => (this.pairFailures.get(pairKey(source, target))?.untilMs ?? 0) > now,
        maxTasksPerNode: REPAIR_TASKS_PER_NODE, maxReplicasPerTask: REPAIR_REPLICAS_PER_TASK,
      })
      for (const planned of tasks) this.start(planned.source, planned.target, planned.replicas)
      for (const task of tasks) for (const r of task.replicas) started.add(r.chunkId)
    }
    if (tried < picked.length) this.kick()
    // What was tried and could not be planned goes to the back of its line, so the same chunks do not block the rest.
    for (const chunkId of picked.slice(0, tried)) {
      if (started.has(chunkId)) continue
      for (const bucket of this.needy) {
        if (!bucket.delete(chunkId)) continue
        bucket.add(chunkId)
        break
      }
    }
  }

  private start(source: string, target: string, replicas: ReplicaInfo[], move = false): boolean {
    const sourceNode = this.ctx.nodes.get(source)
    if (!sourceNode) return false
    const id = randomBytes(6).toString('hex')
    // The source serves the transfer only with this grant (and a node credential): nobody else can pull chunks.
    const grant = signTransferGrant(
      {kind: 'transfer', source, target, replicas: replicas.map(({chunkId, version}) => ({chunkId, version})), exp: this.ctx.clock.now() + TASK_TIMEOUT_MS},
      this.ctx.grantKey,
    )
    const sent = this.ctx.nodes.send(target, {type: 'replicate', taskId: id, source: {id: source, url: sourceNode.url}, replicas, grant})
    if (!sent) return false
    this.running.set(id, {id, source, target, replicas, startedMs: this.ctx.clock.now(), move})
    // A moved copy is trimmed from the source as soon as the target's copy is recorded (mid-transfer too).
    if (move) for (const r of replicas) this.moveSources.set(r.chunkId, source)
    for (const r of replicas) this.busy.add(transferKey(r.chunkId, r.version))
    const bytes = replicas.reduce((sum, r) => sum + r.size, 0)
    this.ctx.metrics.repairTransfers.inc({event: 'started'})
    this.ctx.log.info(
      {event: move ? 'rebalance.started' : 'repair.started', taskId: id, source, target, chunks: replicas.map(({chunkId, version}) => ({chunkId, version})), bytes},
      `${move ? 'move' : 'repair'} ${id} started: ${replicas.length} chunk${replicas.length === 1 ? '' : 's'} (${formatBytes(bytes)}) from ${source} to ${target}`,
    )
    return true
  }

  /** A transfer is over (finished, timed out or cancelled): its chunks may need another look. */
  private end(task: RunningTask): void {
    this.running.delete(task.id)
    for (const r of task.replicas) {
      this.busy.delete(transferKey(r.chunkId, r.version))
      this.dirty.add(r.chunkId)
      // Copy, verify, record (the target's `stored`), then delete: the extra copy makes the chunk R+1,
      // and its look trims the source's (moveSources, set when the move started). A move cut short
      // leaves R copies as they were, and the look finds R and drops the hint.
    }
  }

  /** A pair whose transfer copied nothing waits before it is tried again; other sources are used meanwhile. */
  private notePair(task: RunningTask, copiedSomething: boolean): void {
    const key = pairKey(task.source, task.target)
    if (copiedSomething) {
      this.pairFailures.delete(key)
      this.failedPulls.delete(task.source)
      return
    }
    const failures = (this.pairFailures.get(key)?.failures ?? 0) + 1
    const waitMs = Math.min(PAIR_BACKOFF_MAX_MS, PAIR_BACKOFF_MS * 2 ** (failures - 1))
    this.pairFailures.set(key, {failures, untilMs: this.ctx.clock.now() + waitMs})
    const targets = this.failedPulls.get(task.source) ?? new Set<string>()
    const wasUnreachable = targets.size >= 2
    targets.add(task.target)
    this.failedPulls.set(task.source, targets)
    if (!wasUnreachable && targets.size >= 2) {
      this.ctx.log.warn(
        {event: 'node.unreachable', nodeId: task.source, from: [...targets]},
        `node ${task.source} is alive but ${[...targets].join(' and ')} could not copy from it: check its --public-url and that its port can be reached`,
      )
    }
  }

  /** Alive nodes with a link that take part in balance (a draining node neither gives nor takes moves). */
  private balanceNodes() {
    const usable = this.repairNodes().filter((node) => node.usable && !node.draining)
    return usable.flatMap((node) => this.ctx.nodes.get(node.id) ?? [])
  }

  /** Fill of every node that takes part in balance, the mean, and who is out of the band around it. */
  balance(): BalanceReport {
    const records = this.balanceNodes()
    const counted = records.flatMap((node) => {
      const committedBytes = this.committed.of(node.id)
      if (committedBytes === undefined) return []
      const capacity = node.usedBytes + node.freeBytes
      return [{id: node.id, fill: capacity > 0 ? committedBytes / capacity : 1, committedBytes, usedBytes: node.usedBytes, freeBytes: node.freeBytes}]
    })
    const meanFill = counted.length === 0 ? 0 : counted.reduce((sum, n) => sum + n.fill, 0) / counted.length
    const chunkBytes = records.reduce((sum, node) => sum + node.usedBytes, 0) / Math.max(1, records.reduce((sum, node) => sum + node.chunkCount, 0))
    const capacity = records.reduce((sum, node) => sum + node.usedBytes + node.freeBytes, 0) / Math.max(1, records.length)
    const band = meanFill * BALANCE_BAND + (capacity > 0 ? (BALANCE_SLACK_CHUNKS * chunkBytes) / capacity : 0)
    const nodes = counted.map((n) => ({...n, outOfBand: Math.abs(n.fill - meanFill) > band}))
    let moving = 0
    for (const task of this.running.values()) if (task.move) moving += task.replicas.length
    const uncounted = records.length - counted.length
    const balanced = uncounted === 0 && nodes.every((n) => !n.outOfBand)
    let waiting: string | undefined
    if (!balanced && !this.rebalance) waiting = 'rebalancing is off (chunky master --no-rebalance)'
    else if (!balanced && this.needsRepair()) waiting = 'repairs first: chunks are below R'
    else if (uncounted > 0) waiting = `counting the copies on ${uncounted} node${uncounted === 1 ? '' : 's'}`
    return {enabled: this.rebalance, balanced, meanFill, band, nodes, moving, moved: this.moved, ...(waiting ? {waiting} : {})}
  }

  /** Chunks below R with something to copy from. */
  private needsCopies(): boolean {
    for (let fresh = 1; fresh < this.needy.length; fresh++) if (this.needy[fresh]!.size > 0) return true
    return false
  }

  private needsRepair(): boolean {
    if (this.needsCopies()) return true
    for (const task of this.running.values()) if (!task.move) return true
    return false
  }

  /**
   * Rebalancing, while nothing needs repair: copies from the fullest node above the band to the emptiest
   * below it, a few transfers at a time. Each copy makes its chunk R+1; the look that follows trims the
   * source's copy (planExcess with moveSources), so a crash at any point leaves at least R copies.
   */
  private planMoves(nodes: RepairNode[]): void {
    if (!this.rebalance || this.needsRepair()) return
    let moving = 0
    for (const task of this.running.values()) if (task.move) moving++
    if (moving >= MOVE_TASKS) return
    const report = this.balance()
    if (report.balanced || report.waiting) return
    const now = this.ctx.clock.now()
    const free = (id: string) => this.loadOf(id) === 0 && now - (this.lastMoveMs.get(id) ?? -Infinity) >= this.moveCooldownMs
    // Out of band above: to the emptiest node below the mean; out of band below: from the fullest above it.
    const byFill = [...report.nodes].sort((a, b) => b.fill - a.fill)
    const high = byFill.find((n) => n.fill > report.meanFill + report.band && free(n.id))
    const low = [...byFill].reverse().find((n) => n.fill < report.meanFill - report.band && free(n.id))
    const source = high ?? (low && byFill.find((n) => n.fill > report.meanFill && free(n.id)))
    const target = low ?? (high && [...byFill].reverse().find((n) => n.fill < report.meanFill && free(n.id)))
    if (!source || !target || source.id === target.id) return
    // No more than brings either to the mean: a bigger move would leave the target as far above it.
    const capacity = (n: {usedBytes: number; freeBytes: number}) => n.usedBytes + n.freeBytes
    let budget = Math.min((source.fill - report.meanFill) * capacity(source), (report.meanFill - target.fill) * capacity(target))
    const after = this.moveCursor.get(source.id) ?? ''
    const ids = this.ctx.replicaTable.chunkIdsOfNode(source.id, after, MOVE_SCAN)
    this.moveCursor.set(source.id, ids.length < MOVE_SCAN ? '' : ids[ids.length - 1]!)
    const records = new Map((this.q.chunks.all(JSON.stringify(ids)) as ChunkRecordRow[]).map((row) => [row.chunk_id, row]))
    const rowsOf = this.rowsWithState(ids, records)
    const counts = new Map(nodes.map((node) => [node.id, countsTowardR(node)]))
    const replicas: ReplicaInfo[] = []
    for (const id of ids) {
      const record = records.get(id)
      if (!record || record.committed_version === 0 || this.busy.has(transferKey(id, record.committed_version))) continue
      const rows = rowsOf.get(id) ?? []
      if (rows.some((row) => row.nodeId === target.id)) continue // the target holds some version of it already
      if (!rows.some((row) => row.nodeId === source.id && row.state === 'fresh')) continue
      if (rows.filter((row) => row.state === 'fresh' && counts.get(row.nodeId)).length !== this.ctx.replicas) continue
      if (replicas.length > 0 && record.size > budget) break
      replicas.push({chunkId: id, version: record.committed_version, size: record.size, sha256: record.sha256})
      budget -= record.size
      if (replicas.length >= REPAIR_REPLICAS_PER_TASK || budget <= 0) break
    }
    if (replicas.length > 0) this.start(source.id, target.id, replicas, true)
  }

  private noteUnrepairable(fresh: string[]): void {
    for (const id of fresh) this.loggedUnrepairable.add(id)
    if (fresh.length === 0) return
    const listed = fresh.slice(0, 5).join(', ') + (fresh.length > 5 ? `, and ${fresh.length - 5} more` : '')
    this.ctx.log.warn({event: 'repair.unrepairable', count: fresh.length, chunkIds: fresh.slice(0, 1000)}, `cannot repair ${fresh.length} chunk${fresh.length === 1 ? '' : 's'} now: no fresh replica on an alive node (${listed})`)
  }

  /** Deletes sent to connected nodes and not confirmed within DELETE_RESEND_MS: send them again (bounded). */
  private resendDeletes(now: number): void {
    const {ctx} = this
    let sent = 0
    for (const entry of ctx.pendingDeletes.due(DELETE_RESEND_MS, DELETE_RESENDS_PER_ROUND * 4)) {
      // Still on record (excess rows are forgotten when trimmed: a node that kept one reports it again).
      if (!ctx.replicaTable.has(entry.nodeId, entry.chunkId, entry.version)) {
        ctx.pendingDeletes.confirmed(entry.nodeId, entry.chunkId, entry.version)
        continue
      }
      // An excess copy on record again was reported after its trim and counts as fresh now: deleting it
      // on the old decision left the chunk below R (a repair then copied it back). Whether it is still
      // one too many is the next look's call.
      if (entry.reason === 'excess') {
        ctx.pendingDeletes.confirmed(entry.nodeId, entry.chunkId, entry.version)
        this.dirty.add(entry.chunkId)
        continue
      }
      if (!ctx.nodes.isConnected(entry.nodeId)) continue
      this.deletes.send(entry.nodeId, entry.chunkId, entry.version, entry.reason)
      if (++sent >= DELETE_RESENDS_PER_ROUND) break
    }
    if (sent > 0) ctx.log.debug({event: 'delete.resent', count: sent, at: now}, `resent ${sent} unconfirmed deletes`)
    this.deletes.flush('(resent: not confirmed yet)')
  }

  private repairNodes(): RepairNode[] {
    const {nodes} = this.ctx
    return nodes.all().map((node) => {
      const alive = nodes.isAlive(node.id)
      return {id: node.id, zone: node.zone, freeBytes: node.freeBytes, alive, usable: alive && nodes.isConnected(node.id), draining: node.drainStartedMs !== null}
    })
  }
}

function toRepairChunk(record: ChunkRecordRow, rows: readonly ReplicaRow[]): RepairChunk {
  return {
    chunkId: record.chunk_id,
    version: record.committed_version,
    size: record.size,
    sha256: record.sha256,
    replicas: rows.map((row) => ({nodeId: row.nodeId, version: row.version, state: row.state})),
  }
}

function pairKey(source: string, target: string): string {
  return `${source}\u0000${target}`
}
