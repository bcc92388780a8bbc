import {createHash} from 'node:crypto'
import {ChunkyError, ReplicaInfo} from '../protocol/index.js'
import type {ChunkBody} from './chunk-store.js'

/** Validates a replica description at the store's edge: ids and hashes are safe as file names only once checked. */
export function checkReplica(replica: ReplicaInfo): ReplicaInfo {
  const parsed = ReplicaInfo.safeParse(replica)
  if (!parsed.success) throw new ChunkyError('BAD_REQUEST', `invalid replica: ${parsed.error.issues[0]?.message ?? 'malformed'}`)
  return parsed.data
}

/**
 * Counts and hashes a body in one pass as it streams through `pass()`, refusing a byte more than the
 * declared size at once; `finish()` then refuses a short body or another SHA-256. With `hash: false`
 * it only counts, and `finish(digest)` judges a digest taken elsewhere (util/file-digest.ts).
 */
export class BodyCheck {
  private readonly hash
  private seen = 0

  constructor(
    private readonly expected: {size: number; sha256: string},
    {hash = true}: {hash?: boolean} = {},
  ) {
    this.hash = hash ? createHash('sha256') : undefined
  }

  async *pass(body: ChunkBody): AsyncGenerator<Buffer> {
    for await (const piece of body) {
      const buf = Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength)
      this.seen += buf.length
      if (this.seen > this.expected.size) {
        throw new ChunkyError('CHUNK_TOO_LARGE', `body is longer than the declared ${this.expected.size} bytes`)
      }
      this.hash?.update(buf)
      yield buf
    }
  }

  /** Refuses a body shorter than declared (a longer one was refused as it streamed). */
  finishLength(): void {
    if (this.seen !== this.expected.size) {
      throw new ChunkyError('LENGTH_MISMATCH', `expected ${this.expected.size} bytes, got ${this.seen}`)
    }
  }

  finish(digest?: {size: number; sha256: string}): void {
    this.finishLength()
    if (digest && digest.size !== this.seen) {
      throw new ChunkyError('LENGTH_MISMATCH', `expected ${this.expected.size} bytes, the file holds ${digest.size}`)
    }
    const got = digest?.sha256 ?? this.hash?.digest('hex')
    if (got !== this.expected.sha256) {
      throw new ChunkyError('CHECKSUM_MISMATCH', `SHA-256 mismatch: expected ${this.expected.sha256}, got ${got}`)
    }
  }
}
