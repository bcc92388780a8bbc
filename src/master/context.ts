import type {MasterMetrics} from '../telemetry/metrics.js'
import type {Clock} from '../util/clock.js'
import type {Logger} from '../util/log.js'
import {grantKey, type Db} from './db.js'
import type {Leadership} from './meta-store.js'
import {DeleteSender, NodeRegistry, PendingDeletes} from './nodes.js'
import {ReplicaTable} from './replica-table.js'

/** What the master's parts share: the database, the node registry and the cluster settings. */
export interface MasterContext {
  db: Db
  nodes: NodeRegistry
  /** The only writer of the replicas table (replica-table.ts). */
  replicaTable: ReplicaTable
  /** Deletes sent and not confirmed yet (resent by the repair loop). */
  pendingDeletes: PendingDeletes
  deletes: DeleteSender
  /** With a metadata store apart from the working copy: resolves once every change so far is in it. */
  durable?: () => Promise<void>
  log: Logger
  /** Counters and histograms moved where things happen (telemetry/metrics.ts). */
  metrics: MasterMetrics
  clock: Clock
  /** R: copies wanted. */
  replicas: number
  /** W: fresh copies needed before a commit. */
  minReplicas: number
  /** Hex HMAC key for write grants (grant.ts). */
  grantKey: string
  /** This master's epoch (meta-store.ts): in grants and welcomes, so nodes refuse an older leader's. */
  leadership: Leadership
}

/** Wires a master context on an open database (the master, tests and the benchmark share this). */
export function createMasterContext(opts: {db: Db; clock: Clock; log: Logger; metrics: MasterMetrics; nodeTimeoutMs: number; replicas: number; minReplicas: number; leadership?: Leadership; durable?: () => Promise<void>}): MasterContext {
  const {db, clock, log, metrics} = opts
  const nodes = new NodeRegistry(db, clock, opts.nodeTimeoutMs)
  const pendingDeletes = new PendingDeletes(clock)
  return {
    db,
    nodes,
    replicaTable: new ReplicaTable(db),
    pendingDeletes,
    deletes: new DeleteSender(nodes, log, metrics, pendingDeletes, opts.durable),
    durable: opts.durable,
    log,
    metrics,
    clock,
    replicas: opts.replicas,
    minReplicas: opts.minReplicas,
    grantKey: grantKey(db),
    leadership: opts.leadership ?? {epoch: 1, storeId: 'local'},
  }
}
