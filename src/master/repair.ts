import type {ReplicaInfo} from '../protocol/index.js'
import type {ReplicaState} from './replica-state.js'
import {compareText} from '../util/compare.js'

// The self-healing decisions, as pure functions of rows: which chunks to copy from where to where,
// and which surplus replicas to delete. repair-loop.ts gathers the rows and carries the decisions out.

export interface RepairReplica {
  nodeId: string
  version: number
  /** By the one rule (replica-state.ts). */
  state: ReplicaState
}

/** A committed chunk and every replica row of it. */
export interface RepairChunk {
  chunkId: string
  version: number
  size: number
  sha256: string
  replicas: readonly RepairReplica[]
}

export interface RepairNode {
  id: string
  zone: string
  freeBytes: number
  alive: boolean
  /** Alive with an open link: can send and receive transfers, and take commands. */
  usable: boolean
  /** Being drained (`chunky nodes drain`): a source for copies, never a target, and its copies do not count toward R. */
  draining?: boolean
}

/**
 * Whether a node's fresh copies count toward R: alive and not being drained. The one rule repair,
 * trimming, rebalancing and a drain's progress share (what makes a copy fresh is replica-state.ts's).
 */
export function countsTowardR(node: RepairNode | undefined): boolean {
  return node !== undefined && node.alive && !node.draining
}

/** Whether a node may receive new copies: usable and not being drained. */
export function takesCopies(node: RepairNode): boolean {
  return node.usable && !node.draining
}

export interface ReplicationInput {
  chunks: readonly RepairChunk[]
  nodes: readonly RepairNode[]
  /** R */
  replicas: number
  /** Transfers already running per node (as source or target). */
  running: ReadonlyMap<string, number>
  /** `chunkId.version` of the replicas in a running transfer: never scheduled twice. */
  busyChunks: ReadonlySet<string>
  /** Source → target pairs not to use now (a transfer between them failed recently). */
  blocked?: (source: string, target: string) => boolean
  maxTasksPerNode?: number
  maxReplicasPerTask?: number
}

export interface PlannedTransfer {
  source: string
  target: string
  replicas: ReplicaInfo[]
}

export const MAX_TASKS_PER_NODE = 2
export const MAX_REPLICAS_PER_TASK = 64

export function isFresh(replica: RepairReplica): boolean {
  return replica.state === 'fresh'
}

/** How a replica in a transfer is known while it runs. */
export function transferKey(chunkId: string, version: number): string {
  return `${chunkId}.${version}`
}

/**
 * Plans copies for chunks with fewer than R fresh replicas that count (countsTowardR), fewest first.
 * Source: a usable node holding a fresh replica (a draining one too), least busy first. Target: a node
 * that takes copies (takesCopies) with no replica of the
 * chunk at that version and room for it, on a zone the chunk lacks where possible, most free bytes
 * first. Copies between the same two nodes share one transfer (up to maxReplicasPerTask); a node
 * takes part in at most maxTasksPerNode transfers at once, so repair does not starve uploads.
 * `unrepairable`: chunks with no fresh replica on any alive node (nothing to copy from).
 */
export function planReplication(input: ReplicationInput): {tasks: PlannedTransfer[]; unrepairable: string[]} {
  const R = input.replicas
  const maxTasks = input.maxTasksPerNode ?? MAX_TASKS_PER_NODE
  const maxPerTask = input.maxReplicasPerTask ?? MAX_REPLICAS_PER_TASK
  const nodes = new Map(input.nodes.map((node) => [node.id, node]))
  const free = new Map(input.nodes.map((node) => [node.id, node.freeBytes]))
  const load = new Map(input.running)
  const loadOf = (id: string) => load.get(id) ?? 0
  const tasks: PlannedTransfer[] = []
  const open = new Map<string, PlannedTransfer>() // source→target transfers with room for more
  const unrepairable: string[] = []

  const work = input.chunks
    .filter((chunk) => !input.busyChunks.has(transferKey(chunk.chunkId, chunk.version)))
    .map((chunk) => ({chunk, fresh: chunk.replicas.filter((r) => isFresh(r) && countsTowardR(nodes.get(r.nodeId)))}))
    .filter(({fresh}) => fresh.length < R)
    .sort((a, b) => a.fresh.length - b.fresh.length || compareText(a.chunk.chunkId, b.chunk.chunkId))

  for (const {chunk, fresh} of work) {
    const onAlive = chunk.replicas.filter((r) => isFresh(r) && nodes.get(r.nodeId)?.alive)
    if (onAlive.length === 0) {
      unrepairable.push(chunk.chunkId)
      continue
    }
    const sources = onAlive.map((r) => r.nodeId).filter((id) => nodes.get(id)?.usable)
    const holders = new Set(chunk.replicas.filter((r) => r.version === chunk.version).map((r) => r.nodeId))
    const zones = new Set(fresh.map((r) => nodes.get(r.nodeId)!.zone))
    for (let copies = fresh.length; copies < R && sources.length > 0; copies++) {
      const targets = input.nodes
        .filter((node) => takesCopies(node) && !holders.has(node.id) && free.get(node.id)! >= chunk.size)
        .sort(
          (a, b) =>
            Number(zones.has(a.zone)) - Number(zones.has(b.zone)) || free.get(b.id)! - free.get(a.id)! || compareText(a.id, b.id),
        )
      const transfer = pickTransfer(targets, sources)
      if (!transfer) break
      transfer.replicas.push({chunkId: chunk.chunkId, version: chunk.version, size: chunk.size, sha256: chunk.sha256})
      if (transfer.replicas.length >= maxPerTask) open.delete(key(transfer.source, transfer.target))
      holders.add(transfer.target)
      zones.add(nodes.get(transfer.target)!.zone)
      free.set(transfer.target, free.get(transfer.target)! - chunk.size)
    }
  }
  return {tasks, unrepairable}

  /** The first target (in preference order) reachable from a source: an open transfer, else a new one. */
  function pickTransfer(targets: readonly RepairNode[], sources: readonly string[]): PlannedTransfer | undefined {
    const bySourceLoad = [...sources].sort((a, b) => loadOf(a) - loadOf(b) || compareText(a, b))
    const blocked = input.blocked ?? (() => false)
    for (const target of targets) {
      for (const source of bySourceLoad) {
        const existing = open.get(key(source, target.id))
        if (existing) return existing
      }
      if (loadOf(target.id) >= maxTasks) continue
      const source = bySourceLoad.find((id) => loadOf(id) < maxTasks && !blocked(id, target.id))
      if (source === undefined) continue
      const transfer: PlannedTransfer = {source, target: target.id, replicas: []}
      tasks.push(transfer)
      open.set(key(source, target.id), transfer)
      load.set(source, loadOf(source) + 1)
      load.set(target.id, loadOf(target.id) + 1)
      return transfer
    }
    return undefined
  }
}

function key(source: string, target: string): string {
  return `${source}\u0000${target}`
}

export interface ExcessDelete {
  chunkId: string
  version: number
  nodeId: string
}

/**
 * Chunks with more than R fresh replicas that count (a dead node came back after its chunks were
 * repaired elsewhere, a rebalancing copy landed, a drained node was taken back): delete from usable
 * holders until R remain, one at a time. A chunk the rebalancer moved loses the copy on the node it
 * moved away from (`moveSources`): that is the move. Otherwise never a zone's last copy while another
 * zone holds two, then from the zone with the most copies, then from the fullest node: the copies that
 * stay keep the widest zone spread (trimming by free space alone once left chunks only on nodes of
 * the two zones a bench then killed). A draining node's copies are kept: they do not count, and serve
 * reads until it is stopped.
 */
export function planExcess(chunks: readonly RepairChunk[], nodes: readonly RepairNode[], R: number, moveSources: ReadonlyMap<string, string> = new Map()): ExcessDelete[] {
  const byId = new Map(nodes.map((node) => [node.id, node]))
  const deletes: ExcessDelete[] = []
  for (const chunk of chunks) {
    const holders = chunk.replicas
      .filter((r) => isFresh(r) && countsTowardR(byId.get(r.nodeId)))
      .map((r) => byId.get(r.nodeId)!)
    if (holders.length <= R) continue
    const movedFrom = moveSources.get(chunk.chunkId)
    const copiesInZone = new Map<string, number>()
    for (const node of holders) copiesInZone.set(node.zone, (copiesInZone.get(node.zone) ?? 0) + 1)
    const inZone = (node: RepairNode) => copiesInZone.get(node.zone)!
    const candidates = holders.filter((node) => node.usable)
    for (let left = holders.length; left > R && candidates.length > 0; left--) {
      candidates.sort(
        (a, b) =>
          Number(b.id === movedFrom) - Number(a.id === movedFrom) ||
          Number(inZone(a) === 1) - Number(inZone(b) === 1) ||
          inZone(b) - inZone(a) ||
          a.freeBytes - b.freeBytes ||
          compareText(b.id, a.id),
      )
      const node = candidates.shift()!
      copiesInZone.set(node.zone, inZone(node) - 1)
      deletes.push({chunkId: chunk.chunkId, version: chunk.version, nodeId: node.id})
    }
  }
  return deletes
}
