// One table of error codes and the HTTP status each maps to. Servers turn a ChunkyError into a
// response in one place; clients turn a response back into a ChunkyError with the same code.
export const HTTP_STATUS = {
  BAD_REQUEST: 400,
  BAD_MESSAGE: 400,
  BAD_NAME: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  /** A write or transfer grant past its time: a new plan brings a fresh one (the client re-plans). */
  GRANT_EXPIRED: 403,
  NOT_FOUND: 404,
  FILE_NOT_FOUND: 404,
  CHUNK_NOT_FOUND: 404,
  UPLOAD_NOT_FOUND: 404,
  NODE_NOT_FOUND: 404,
  /** `nodes forget` of a node that is alive: only dead nodes can be forgotten. */
  NODE_ALIVE: 409,
  /** A node whose id a connected node has (close code 4003 on its link): it stops instead of retrying. */
  NODE_ID_IN_USE: 409,
  VERSION_CONFLICT: 409,
  NOT_DURABLE: 409,
  /** A grant or command of a master that no longer leads (an older epoch than the node has seen). */
  STALE_LEADER: 409,
  BODY_TOO_LARGE: 413,
  CHUNK_TOO_LARGE: 413,
  HEADERS_TOO_LARGE: 431,
  REQUEST_TIMEOUT: 408,
  CHECKSUM_MISMATCH: 422,
  LENGTH_MISMATCH: 422,
  /** tus: the upload's Upload-Offset is not the one given (409), its session expired (410), another PATCH holds it (423). */
  OFFSET_MISMATCH: 409,
  UPLOAD_EXPIRED: 410,
  UPLOAD_LOCKED: 423,
  /** tus: Tus-Resumable is missing or not 1.0.0. */
  TUS_VERSION_UNSUPPORTED: 412,
  UNSUPPORTED_MEDIA_TYPE: 415,
  /** tus: Upload-Checksum does not match the PATCH body (nothing of it is kept). */
  TUS_CHECKSUM_MISMATCH: 460,
  INTERNAL: 500,
  NO_NODES: 503,
  /** A bounded resource is full (e.g. live dashboard streams): try again later. */
  BUSY: 503,
  MASTER_UNREACHABLE: 503,
  /** A standby master (or one that just lost leadership): ask the leader, which the message names. */
  NOT_LEADER: 503,
  NODE_UNREACHABLE: 503,
} as const satisfies Record<string, number>

export type ErrorCode = keyof typeof HTTP_STATUS

export class ChunkyError extends Error {
  override name = 'ChunkyError'
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options)
  }

  get status(): number {
    return HTTP_STATUS[this.code]
  }
}

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(HTTP_STATUS, code)
}
