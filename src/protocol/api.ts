import {z} from 'zod'
import {ByteCount, ChunkId, FileName, NodeId, Sha256Hex, Version, Zone} from './names.js'
import {ChunkyError} from './errors.js'
import {ReplicaInfo} from './messages.js'

// HTTP bodies. Every route requires `authorization: Bearer <credential>` except GET /healthz and the
// dashboard page; which credential kind may use which route is in credentials.ts and src/http/auth.ts
// (401 missing/unknown, 403 wrong kind). POST /transfer also takes a transfer grant (grant.ts) in x-chunky-grant.
//
// master:
//   GET    /healthz                      -> Health (no credential)
//   GET    /api/nodes                    -> NodeInfoList (read as NodeList by clients that need only the summary)
//   POST   /api/nodes/:id/drain          (empty JSON {}) -> NodeInfo   (write: no new chunks there, its chunks copied away)
//   POST   /api/nodes/:id/undrain        (empty JSON {}) -> NodeInfo
//   DELETE /api/nodes/:id                -> ForgetResult (write; a dead node only, else 409 NODE_ALIVE)
//   POST   /api/uploads                  UploadPlanRequest -> UploadPlan
//   POST   /api/uploads/:uploadId/replan ReplanRequest -> PlannedChunk
//   POST   /api/uploads/:uploadId/commit (empty JSON {}) -> CommitResult
//   POST   /api/uploads/batch            UploadPlanBatchRequest -> UploadPlanBatch (each entry planned as POST /api/uploads)
//   POST   /api/uploads/commit           CommitBatchRequest -> CommitBatch (each entry committed as its own commit)
//   GET    /api/files                    -> FileList
//   GET    /api/files?prefix=P&chunks=1  -> PrefixFileList (every file under P with its chunk SHA-256s, one request)
//   GET    /api/files/:name              -> FileManifest   (name URL-encoded as ONE segment: encodeURIComponent)
//   DELETE /api/files/:name              -> RemoveResult
//   POST   /api/files/remove             RemoveBatchRequest -> RemoveBatch (each name removed as DELETE /api/files/:name)
//   GET    /api/status[?name=NAME]       -> StatusDoc      (SPEC.md "chunky status --json")
//   POST   /api/bad-replica              BadReplicaReport -> {ok: true}
//   GET    /ws                           WebSocket upgrade for nodes (messages.ts)
//   GET    /api/live[?file=NAME]         text/event-stream for the dashboard: `update` events whose JSON holds
//                                        serverTime and the sections that changed (master/dashboard/snapshot.ts)
//   GET    /, /dashboard/<file>          the dashboard page (no credential; it holds no data)
// node:
//   GET    /healthz                      -> Health (no credential; clients time it to find the nearest node)
//   PUT    /chunks/:chunkId/:version     raw bytes, content-length = planned size; headers x-chunky-grant
//                                        (grant.ts), x-chunky-chain (ChainHeader JSON) -> WriteResult
//   GET    /chunks/:chunkId/:version     -> raw bytes, header x-chunky-sha256; 404 unless that version is held
//   POST   /transfer                     TransferRequest -> transfer frames (repair; one per replica, below)
// Errors from either: ErrorBody with the matching HTTP status (errors.ts).

export const ErrorBody = z.object({error: z.object({code: z.string(), message: z.string()})})
export type ErrorBody = z.infer<typeof ErrorBody>

export const Health = z.object({ok: z.literal(true), role: z.enum(['master', 'node']), id: z.string().optional()})

/**
 * A master's GET /healthz. `epoch` is the leader epoch it knows (raised at each takeover); `leader` is
 * where the leader is, as the store says (a standby answers it so clients and nodes can move there).
 */
export const MasterHealth = z.object({
  ok: z.literal(true),
  role: z.enum(['leader', 'standby']),
  epoch: z.number().int().nonnegative(),
  leader: z.string().nullable().optional(),
})
export type MasterHealth = z.infer<typeof MasterHealth>

/** alive and dead by heartbeats; draining and drained while `chunky nodes drain` takes a node out (SPEC.md). */
export const NodeState = z.enum(['alive', 'dead', 'draining', 'drained'])
export type NodeState = z.infer<typeof NodeState>
export const NodeSummary = z.object({id: NodeId, url: z.string(), zone: Zone, state: NodeState})
export const NodeList = z.object({nodes: z.array(NodeSummary)})
export type NodeSummary = z.infer<typeof NodeSummary>

/** How far a drain got (master/drain.ts). */
export const DrainInfo = z.object({
  startedAt: z.string(),
  /** Chunks on the node still short of R fresh copies on other alive nodes. */
  chunksLeft: z.number().int().nonnegative(),
  /** Copies of uploads in flight on it: they need copies elsewhere once committed. */
  pendingCopies: z.number().int().nonnegative(),
  /** Uploads begun before the drain that may still write to it. */
  uploadsInFlight: z.number().int().nonnegative(),
  waiting: z.string().optional(),
})
export type DrainInfo = z.infer<typeof DrainInfo>
/** `chunky nodes --json` (SPEC.md "Operating a cluster"): every field required, more welcome. */
export const NodeInfo = NodeSummary.extend({
  /** Heard from within --node-timeout (a drained node may be alive or stopped). */
  alive: z.boolean(),
  lastHeartbeatMsAgo: z.number().int().nonnegative(),
  chunks: z.number().int().nonnegative(),
  bytes: ByteCount,
  freeBytes: ByteCount,
  /** false while other nodes fail to copy from this one. */
  reachable: z.boolean(),
  drain: DrainInfo.optional(),
})
export type NodeInfo = z.infer<typeof NodeInfo>
export const NodeInfoList = z.object({nodes: z.array(NodeInfo)})
export type NodeInfoList = z.infer<typeof NodeInfoList>
export const ForgetResult = z.object({id: NodeId, forgotten: z.literal(true), replicasDropped: z.number().int().nonnegative()})
export type ForgetResult = z.infer<typeof ForgetResult>

export const ChunkPlanInput = z.object({index: z.number().int().nonnegative(), size: ByteCount, sha256: Sha256Hex})
export const UploadPlanRequest = z.object({
  name: FileName,
  size: ByteCount,
  chunkSize: z.number().int().positive(),
  chunks: z.array(ChunkPlanInput).max(1_000_000),
  /** The node the client measured nearest (or chose with --node); placed first in every chunk's chain. */
  entryNode: NodeId.optional(),
  /** Alive nodes in the writer's measured round-trip order, nearest first: each chunk's chain starts at the nearest node chosen for it. */
  byRtt: z.array(NodeId).max(10_000).optional(),
  exclude: z.array(NodeId).max(1000).default([]),
})
export type UploadPlanRequest = z.input<typeof UploadPlanRequest>

export const Target = z.object({id: NodeId, url: z.string(), zone: Zone})
export type Target = z.infer<typeof Target>

export const PlannedChunk = z.object({
  index: z.number().int().nonnegative(),
  chunkId: ChunkId,
  version: Version,
  size: ByteCount,
  sha256: Sha256Hex,
  /** True when the cluster already holds these bytes at `version`: nothing to send. */
  skip: z.boolean(),
  /** Chain order: targets[0] receives from the client and forwards to targets[1], and so on. Empty when skip. */
  targets: z.array(Target),
  /** Signed write grant for targets (grant.ts); "" when skip. */
  grant: z.string(),
})
export type PlannedChunk = z.infer<typeof PlannedChunk>

export const UploadPlan = z.object({
  uploadId: z.string(),
  name: FileName,
  size: ByteCount,
  chunkSize: z.number().int().positive(),
  replicas: z.number().int().positive(),
  minReplicas: z.number().int().positive(),
  chunks: z.array(PlannedChunk),
})
export type UploadPlan = z.infer<typeof UploadPlan>

/** Re-place one chunk of an upload (same version, same bytes) avoiding nodes that failed. */
export const ReplanRequest = z.object({index: z.number().int().nonnegative(), exclude: z.array(NodeId).max(1000)})
export type ReplanRequest = z.infer<typeof ReplanRequest>

export const CommitResult = z.object({name: FileName, size: ByteCount, chunks: z.number().int().nonnegative(), committedAt: z.string()})
export type CommitResult = z.infer<typeof CommitResult>

/** Files planned or committed in one request of a folder upload; more go in further requests. */
export const MAX_BATCH_FILES = 100
/** Why one entry of a batch failed (the others are answered as usual). */
export const BatchEntryError = z.object({error: z.object({code: z.string(), message: z.string()})})
export type BatchEntryError = z.infer<typeof BatchEntryError>
export const UploadPlanBatchRequest = z.object({uploads: z.array(UploadPlanRequest).min(1).max(MAX_BATCH_FILES)})
export type UploadPlanBatchRequest = z.input<typeof UploadPlanBatchRequest>
/** In the order of the request's uploads. */
export const UploadPlanBatch = z.object({plans: z.array(z.union([UploadPlan, BatchEntryError]))})
export type UploadPlanBatch = z.infer<typeof UploadPlanBatch>
export const CommitBatchRequest = z.object({uploadIds: z.array(z.string()).min(1).max(MAX_BATCH_FILES)})
export type CommitBatchRequest = z.infer<typeof CommitBatchRequest>
/** In the order of the request's uploadIds. */
export const CommitBatch = z.object({results: z.array(z.union([CommitResult, BatchEntryError]))})
export type CommitBatch = z.infer<typeof CommitBatch>

/** What a write to a node (and its chain) achieved: the nodes that hold the chunk durably, and those that failed. */
export const WriteResult = z.object({
  stored: z.array(z.object({node: NodeId, version: Version, sha256: Sha256Hex})),
  /** `code` (errors.ts), when known: for bytes stored but not acknowledged, MASTER_UNREACHABLE (no answer from the master) or VERSION_CONFLICT (it refused them). */
  failed: z.array(z.object({node: NodeId, error: z.string(), code: z.string().optional()})),
})
export type WriteResult = z.infer<typeof WriteResult>

/** x-chunky-chain: the nodes after this one, in order. JSON, ASCII only. */
export const ChainHeader = z.array(Target).max(16)

export const TransferRequest = z.object({replicas: z.array(z.object({chunkId: ChunkId, version: Version})).min(1).max(1000)})
export type TransferRequest = z.infer<typeof TransferRequest>

// The answer to POST /transfer (200, TRANSFER_CONTENT_TYPE, neither chunked nor a content-length: it
// ends when the source closes the connection) is a run of frames, one per replica sent, then an end
// frame: a 4-byte big-endian length n, n bytes of JSON (TransferFrame), then the replica's `size`
// bytes as they are on disk; n = 0 ends the transfer. A puller reads the bytes straight into its own
// buffers (no HTTP or archive parsing), and a link that closes before the end frame is a broken transfer.
export const TRANSFER_CONTENT_TYPE = 'application/x-chunky-replicas'
export const TransferFrame = ReplicaInfo
export type TransferFrame = z.infer<typeof TransferFrame>
export const MAX_TRANSFER_FRAME_HEAD = 4096

/** A frame's length and JSON, to be followed by the replica's bytes; no replica: the end frame. */
export function encodeTransferFrame(replica?: TransferFrame): Buffer {
  if (!replica) return Buffer.alloc(4)
  const json = Buffer.from(JSON.stringify(replica))
  const frame = Buffer.alloc(4 + json.length)
  frame.writeUInt32BE(json.length, 0)
  json.copy(frame, 4)
  return frame
}

export function decodeTransferFrame(json: Buffer): TransferFrame {
  let parsed: unknown
  try {
    parsed = JSON.parse(json.toString('utf8'))
  } catch {
    throw new ChunkyError('BAD_MESSAGE', 'a transfer frame is not JSON')
  }
  const frame = TransferFrame.safeParse(parsed)
  if (!frame.success) throw new ChunkyError('BAD_MESSAGE', `a transfer frame is malformed: ${z.prettifyError(frame.error)}`)
  return frame.data
}

export const ManifestChunk = z.object({
  index: z.number().int().nonnegative(),
  chunkId: ChunkId,
  version: Version,
  size: ByteCount,
  sha256: Sha256Hex,
  /** Fresh replicas on alive nodes, in the master's preferred order. */
  replicas: z.array(Target),
})
export const FileManifest = z.object({
  name: FileName,
  size: ByteCount,
  chunkSize: z.number().int().positive(),
  committedAt: z.string(),
  chunks: z.array(ManifestChunk),
})
export type FileManifest = z.infer<typeof FileManifest>

export const FileListEntry = z.object({
  name: FileName,
  size: ByteCount,
  chunks: z.number().int().nonnegative(),
  committedAt: z.string(),
  /** The lowest count of fresh replicas on alive nodes over the file's chunks. */
  minReplicas: z.number().int().nonnegative(),
})
export const FileList = z.object({
  files: z.array(FileListEntry),
  /** R, so a reader can show "2/3". */
  replicas: z.number().int().positive().optional(),
})

/**
 * GET /api/files?prefix=P&chunks=1: every committed file whose name starts with P (P/ for a folder),
 * each with its chunks' SHA-256 in order, in one answer, so `chunky sync` can tell unchanged files
 * apart locally instead of asking once per file.
 */
export const PrefixFileEntry = z.object({
  name: FileName,
  size: ByteCount,
  chunkSize: z.number().int().positive(),
  committedAt: z.string(),
  chunks: z.array(Sha256Hex),
})
export const PrefixFileList = z.object({files: z.array(PrefixFileEntry)})
export type PrefixFileList = z.infer<typeof PrefixFileList>

/** GET /api/rebalance: how full each node is against the mean (fill = committedBytes ÷ (used + free)), and the moves under way. */
export const BalanceReport = z.object({
  enabled: z.boolean(),
  balanced: z.boolean(),
  meanFill: z.number(),
  band: z.number(),
  nodes: z.array(z.object({id: NodeId, fill: z.number(), committedBytes: ByteCount, usedBytes: ByteCount, freeBytes: ByteCount, outOfBand: z.boolean()})),
  moving: z.number().int().nonnegative(),
  moved: z.number().int().nonnegative(),
  waiting: z.string().optional(),
})
export type BalanceReport = z.infer<typeof BalanceReport>

export const RemoveResult = z.object({name: FileName, removedChunks: z.number().int().nonnegative()})
export const RemoveBatchRequest = z.object({names: z.array(FileName).min(1).max(MAX_BATCH_FILES)})
export type RemoveBatchRequest = z.infer<typeof RemoveBatchRequest>
/** In the order of the request's names. */
export const RemoveBatch = z.object({results: z.array(z.union([RemoveResult, BatchEntryError]))})
export type RemoveBatch = z.infer<typeof RemoveBatch>

export const BadReplicaReport = z.object({chunkId: ChunkId, version: Version, node: NodeId, reason: z.string().max(1000)})

// SPEC.md `chunky status --json`: every field required, more welcome.
export const StatusReplica = z.object({node: NodeId, version: Version, state: z.enum(['fresh', 'stale', 'corrupt'])})
export const StatusChunk = z.object({
  index: z.number().int().nonnegative(),
  id: ChunkId,
  version: Version,
  size: ByteCount,
  sha256: Sha256Hex,
  replicas: z.array(StatusReplica),
})
export const StatusFile = z.object({name: FileName, size: ByteCount, chunkSize: z.number().int().positive(), chunks: z.array(StatusChunk)})
export const StatusNode = z.object({
  id: NodeId,
  url: z.string(),
  zone: Zone,
  state: z.enum(['alive', 'dead']),
  lastHeartbeatMsAgo: z.number().int().nonnegative(),
  chunks: z.number().int().nonnegative(),
  bytes: ByteCount,
  freeBytes: ByteCount.optional(),
  /** false while other nodes fail to copy from this one (alive on its master link, its data port unreachable). */
  reachable: z.boolean().optional(),
  /** Set while `chunky nodes drain` takes the node out of service (`state` stays alive or dead). */
  drain: z.enum(['draining', 'drained']).optional(),
})
export const StatusDoc = z.object({
  nodes: z.array(StatusNode),
  files: z.array(StatusFile),
  summary: z.object({
    nodes: z.number().int().nonnegative(),
    aliveNodes: z.number().int().nonnegative(),
    files: z.number().int().nonnegative(),
    chunks: z.number().int().nonnegative(),
    underReplicated: z.number().int().nonnegative(),
    stale: z.number().int().nonnegative(),
    corrupt: z.number().int().nonnegative(),
  }),
  replicas: z.number().int().positive().optional(),
  minReplicas: z.number().int().positive().optional(),
})
export type StatusDoc = z.infer<typeof StatusDoc>
