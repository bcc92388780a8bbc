import type {MasterMetrics} from '../telemetry/metrics.js'
import type {Clock} from '../util/clock.js'
import type {Logger} from '../util/log.js'
import type {Db} from './db.js'
import type {DeleteSender, NodeRegistry} from './nodes.js'

/** What the master's parts share: the database, the node registry and the cluster settings. */
export interface MasterContext {
  db: Db
  nodes: NodeRegistry
  deletes: DeleteSender
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
}
