import type {HttpLimits} from '../http/limits.js'
import type {CredentialHashes} from '../protocol/index.js'
import type {CorsPolicy} from '../http/cors.js'
import type {ChunkStore, RangeReader} from '../storage/index.js'
import type {NodeMetrics} from '../telemetry/metrics.js'
import type {Logger} from '../util/log.js'
import type {InflightWork} from './inflight.js'
import type {ManifestCache} from './manifests.js'
import type {MasterLink} from './master-link.js'
import type {TusContext} from './tus.js'
import type {VersionFloor} from './version-floor.js'

/** What the node's HTTP routes and command handlers share. */
export interface NodeContext {
  id: string
  token: string
  store: ChunkStore
  link: MasterLink
  log: Logger
  metrics: NodeMetrics
  inflight: InflightWork
  /** Set by close(): new requests are refused while in-flight ones finish. */
  closing: boolean
  /** The credentials this node accepts: from the master's `welcome`, else only its own. */
  credentials(): CredentialHashes
  /** Lowest version each chunk may still be written at (replayed grants). */
  versions: VersionFloor
  /** CA certificates to trust for HTTPS to other nodes (undefined: the system's). */
  ca?: string[]
  limits?: Partial<HttpLimits>
  /** File reads (serve-files.ts): verified ranged reads of this node's replicas… */
  ranges?: RangeReader
  /** …and the manifests of the files served, from the master. */
  manifests?: ManifestCache
  /** tus uploads at /tus/ (tus.ts). */
  tus?: TusContext
  /** Origins whose pages may read from and upload to this node (--cors-origin). */
  cors?: CorsPolicy
}
