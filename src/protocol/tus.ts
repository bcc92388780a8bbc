import {z} from 'zod'
import {PlannedChunk} from './api.js'
import {ByteCount, FileName, NodeId, Sha256Hex} from './names.js'

// tus 1.0.0 on every node (https://tus.io/protocols/resumable-upload): what the node answers, and
// the master routes the nodes call to keep each session in the master, so `/tus/{id}` is valid on
// every node. The master's offset counts only whole chunks stored on W nodes; the node that holds
// the tail of the current chunk (fsynced in its data dir) answers that tail too.
//
// master (node credential):
//   POST   /api/tus                      TusCreateRequest -> TusSession
//   GET    /api/tus/:id                  -> TusSession (410 EXPIRED once expired)
//   POST   /api/tus/:id/claim            TusClaimRequest -> TusSession (this node now holds the tail)
//   POST   /api/tus/:id/chunk            TusChunkRequest -> PlannedChunk (a version and targets for one chunk)
//   POST   /api/tus/:id/advance          TusAdvanceRequest -> TusSession (the chunk is on W nodes; commits on the last)
//   DELETE /api/tus/:id                  -> {ok: true} (termination)
//   POST   /api/tus/concat               TusConcatRequest -> TusSession (a final upload: the partials' chunks joined and committed)
// node:
//   OPTIONS /tus/, POST /tus/, HEAD|PATCH|DELETE /tus/:id      with Authorization: Bearer <rw credential>
//   the same under /tus/u/:uploadLink/                         a signed upload link (share.ts), no credential

export const TUS_VERSION = '1.0.0'
export const TUS_EXTENSIONS = ['creation', 'creation-with-upload', 'creation-defer-length', 'termination', 'expiration', 'checksum', 'concatenation']
/** The most partial uploads one final upload (Upload-Concat: final;…) may join. */
export const MAX_TUS_CONCAT_PARTS = 1000
export const TUS_CHECKSUM_ALGORITHMS = ['sha1', 'sha256'] as const
export const TUS_CONTENT_TYPE = 'application/offset+octet-stream'
export const TUS_PATH = '/tus/'
/** A signed upload link's tus endpoint: TUS_PATH + 'u/' + token + '/'. */
export const TUS_LINK_SEGMENT = 'u'
/** Upload-Metadata as sent is kept and given back verbatim; this bounds it. */
export const MAX_TUS_METADATA = 4096
/** The tus request headers a browser page sends, and the response headers it must read (CORS). */
export const TUS_REQUEST_HEADERS = ['Tus-Resumable', 'Upload-Length', 'Upload-Metadata', 'Upload-Offset', 'Upload-Defer-Length', 'Upload-Checksum', 'Upload-Concat', 'X-HTTP-Method-Override', 'X-Requested-With']
export const TUS_RESPONSE_HEADERS = ['Location', 'Upload-Offset', 'Upload-Length', 'Upload-Metadata', 'Upload-Defer-Length', 'Upload-Expires', 'Upload-Concat', 'Tus-Resumable', 'Tus-Version', 'Tus-Extension', 'Tus-Max-Size', 'Tus-Checksum-Algorithm']

export const TusId = z.string().regex(/^[0-9a-f]{32}$/, 'a tus upload id is 32 lowercase hex characters')

export const TusSession = z.object({
  id: TusId,
  /** The chunky name; for a partial upload (Upload-Concat: partial) the name of the signed link it was made with, else null. */
  name: FileName.nullable(),
  /** A partial upload of a concatenation: never committed itself, only joined into a final upload. */
  partial: z.boolean(),
  /** null while the client deferred it (Upload-Defer-Length). */
  length: ByteCount.nullable(),
  /** Bytes in whole chunks durable on W nodes (and, once complete, the length). */
  offset: ByteCount,
  chunkSize: z.number().int().positive(),
  metadata: z.string().max(MAX_TUS_METADATA),
  /** From a signed upload link: the most bytes the upload may have. */
  maxSize: ByteCount.nullable(),
  expiresAt: z.string(),
  /** The node that holds the tail (bytes past `offset`) and takes the next PATCH; `epoch` counts changes of holder. */
  holder: NodeId.nullable(),
  epoch: z.number().int().nonnegative(),
  state: z.enum(['open', 'done']),
  /** A final upload's partial uploads, in order (HEAD answers Upload-Concat: final;… with them); null for any other. A master of an older version sends none. */
  parts: z.array(TusId).max(MAX_TUS_CONCAT_PARTS).nullable().default(null),
})
export type TusSession = z.infer<typeof TusSession>

export const TusCreateRequest = z.object({
  /** For a partial upload: the signed link's name, or null with a credential. */
  name: FileName.nullable(),
  partial: z.boolean().default(false),
  length: ByteCount.nullable(),
  metadata: z.string().max(MAX_TUS_METADATA),
  maxSize: ByteCount.nullable(),
  node: NodeId,
})
export type TusCreateRequest = z.input<typeof TusCreateRequest>

/** A final upload: `parts` (ids of finished partial uploads, in order) joined into `name` and committed. */
export const TusConcatRequest = z.object({
  name: FileName,
  parts: z.array(TusId).min(1).max(MAX_TUS_CONCAT_PARTS),
  metadata: z.string().max(MAX_TUS_METADATA),
  maxSize: ByteCount.nullable(),
  /** The signed link's name when the final comes through one: it may join only partials made through a link for that name. */
  link: FileName.nullable(),
  node: NodeId,
})
export type TusConcatRequest = z.infer<typeof TusConcatRequest>

export const TusClaimRequest = z.object({node: NodeId, length: ByteCount.optional()})
export type TusClaimRequest = z.infer<typeof TusClaimRequest>

export const TusChunkRequest = z.object({
  node: NodeId,
  epoch: z.number().int().nonnegative(),
  index: z.number().int().nonnegative(),
  size: ByteCount,
  sha256: Sha256Hex,
  exclude: z.array(NodeId).max(1000).default([]),
})
export type TusChunkRequest = z.input<typeof TusChunkRequest>

export const TusAdvanceRequest = z.object({node: NodeId, epoch: z.number().int().nonnegative(), index: z.number().int().nonnegative()})
export type TusAdvanceRequest = z.infer<typeof TusAdvanceRequest>

export const TusChunkAnswer = PlannedChunk
