import {createReadStream} from 'node:fs'
import got from 'got'
import {z} from 'zod'
import {ChunkyError, HEADER_CHAIN, HEADER_GRANT, WriteResult, type PlannedChunk} from '../protocol/index.js'
import {errorFromResponse, InterruptedError, networkErrorCode, requestSignal} from './errors.js'
import type {ChunkRange} from './plan.js'

// One attempt to write one chunk: PUT the byte range to the first node of the chain, which stores it
// and forwards it down the chain (targets[1..]) while it is still arriving.

export interface PutChunkInput {
  path: string
  range: ChunkRange
  chunk: PlannedChunk
  token: string | undefined
  onSent: (bytes: number) => void
  signal?: AbortSignal
}

/** A node that gave no answer or a 5xx: the chunk is worth re-planning on other nodes. */
export class NodeFailure extends Error {
  override name = 'NodeFailure'
  constructor(
    readonly node: string,
    message: string,
  ) {
    super(message)
  }
}

export async function putChunk(input: PutChunkInput): Promise<WriteResult> {
  const {chunk, range} = input
  const entry = chunk.targets[0]
  if (!entry) throw new ChunkyError('NO_NODES', `the master planned chunk ${chunk.index} on no node`)
  const size = range.end - range.start
  input.onSent(0)
  let response
  const abort = requestSignal(input.signal)
  try {
    // A fresh read stream on every attempt: a stream that was half sent cannot be replayed.
    // 1 MiB reads: a tenth of the read calls and stream events of the 64 KiB default, for a 10 MiB chunk.
    const body = createReadStream(input.path, {start: range.start, end: range.end - 1, highWaterMark: 1024 * 1024})
    const request = got.put(new URL(`/chunks/${chunk.chunkId}/${chunk.version}`, entry.url), {
      body,
      headers: {
        ...(input.token ? {authorization: `Bearer ${input.token}`} : {}),
        'content-length': String(size),
        'content-type': 'application/octet-stream',
        [HEADER_GRANT]: chunk.grant,
        [HEADER_CHAIN]: JSON.stringify(chunk.targets.slice(1)),
      },
      responseType: 'text',
      throwHttpErrors: false,
      retry: {limit: 0}, // retries happen a level up, with a new plan
      // The answer comes after the whole chain has the bytes on disk: allow for slow disks.
      timeout: {connect: 5_000, socket: 30_000, response: 120_000},
      signal: abort.signal,
    })
    request.on('uploadProgress', (progress) => input.onSent(Math.min(progress.transferred, size)))
    response = await request
  } catch (err) {
    if (input.signal?.aborted) throw new InterruptedError()
    const code = networkErrorCode(err) ?? (err instanceof Error ? err.message : String(err))
    if ((err as {code?: string}).code === 'ENOENT') throw new ChunkyError('BAD_REQUEST', `cannot read ${input.path}: it is gone`)
    throw new NodeFailure(entry.id, `node ${entry.id} (${entry.url}) failed during the write: ${code}`)
  } finally {
    abort.dispose()
  }
  if (response.statusCode >= 500) {
    const reason = errorFromResponse(response.statusCode, response.body, `node ${entry.id}`).message
    throw new NodeFailure(entry.id, `node ${entry.id} failed the write (${response.statusCode}): ${reason}`)
  }
  if (response.statusCode >= 400) throw errorFromResponse(response.statusCode, response.body, `node ${entry.id}`)
  try {
    return WriteResult.parse(JSON.parse(response.body))
  } catch (err) {
    const detail = err instanceof z.ZodError ? z.prettifyError(err).replace(/\s+/g, ' ') : 'not JSON'
    throw new NodeFailure(entry.id, `node ${entry.id} answered the write with something unexpected: ${detail}`)
  }
}
