import {ChunkyError, ErrorBody, HTTP_STATUS, isErrorCode, type ErrorCode} from '../protocol/index.js'
import {NetworkError} from './http.js'

// Turning what the network or a server says into a ChunkyError whose message tells the user what to do.

/** The error code (ECONNREFUSED, ETIMEDOUT…) of a request that got no answer at all, else undefined. */
export function networkErrorCode(err: unknown): string | undefined {
  return err instanceof NetworkError ? err.code : undefined
}

/** The ChunkyError an error response stands for: the server's code and message when it sent an ErrorBody. */
export function errorFromResponse(status: number, body: string, who: string): ChunkyError {
  let parsed: ErrorBody | undefined
  try {
    parsed = ErrorBody.parse(JSON.parse(body))
  } catch {
    parsed = undefined
  }
  if (parsed && isErrorCode(parsed.error.code)) return new ChunkyError(parsed.error.code, parsed.error.message)
  const message = parsed ? parsed.error.message : `${who} answered HTTP ${status}`
  return new ChunkyError(codeForStatus(status), message)
}

/** The most general code for an HTTP status (used when the body carries none). */
export function codeForStatus(status: number): ErrorCode {
  const generic: Record<number, ErrorCode> = {400: 'BAD_REQUEST', 401: 'UNAUTHORIZED', 403: 'FORBIDDEN', 404: 'NOT_FOUND', 409: 'VERSION_CONFLICT',
    413: 'BODY_TOO_LARGE', 422: 'CHECKSUM_MISMATCH', 503: 'NO_NODES'}
  const known = generic[status]
  if (known) return known
  const anyMatch = (Object.keys(HTTP_STATUS) as ErrorCode[]).find((code) => HTTP_STATUS[code] === status)
  return anyMatch ?? (status >= 500 ? 'INTERNAL' : 'BAD_REQUEST')
}

export function masterUnreachable(masterUrl: string, reason: string): ChunkyError {
  return new ChunkyError(
    'MASTER_UNREACHABLE',
    `cannot reach the master at ${masterUrl} (${reason}): is \`chunky master\` running? set --master, CHUNKY_MASTER or \`chunky config set master URL\``,
  )
}

/** A 401 from the master, with the hint that fits whether a token was sent at all. */
export function credentialRefused(hasToken: boolean): ChunkyError {
  return hasToken
    ? new ChunkyError('UNAUTHORIZED', 'the master refused the credential (401): check --token, CHUNKY_TOKEN or `chunky config set token`')
    : new ChunkyError('UNAUTHORIZED', 'the master requires a credential (401): pass --token, set CHUNKY_TOKEN or run `chunky config set token T` (`chunky master` prints it when it starts)')
}

/** The user pressed Ctrl-C (or the caller aborted): not a failure of the cluster. */
export class InterruptedError extends Error {
  override name = 'InterruptedError'
  /** The message may say how to resume ("interrupted: run … again to resume"). */
  constructor(message = 'interrupted') {
    super(message)
  }
}

/** Throws InterruptedError when the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new InterruptedError()
}

/**
 * A child of `parent` for one request, to be disposed when the request ends. Handing the long-lived
 * parent signal to every request would pile a listener onto it per request, and Node warns past 10.
 */
export function requestSignal(parent: AbortSignal | undefined): {signal: AbortSignal | undefined; dispose: () => void} {
  if (!parent) return {signal: undefined, dispose: () => {}}
  const child = new AbortController()
  const abort = () => child.abort()
  if (parent.aborted) child.abort()
  else parent.addEventListener('abort', abort, {once: true})
  return {signal: child.signal, dispose: () => parent.removeEventListener('abort', abort)}
}
