import {open} from 'node:fs/promises'
import type {ClientRequest} from 'node:http'
import {z} from 'zod'
import {ChunkyError, HEADER_CHAIN, HEADER_GRANT, WriteResult, type PlannedChunk} from '../protocol/index.js'
import {sendForText, writeBody} from './http.js'
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
    response = await sendForText(new URL(`/chunks/${chunk.chunkId}/${chunk.version}`, entry.url), {
      method: 'PUT',
      // Read afresh on every attempt: bytes half sent cannot be replayed.
      body: (request) => sendFileRange(input.path, range, request, input.onSent),
      headers: {
        ...(input.token ? {authorization: `Bearer ${input.token}`} : {}),
        'content-length': String(size),
        'content-type': 'application/octet-stream',
        [HEADER_GRANT]: chunk.grant,
        [HEADER_CHAIN]: JSON.stringify(chunk.targets.slice(1)),
      },
      // The answer comes after the whole chain has the bytes on disk: allow for slow disks.
      connectTimeoutMs: 5_000,
      idleTimeoutMs: 30_000,
      responseTimeoutMs: 120_000,
      signal: abort.signal,
    })
  } catch (err) {
    if (input.signal?.aborted) throw new InterruptedError()
    if (err instanceof ChunkyError) throw err
    const code = networkErrorCode(err) ?? (err instanceof Error ? err.message : String(err))
    if ((err as {code?: string}).code === 'ENOENT') throw new ChunkyError('BAD_REQUEST', `cannot read ${input.path}: it is gone`)
    throw new NodeFailure(entry.id, `node ${entry.id} (${entry.url}) failed during the write: ${code}`)
  } finally {
    abort.dispose()
  }
  if (response.statusCode >= 500) {
    const refused = errorFromResponse(response.statusCode, response.body, `node ${entry.id}`)
    // The node is well but has no link to a leading master now (a failover): not the node's fault.
    if (refused.code === 'MASTER_UNREACHABLE' || refused.code === 'NOT_LEADER') throw refused
    throw new NodeFailure(entry.id, `node ${entry.id} failed the write (${response.statusCode}): ${refused.message}`)
  }
  if (response.statusCode >= 400) throw errorFromResponse(response.statusCode, response.body, `node ${entry.id}`)
  try {
    return WriteResult.parse(JSON.parse(response.body))
  } catch (err) {
    const detail = err instanceof z.ZodError ? z.prettifyError(err).replace(/\s+/g, ' ') : 'not JSON'
    throw new NodeFailure(entry.id, `node ${entry.id} answered the write with something unexpected: ${detail}`)
  }
}

/** Bytes per read of the file; two such buffers per chunk in flight, reused. */
const READ_BYTES = 1024 * 1024
/**
 * Read buffers handed from one chunk to the next: without this every chunk made two fresh 1 MiB
 * buffers, and the dead ones piled up as ~30 MB of resident memory until the collector came round.
 */
const spareBuffers: Buffer[] = []
const takeBuffer = () => spareBuffers.pop() ?? Buffer.allocUnsafe(READ_BYTES)

/**
 * Sends bytes [start, end) of the file: reads into one buffer while the other is being sent, so the
 * disk and the network overlap, and the memory is two fixed buffers however large the chunk (no
 * garbage buffer per read for the collector to catch up with).
 */
async function sendFileRange(path: string, range: ChunkRange, request: ClientRequest, onSent: (bytes: number) => void): Promise<void> {
  const file = await open(path, 'r')
  const buffers = [takeBuffer(), takeBuffer()]
  let completed = false
  try {
    let sending: Promise<void> = Promise.resolve() // the one write in flight, of the other buffer
    let position = range.start
    let sent = 0
    for (let turn = 0; position < range.end; turn++) {
      const buffer = buffers[turn % 2]!
      const {bytesRead} = await file.read(buffer, 0, Math.min(READ_BYTES, range.end - position), position)
      if (bytesRead === 0) throw new ChunkyError('BAD_REQUEST', `${path} changed while it was being uploaded (chunk ${range.index} is short): upload it again once it is complete`)
      position += bytesRead
      await sending
      sending = writeBody(request, buffer.subarray(0, bytesRead)).then(() => {
        sent += bytesRead
        onSent(sent)
      })
      sending.catch(() => {}) // seen by the await above on the next turn (or below); not unhandled meanwhile
    }
    await sending
    completed = true
  } finally {
    // Only a send that finished gives its buffers back: after a failure one may still be in a write.
    if (completed) spareBuffers.push(...buffers)
    await file.close()
  }
}
