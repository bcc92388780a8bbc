export const PROTOCOL_VERSION = 1

/** 10 MiB: the default chunk size (SPEC.md "Words"). */
export const DEFAULT_CHUNK_SIZE = 10 * 1024 * 1024
/** Largest chunk a node accepts; `--chunk-size` above this is refused by the master. */
export const MAX_CHUNK_SIZE = 256 * 1024 * 1024
/** Smallest chunk size the master accepts, so a file can't be split into millions of pieces by mistake. */
export const MIN_CHUNK_SIZE = 64 * 1024

export const DEFAULT_MASTER_URL = 'http://127.0.0.1:7400'
export const DEFAULT_MASTER_PORT = 7400
export const DEFAULT_NODE_PORT = 7401

/** Largest JSON body any server reads (an upload plan for a ~100 GiB file fits comfortably). */
export const MAX_JSON_BODY = 4 * 1024 * 1024
/** Largest WebSocket message; chunk reports are sent in batches that stay far below this. */
export const MAX_WS_PAYLOAD = 4 * 1024 * 1024
/** Entries per chunk-report batch a node sends after (re)connecting. */
export const REPORT_BATCH_SIZE = 2000

/** HTTP headers carried on a chunk write. */
export const HEADER_GRANT = 'x-chunky-grant'
export const HEADER_CHAIN = 'x-chunky-chain'
export const HEADER_SHA256 = 'x-chunky-sha256'
export const HEADER_VERSION = 'x-chunky-version'

/** WebSocket close codes (4000-4999 are for applications). */
export const WS_CLOSE = {
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  POLICY: 1008,
  REPLACED: 4001,
  BAD_HELLO: 4002,
  /** Another node with this id is connected and alive: the newcomer is refused, the running one is left alone. */
  DUPLICATE_ID: 4003,
} as const

/** `lastHeartbeatMsAgo` of a node never heard from: larger than any real gap. */
export const NEVER_HEARD_MS = Number.MAX_SAFE_INTEGER
