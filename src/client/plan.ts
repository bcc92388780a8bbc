// Chunk boundaries (SPEC.md "Words"): chunk i covers bytes [i*S, min((i+1)*S, size)).

export interface ChunkRange {
  index: number
  /** First byte, inclusive. */
  start: number
  /** End, exclusive. */
  end: number
}

export function planChunks(size: number, chunkSize: number): ChunkRange[] {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`file size must be a whole number of bytes, got ${size}`)
  if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) throw new RangeError(`chunk size must be a positive whole number, got ${chunkSize}`)
  const ranges: ChunkRange[] = []
  for (let index = 0; index * chunkSize < size; index++) {
    ranges.push({index, start: index * chunkSize, end: Math.min((index + 1) * chunkSize, size)})
  }
  return ranges
}

export const rangeSize = (range: ChunkRange): number => range.end - range.start
