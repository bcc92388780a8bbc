import {ChunkyError, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE} from '../protocol/index.js'

export interface ChunkLayoutInput {
  size: number
  chunkSize: number
  chunks: readonly {index: number; size: number}[]
}

/**
 * Checks that an upload plan request describes its file exactly (SPEC.md "chunk"): ceil(size /
 * chunkSize) chunks (none for an empty file), indexes 0..n-1 in order, chunk i of
 * min(chunkSize, size - i*chunkSize) bytes. Throws BAD_REQUEST saying what is wrong.
 */
export function checkChunkLayout(input: ChunkLayoutInput): void {
  const {size, chunkSize, chunks} = input
  if (chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) {
    throw new ChunkyError(
      'BAD_REQUEST',
      `chunk size ${chunkSize} is out of range: use ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE} bytes (--chunk-size)`,
    )
  }
  const expected = Math.ceil(size / chunkSize)
  if (chunks.length !== expected) {
    throw new ChunkyError('BAD_REQUEST', `a ${size}-byte file in ${chunkSize}-byte chunks has ${expected} chunks, not ${chunks.length}`)
  }
  chunks.forEach((chunk, i) => {
    if (chunk.index !== i) throw new ChunkyError('BAD_REQUEST', `chunk ${i} is listed as index ${chunk.index}: list indexes 0..${expected - 1} in order`)
    const want = Math.min(chunkSize, size - i * chunkSize)
    if (chunk.size !== want) throw new ChunkyError('BAD_REQUEST', `chunk ${i} must be ${want} bytes, not ${chunk.size}`)
  })
}
