import type {ChunkStore} from '../storage/index.js'
import type {Logger} from '../util/log.js'
import type {InflightWork} from './inflight.js'
import type {MasterLink} from './master-link.js'

/** What the node's HTTP routes and command handlers share. */
export interface NodeContext {
  id: string
  token: string
  store: ChunkStore
  link: MasterLink
  log: Logger
  inflight: InflightWork
  /** Set by close(): new requests are refused while in-flight ones finish. */
  closing: boolean
}
