import {constants} from 'node:fs'
import {type FileHandle, open} from 'node:fs/promises'
import {digestSlices, type FileDigest} from './file-digest.js'
import {writeAll} from './fs.js'
import {acquireSlice, releaseSlice, SLICE_BYTES, type SharedSlice} from './shared-slices.js'

// Writes that skip the page cache. On the bench machine the kernel's copy into fresh page-cache pages
// was the largest CPU cost of writing a received file (1 GiB written and fsynced: 1.7 CPU-s buffered,
// 0.2 with O_DIRECT), and bytes that are not in the page cache cannot be hashed back from it cheaply,
// so they are hashed from the very memory handed to the disk.

/** O_DIRECT takes memory, lengths and file positions aligned to the device's blocks: 4 KiB covers them. */
const DIRECT_ALIGN = 4096

/**
 * A file opened for writes at positions that skip the page cache where they can: the whole 4 KiB
 * blocks of a write that starts on a block boundary go through an O_DIRECT handle, the rest (a
 * short tail, a write at an odd position) through the page cache, and so does everything where the
 * file system refuses O_DIRECT (EINVAL: tmpfs, some network file systems).
 */
export class DirectFile {
  /** Opened once, at the first write that needs it (several may ask at once). */
  private buffered: Promise<FileHandle> | undefined
  private directWorks: boolean

  private constructor(
    private readonly path: string,
    private readonly direct: FileHandle | undefined,
    buffered: FileHandle | undefined,
  ) {
    this.buffered = buffered && Promise.resolve(buffered)
    this.directWorks = direct !== undefined
  }

  /** Creates `path`, which must not exist. */
  static async create(path: string, mode = 0o644): Promise<DirectFile> {
    return DirectFile.open(path, 'new', mode)
  }

  /** Opens `path`: `new` creates it (it must not exist), `empty` creates or empties it, `existing` keeps its bytes. */
  static async open(path: string, how: 'new' | 'empty' | 'existing', mode = 0o644): Promise<DirectFile> {
    const flags = {new: constants.O_CREAT | constants.O_EXCL, empty: constants.O_CREAT | constants.O_TRUNC, existing: 0}[how]
    try {
      return new DirectFile(path, await open(path, constants.O_WRONLY | flags | constants.O_DIRECT, mode), undefined)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err
      return new DirectFile(path, undefined, await open(path, how === 'existing' ? 'r+' : 'w', mode)) // the refused open may have created it
    }
  }

  /** Writes every byte of `bytes` at `at`. */
  async write(bytes: Buffer, at: number): Promise<void> {
    let whole = this.directWorks && at % DIRECT_ALIGN === 0 ? bytes.length - (bytes.length % DIRECT_ALIGN) : 0
    if (whole > 0) {
      try {
        await writeAll(this.direct!, [bytes.subarray(0, whole)], at)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err
        this.directWorks = false // opened, but the writes are refused: the page cache from here on
        whole = 0
      }
    }
    if (whole < bytes.length) await writeAll(await this.bufferedHandle(), [bytes.subarray(whole)], at + whole)
  }

  async truncate(size: number): Promise<void> {
    await (this.direct ?? (await this.bufferedHandle())).truncate(size)
  }

  /** One fsync covers the bytes written through either handle: it flushes the file, not the handle. */
  async sync(): Promise<void> {
    await (this.direct ?? (await this.bufferedHandle())).sync()
  }

  async datasync(): Promise<void> {
    await (this.direct ?? (await this.bufferedHandle())).datasync()
  }

  async close(): Promise<void> {
    await this.direct?.close()
    await (await this.buffered?.catch(() => undefined))?.close() // a failed open was thrown at the write that needed it
  }

  private bufferedHandle(): Promise<FileHandle> {
    return (this.buffered ??= open(this.path, 'r+'))
  }
}

/**
 * Writes `body` into `file` from position `base` on, and hashes it (SHA-256, and block CRCs with a
 * blockSize). The bytes are gathered into slices of the memory shared with the hashing thread
 * (shared-slices.ts); each full slice is written and hashed from that same memory at once, and taken
 * back once both are done, while the next slice fills: one slice in flight, so a slow disk holds the
 * sender back. `ended` judges the body before the last slice is waited for. Leaves the fsync to the caller.
 */
export async function writeAndDigestSlices(file: DirectFile, base: number, body: AsyncIterable<Buffer>, opts: {blockSize?: number; ended?: () => void} = {}): Promise<FileDigest> {
  const digest = digestSlices({blockSize: opts.blockSize})
  let finishing: Promise<FileDigest> | undefined
  let slice: SharedSlice | undefined
  let filled = 0
  let position = base
  let pending: Promise<unknown> = Promise.resolve()
  const flush = (full: SharedSlice, length: number, at: number) => {
    const done = Promise.all([file.write(full.bytes.subarray(0, length), at), digest.update(full, length)]).finally(() => releaseSlice(full))
    done.catch(() => {}) // awaited before the next flush or in `finally`; failing meanwhile must not be an unhandled rejection
    return done
  }
  try {
    for await (const piece of body) {
      for (let offset = 0; offset < piece.length; ) {
        slice ??= await acquireSlice()
        const take = Math.min(piece.length - offset, SLICE_BYTES - filled)
        slice.bytes.set(piece.subarray(offset, offset + take), filled)
        filled += take
        offset += take
        if (filled === SLICE_BYTES) {
          await pending // one slice in flight per body: the next one fills meanwhile
          pending = flush(slice, filled, position)
          position += filled
          slice = undefined
          filled = 0
        }
      }
    }
    opts.ended?.()
    await pending
    if (slice && filled > 0) {
      const last = slice
      slice = undefined
      await (pending = flush(last, filled, position))
    }
    finishing = digest.finish()
    return await finishing
  } finally {
    if (slice) releaseSlice(slice)
    if (!finishing) digest.cancel()
    await pending.catch(() => {}) // never leave a write behind the caller's close, nor a slice out
  }
}
