import {ChunkyError, type Hello, type MasterToNode} from '../protocol/index.js'
import type {MasterMetrics} from '../telemetry/metrics.js'
import type {Clock} from '../util/clock.js'
import type {Logger} from '../util/log.js'
import {relaxedDurability, type Db} from './db.js'
import {NodeLiveness} from './liveness.js'

export interface NodeRecord {
  id: string
  url: string
  zone: string
  freeBytes: number
  usedBytes: number
  chunkCount: number
  /** Epoch ms of the last hello/heartbeat; null if never heard from. */
  lastHeartbeatMs: number | null
  /** Epoch ms when a drain of it began (`chunky nodes drain`); null when it is in service. */
  drainStartedMs: number | null
}

/** The part of a WebSocket the registry needs (so it can be faked in unit tests). */
export interface NodeSocket {
  send(text: string): void
  close(code: number, reason: string): void
}

export interface Space {
  freeBytes: number
  usedBytes: number
  chunkCount: number
}

/** 'drain' and 'undrain': whether the node's copies count toward R changed. */
export type NodeChange = 'up' | 'down' | 'drain' | 'undrain'

const REWRITE_HEARTBEAT_MS = 60_000

type NodeRow = {id: string; url: string; zone: string; free_bytes: number; used_bytes: number; chunk_count: number; last_heartbeat_ms: number | null}

// Every node the master knows: identity and space (persisted, so status shows them after a restart,
// as dead until they say hello), whether it is being drained (persisted), liveness (in memory), and the
// open link to each (in memory). A node can take writes and repairs only when it is alive AND its link
// is open, and new chunks only when it is not being drained.
export class NodeRegistry {
  private readonly nodes = new Map<string, NodeRecord>()
  private readonly sockets = new Map<string, NodeSocket>()
  private readonly listeners: ((nodeId: string, change: NodeChange) => void)[] = []
  private sorted: NodeRecord[] | undefined
  /** What persist() last wrote of each node's space, and when. */
  private readonly written = new Map<string, {space: string; atMs: number}>()
  private readonly liveness: NodeLiveness
  private readonly upsert
  private readonly saveSpace
  private readonly q

  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    timeoutMs: number,
  ) {
    this.liveness = new NodeLiveness(clock, timeoutMs)
    for (const row of db.prepare('SELECT * FROM nodes').all() as NodeRow[]) {
      this.nodes.set(row.id, {
        id: row.id,
        url: row.url,
        zone: row.zone,
        freeBytes: row.free_bytes,
        usedBytes: row.used_bytes,
        chunkCount: row.chunk_count,
        lastHeartbeatMs: row.last_heartbeat_ms,
        drainStartedMs: null,
      })
    }
    for (const row of db.prepare('SELECT node_id, started_ms FROM node_drains').all() as {node_id: string; started_ms: number}[]) {
      const record = this.nodes.get(row.node_id)
      if (record) record.drainStartedMs = row.started_ms
    }
    this.q = {
      drain: db.prepare('INSERT OR IGNORE INTO node_drains (node_id, started_ms) VALUES (?, ?)'),
      undrain: db.prepare('DELETE FROM node_drains WHERE node_id = ?'),
      forget: db.prepare('DELETE FROM nodes WHERE id = ?'),
    }
    this.upsert = db.prepare(`INSERT INTO nodes (id, url, zone, free_bytes, used_bytes, chunk_count, last_heartbeat_ms)
      VALUES (@id, @url, @zone, @freeBytes, @usedBytes, @chunkCount, @lastHeartbeatMs)
      ON CONFLICT (id) DO UPDATE SET url = excluded.url, zone = excluded.zone, free_bytes = excluded.free_bytes,
        used_bytes = excluded.used_bytes, chunk_count = excluded.chunk_count, last_heartbeat_ms = excluded.last_heartbeat_ms`)
    const upsert = this.upsert
    this.saveSpace = db.transaction((records: NodeRecord[]) => {
      for (const record of records) upsert.run(record)
    })
  }

  /**
   * Calls `listener` when a node can start or stop counting: 'up' when it comes alive or its link opens,
   * 'down' when it is declared dead, leaves, or its link closes.
   */
  onChange(listener: (nodeId: string, change: NodeChange) => void): void {
    this.listeners.push(listener)
  }

  private changed(nodeId: string, change: NodeChange): void {
    for (const listener of this.listeners) listener(nodeId, change)
  }

  /** Registers a hello. Returns whether the node is new to the master, back from dead, or was alive. */
  hello(hello: Hello): 'joined' | 'back' | 'alive' {
    const known = this.nodes.has(hello.nodeId)
    const record: NodeRecord = {
      id: hello.nodeId,
      url: hello.url,
      zone: hello.zone,
      freeBytes: hello.freeBytes,
      usedBytes: hello.usedBytes,
      chunkCount: hello.chunkCount,
      lastHeartbeatMs: this.clock.now(),
      drainStartedMs: this.nodes.get(hello.nodeId)?.drainStartedMs ?? null,
    }
    const previous = this.nodes.get(record.id)
    const changed = !previous || previous.url !== record.url || previous.zone !== record.zone
    // One record object per node for good: all() hands out the same objects until a node joins.
    if (previous) Object.assign(previous, record)
    else {
      this.nodes.set(record.id, record)
      this.sorted = undefined
    }
    // Persisted at once only when its identity changed (a reconnect says the same hello again); relaxed:
    // a node says hello again after any master restart, so a lost row costs nothing.
    if (changed) relaxedDurability(this.db, () => this.upsert.run(record))
    const cameBack = this.liveness.touch(record.id)
    if (cameBack) this.changed(record.id, 'up')
    if (!known) return 'joined'
    return cameBack ? 'back' : 'alive'
  }

  /** A heartbeat from a node that said hello. Returns true when it was dead and is alive again. */
  heartbeat(nodeId: string, space: Space): boolean {
    const record = this.nodes.get(nodeId)
    if (!record) return false
    Object.assign(record, space, {lastHeartbeatMs: this.clock.now()})
    return this.touchLiveness(nodeId)
  }

  /** Any message from a node is a sign of life. Returns true when it was dead and is alive again. */
  touch(nodeId: string): boolean {
    const record = this.nodes.get(nodeId)
    if (!record) return false
    record.lastHeartbeatMs = this.clock.now()
    return this.touchLiveness(nodeId)
  }

  private touchLiveness(nodeId: string): boolean {
    const cameBack = this.liveness.touch(nodeId)
    if (cameBack) this.changed(nodeId, 'up')
    return cameBack
  }

  /** The node said it is leaving (SIGTERM): dead at once. Returns true when it was alive. */
  leave(nodeId: string): boolean {
    const wasAlive = this.liveness.forget(nodeId)
    if (wasAlive) this.changed(nodeId, 'down')
    return wasAlive
  }

  /**
   * Writes space and last-heartbeat of alive nodes (heartbeats are kept in memory between these): a node
   * whose space is unchanged is written again only once its stored heartbeat is a minute old, so thousands
   * of idle nodes cost no writes. `all` writes every alive node (at shutdown).
   */
  persist(all = false): void {
    const now = this.clock.now()
    const due: NodeRecord[] = []
    for (const id of this.liveness.alive()) {
      const record = this.nodes.get(id)
      if (!record) continue
      const space = `${record.freeBytes}/${record.usedBytes}/${record.chunkCount}`
      const written = this.written.get(id)
      if (!all && written && written.space === space && now - written.atMs < REWRITE_HEARTBEAT_MS) continue
      due.push(record)
      this.written.set(id, {space, atMs: now})
    }
    if (due.length > 0) this.saveSpace(due)
  }

  /** Nodes newly declared dead. */
  sweep(): string[] {
    const dead = this.liveness.sweep()
    for (const nodeId of dead) this.changed(nodeId, 'down')
    return dead
  }

  get(nodeId: string): NodeRecord | undefined {
    return this.nodes.get(nodeId)
  }

  /** Every node, by id. The same array until a node joins (callers must not change it). */
  all(): readonly NodeRecord[] {
    this.sorted ??= [...this.nodes.values()].sort((a, b) => a.id.localeCompare(b.id))
    return this.sorted
  }

  isAlive(nodeId: string): boolean {
    return this.liveness.isAlive(nodeId)
  }

  isConnected(nodeId: string): boolean {
    return this.sockets.has(nodeId)
  }

  /** Alive nodes with an open link: the ones that can take writes and repairs. */
  usable(): NodeRecord[] {
    return this.all().filter((node) => this.isAlive(node.id) && this.isConnected(node.id))
  }

  /** Usable nodes that are not being drained: the only ones new chunks are placed on. */
  placeable(): NodeRecord[] {
    return this.usable().filter((node) => !this.isDraining(node.id))
  }

  isDraining(nodeId: string): boolean {
    return (this.nodes.get(nodeId)?.drainStartedMs ?? null) !== null
  }

  /** Starts draining a node (kept across restarts); a node already draining keeps its start. */
  drain(nodeId: string): NodeRecord {
    const record = this.known(nodeId)
    if (record.drainStartedMs === null) {
      record.drainStartedMs = this.clock.now()
      this.q.drain.run(nodeId, record.drainStartedMs)
      this.changed(nodeId, 'drain')
    }
    return record
  }

  /** Takes a drained or draining node back into service. */
  undrain(nodeId: string): NodeRecord {
    const record = this.known(nodeId)
    if (record.drainStartedMs !== null) {
      record.drainStartedMs = null
      this.q.undrain.run(nodeId)
      this.changed(nodeId, 'undrain')
    }
    return record
  }

  /** Removes a dead node for good (its replica rows are the replica table's to drop). */
  forget(nodeId: string): void {
    this.known(nodeId)
    if (this.isAlive(nodeId) || this.isConnected(nodeId)) {
      throw new ChunkyError('NODE_ALIVE', `node ${nodeId} is alive: stop it first (or drain it with \`chunky nodes drain ${nodeId}\`); only a dead node can be forgotten`)
    }
    this.db.transaction(() => {
      this.q.forget.run(nodeId)
      this.q.undrain.run(nodeId)
    })()
    this.nodes.delete(nodeId)
    this.written.delete(nodeId)
    this.sorted = undefined
  }

  private known(nodeId: string): NodeRecord {
    const record = this.nodes.get(nodeId)
    if (!record) throw new ChunkyError('NODE_NOT_FOUND', `no node with id "${nodeId}": see \`chunky nodes\``)
    return record
  }

  aliveIds(): string[] {
    return this.liveness.alive()
  }

  /** Binds a node id to its open link; returns the older link it replaces, if any. */
  attach(nodeId: string, socket: NodeSocket): NodeSocket | undefined {
    const previous = this.sockets.get(nodeId)
    this.sockets.set(nodeId, socket)
    if (previous !== socket) this.changed(nodeId, 'up')
    return previous === socket ? undefined : previous
  }

  /** Unbinds a link when it closes (unless a newer link already replaced it). */
  detach(nodeId: string, socket: NodeSocket): void {
    if (this.sockets.get(nodeId) !== socket) return
    this.sockets.delete(nodeId)
    this.changed(nodeId, 'down')
  }

  socket(nodeId: string): NodeSocket | undefined {
    return this.sockets.get(nodeId)
  }

  /** Sends one command; false when the node has no open link (it will learn at its next report). */
  send(nodeId: string, message: MasterToNode): boolean {
    const socket = this.sockets.get(nodeId)
    if (!socket) return false
    try {
      socket.send(JSON.stringify(message))
      return true
    } catch {
      return false
    }
  }

  closeAll(code: number, reason: string): void {
    for (const socket of this.sockets.values()) {
      try {
        socket.close(code, reason)
      } catch {
        // already closing
      }
    }
    this.sockets.clear()
  }
}

export type DeleteReason = 'stale' | 'corrupt' | 'unreferenced' | 'excess'

export interface PendingDelete {
  nodeId: string
  chunkId: string
  version: number
  reason: DeleteReason
  sentMs: number
}

/**
 * Deletes sent and not confirmed yet (in memory: after a restart the nodes' reports find what is left).
 * The repair loop sends those that stay unconfirmed again, so a delete lost with a dropped link is not
 * lost for good; the work is proportional to the deletes outstanding, not to what is stored.
 */
export class PendingDeletes {
  private readonly sent = new Map<string, PendingDelete>()

  constructor(private readonly clock: Clock) {}

  add(nodeId: string, chunkId: string, version: number, reason: DeleteReason): void {
    this.sent.set(deleteKey(nodeId, chunkId, version), {nodeId, chunkId, version, reason, sentMs: this.clock.now()})
  }

  has(nodeId: string, chunkId: string, version: number): boolean {
    return this.sent.has(deleteKey(nodeId, chunkId, version))
  }

  confirmed(nodeId: string, chunkId: string, version: number): void {
    this.sent.delete(deleteKey(nodeId, chunkId, version))
  }

  /** Deletes sent at least `ageMs` ago, oldest first, at most `limit`. */
  due(ageMs: number, limit: number): PendingDelete[] {
    const before = this.clock.now() - ageMs
    const due: PendingDelete[] = []
    for (const entry of this.sent.values()) {
      if (entry.sentMs > before) break // insertion order is sending order: the rest are younger
      due.push(entry)
      if (due.length >= limit) break
    }
    return due
  }
}

const deleteKey = (nodeId: string, chunkId: string, version: number) => `${nodeId} ${chunkId} ${version}`

/** Ids listed in one `delete.sent` line at most; the count says how many more there were. */
const MAX_LISTED_DELETES = 1000

/**
 * Sends `delete` commands and logs them as one `delete.sent` line per node and occasion (not one per
 * replica), listing the replicas (up to MAX_LISTED_DELETES).
 *
 * A delete may follow from a change not yet in the metadata store (a commit makes the old version
 * stale): with a store apart from the working copy (PostgreSQL), `durable` resolves once every change
 * made so far is stored, and deletes wait for it. Sent sooner, a leader killed before its write
 * leaves a store that still names the old version, whose copies the nodes have deleted. If the write
 * fails, this master stops leading and its deletes are dropped; the next leader decides them again
 * from the nodes' reports.
 */
export class DeleteSender {
  private readonly sent = new Map<string, {counts: Map<DeleteReason, number>; chunks: {chunkId: string; version: number; reason: DeleteReason}[]}>()
  /** Deletes waiting for `durable`, sent together once it resolves. */
  private waiting: {nodeId: string; chunkId: string; version: number; reason: DeleteReason}[] = []

  constructor(
    private readonly nodes: NodeRegistry,
    private readonly log: Logger,
    private readonly metrics: MasterMetrics,
    private readonly pending: PendingDeletes,
    private readonly durable?: () => Promise<void>,
  ) {}

  /** True when the delete is sent, or will be once durable: false when the node has no open link. */
  send(nodeId: string, chunkId: string, version: number, reason: DeleteReason): boolean {
    if (this.durable) {
      if (!this.nodes.isConnected(nodeId)) return false
      if (this.waiting.push({nodeId, chunkId, version, reason}) === 1) queueMicrotask(() => this.sendWaiting())
    } else if (!this.nodes.send(nodeId, {type: 'delete', chunkId, version, reason})) {
      return false
    }
    this.pending.confirmed(nodeId, chunkId, version) // re-added last: the map stays in sending order
    this.pending.add(nodeId, chunkId, version, reason)
    this.metrics.deletesSent.inc({reason})
    const perNode = this.sent.get(nodeId) ?? {counts: new Map<DeleteReason, number>(), chunks: []}
    perNode.counts.set(reason, (perNode.counts.get(reason) ?? 0) + 1)
    if (perNode.chunks.length < MAX_LISTED_DELETES) perNode.chunks.push({chunkId, version, reason})
    this.sent.set(nodeId, perNode)
    return true
  }

  /** After a microtask, so the change a caller makes with its deletes (in the same turn) is in the write waited for. */
  private sendWaiting(): void {
    const batch = this.waiting
    this.waiting = []
    this.durable!().then(
      () => {
        for (const {nodeId, chunkId, version, reason} of batch) {
          // a link closed meanwhile: not pending, as if never sent (the node's next report finds the copy)
          if (!this.nodes.send(nodeId, {type: 'delete', chunkId, version, reason})) this.pending.confirmed(nodeId, chunkId, version)
        }
      },
      () => {
        for (const {nodeId, chunkId, version} of batch) this.pending.confirmed(nodeId, chunkId, version)
      },
    )
  }

  /** Logs what was sent since the last flush, e.g. `sent 3 deletes to n1 (stale 2, unreferenced 1) after commit`. */
  flush(occasion: string): void {
    for (const [nodeId, {counts, chunks}] of this.sent) {
      const total = [...counts.values()].reduce((a, b) => a + b, 0)
      const detail = [...counts].map(([reason, n]) => `${reason} ${n}`).join(', ')
      this.log.info(
        {event: 'delete.sent', nodeId, count: total, reasons: Object.fromEntries(counts), occasion, chunks, ...(total > chunks.length ? {notListed: total - chunks.length} : {})},
        `sent ${total} delete${total === 1 ? '' : 's'} to ${nodeId} (${detail}) ${occasion}`,
      )
    }
    this.sent.clear()
  }
}
