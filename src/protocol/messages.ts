import {z} from 'zod'
import {PROTOCOL_VERSION} from './constants.js'
import {CredentialHashes} from './credentials.js'
import {ChunkyError} from './errors.js'
import {ByteCount, ChunkId, NodeId, Sha256Hex, Version, Zone} from './names.js'

// The WebSocket link between a node and the master. Control traffic only: chunk bytes go over HTTP.
// Types come from the schemas, never written twice.

/** One replica as a node holds it: the chunk id, its version, its size and the SHA-256 recorded with it. */
export const ReplicaInfo = z.object({chunkId: ChunkId, version: Version, size: ByteCount, sha256: Sha256Hex})
export type ReplicaInfo = z.infer<typeof ReplicaInfo>

const SpaceFields = {freeBytes: ByteCount, usedBytes: ByteCount, chunkCount: ByteCount}

// node -> master

/** First message on every (re)connect. The master answers `welcome`, or closes with WS_CLOSE.BAD_HELLO. */
const Hello = z.object({
  type: z.literal('hello'),
  v: z.literal(PROTOCOL_VERSION),
  nodeId: NodeId,
  url: z.url({protocol: /^https?$/}),
  zone: Zone,
  ...SpaceFields,
})
const Heartbeat = z.object({type: z.literal('heartbeat'), ...SpaceFields})
/**
 * The full inventory, sent in batches after `welcome` (and again whenever the master asks with
 * `report-request`). `done` marks the last batch: replicas the master expected on this node and that
 * no batch of this report mentioned are gone.
 */
const Report = z.object({
  type: z.literal('report'),
  reportId: z.string().min(1).max(64),
  done: z.boolean(),
  replicas: z.array(ReplicaInfo).max(10_000),
})
/** A replica became durable on this node (upload or repair). The master answers `ack` with the same reqId. */
const Stored = z.object({type: z.literal('stored'), reqId: z.number().int().nonnegative(), replica: ReplicaInfo})
/** The node deleted a replica (answer to `delete`, or a leftover it cleaned on its own). */
const Deleted = z.object({type: z.literal('deleted'), chunkId: ChunkId, version: Version})
/** Scrubbing or a verify found bytes that no longer hash to the recorded SHA-256. */
const Corrupt = z.object({type: z.literal('corrupt'), chunkId: ChunkId, version: Version})
/** Result of a `replicate` command: which replicas were copied, which failed and why. */
const Replicated = z.object({
  type: z.literal('replicated'),
  taskId: z.string().min(1).max(64),
  ok: z.array(ReplicaInfo),
  failed: z.array(z.object({chunkId: ChunkId, version: Version, error: z.string().max(1000)})),
})

/** The node is stopping (SIGTERM, Ctrl-C): the master shows it dead at once instead of after --node-timeout. */
const Leaving = z.object({type: z.literal('leaving')})

export const NodeToMaster = z.discriminatedUnion('type', [Hello, Heartbeat, Report, Stored, Deleted, Corrupt, Replicated, Leaving])
export type NodeToMaster = z.infer<typeof NodeToMaster>
export type Hello = z.infer<typeof Hello>

// master -> node

/** Answer to a good hello. `grantKey` (hex) verifies write grants; see grant.ts. */
const Welcome = z.object({
  type: z.literal('welcome'),
  v: z.literal(PROTOCOL_VERSION),
  grantKey: z.string().regex(/^[0-9a-f]{64}$/),
  heartbeatMs: z.number().int().positive(),
  /** Hashes of the accepted credentials by kind, so nodes can check clients without asking (credentials.ts). */
  credentials: CredentialHashes.optional(),
  /** The leader epoch of this master and the store it leads (meta-store.ts): a node refuses a lower epoch of the same store. */
  fence: z.object({storeId: z.string().min(1).max(64), epoch: z.number().int().nonnegative()}).optional(),
})
const Ack = z.object({type: z.literal('ack'), reqId: z.number().int().nonnegative(), ok: z.boolean(), error: z.string().optional()})
/** Delete one replica: it is stale, corrupt, beyond R, or its chunk is no longer referenced. */
const Delete = z.object({
  type: z.literal('delete'),
  chunkId: ChunkId,
  version: Version,
  reason: z.enum(['stale', 'corrupt', 'unreferenced', 'excess']),
})
/** Pull these replicas from `source` (one streamed transfer), verify, store durably, answer `replicated`. */
const Replicate = z.object({
  type: z.literal('replicate'),
  taskId: z.string().min(1).max(64),
  source: z.object({id: NodeId, url: z.url({protocol: /^https?$/})}),
  replicas: z.array(ReplicaInfo).min(1).max(1000),
  /** Signed transfer grant (grant.ts) the target shows the source in x-chunky-grant. */
  grant: z.string().max(64 * 1024).optional(),
})
/** Re-hash one replica now (a reader reported it bad); answer `corrupt` if it is. */
const Verify = z.object({type: z.literal('verify'), chunkId: ChunkId, version: Version})
const ReportRequest = z.object({type: z.literal('report-request')})

export const MasterToNode = z.discriminatedUnion('type', [Welcome, Ack, Delete, Replicate, Verify, ReportRequest])
export type MasterToNode = z.infer<typeof MasterToNode>

/** Parse and validate one message at the edge; anything malformed becomes a BAD_MESSAGE error. */
export function decode<T>(schema: z.ZodType<T>, raw: string | Buffer): T {
  let json: unknown
  try {
    json = JSON.parse(typeof raw === 'string' ? raw : raw.toString('utf8'))
  } catch {
    throw new ChunkyError('BAD_MESSAGE', 'message is not JSON')
  }
  const result = schema.safeParse(json)
  if (!result.success) throw new ChunkyError('BAD_MESSAGE', z.prettifyError(result.error))
  return result.data
}
