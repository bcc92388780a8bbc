import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import type {ChunkRange} from './plan.js'
import {InterruptedError, requestSignal} from './errors.js'

/**
 * SHA-256 (hex) of each range of the file, read as a stream (memory stays bounded by the stream's
 * buffer). `onProgress` gets the bytes hashed so far over all ranges.
 */
export async function hashChunks(
  path: string,
  ranges: ChunkRange[],
  onProgress: (hashedBytes: number) => void = () => {},
  signal?: AbortSignal,
): Promise<string[]> {
  const digests: string[] = []
  let hashed = 0
  for (const range of ranges) {
    const hash = createHash('sha256')
    let seen = 0
    const abort = requestSignal(signal)
    const stream = createReadStream(path, {start: range.start, end: range.end - 1, highWaterMark: 1024 * 1024, signal: abort.signal})
    try {
      for await (const part of stream as AsyncIterable<Buffer>) {
        hash.update(part)
        seen += part.length
        hashed += part.length
        onProgress(hashed)
      }
    } catch (err) {
      if (signal?.aborted) throw new InterruptedError()
      throw err
    } finally {
      abort.dispose()
    }
    // A file that shrank under us would otherwise hash a short range without complaint.
    if (seen !== range.end - range.start) throw new Error(`${path} changed while it was being read (chunk ${range.index} is short)`)
    digests.push(hash.digest('hex'))
  }
  return digests
}
