import {mkdir, readdir, readFile, rm} from 'node:fs/promises'
import {join} from 'node:path'
import {TusId} from '../protocol/index.js'
import {writeFileAtomic} from '../util/fs.js'

/**
 * The tails of tus uploads this node holds: the bytes of the current, not yet complete chunk of each
 * upload (past the master's durable offset), fsynced in DATA_DIR/tus so a PATCH that ends mid-chunk
 * can answer its offset. One file per upload, `<id>.<start>.<epoch>`: the offset its first byte has
 * and the holder epoch it was written in; it counts only while both still match the master's session.
 */
export class TusTails {
  private readonly known = new Map<string, {start: number; epoch: number; length: number}>()

  private constructor(readonly dir: string) {}

  static async open(dir: string): Promise<TusTails> {
    await mkdir(dir, {recursive: true})
    const tails = new TusTails(dir)
    for (const file of await readdir(dir, {withFileTypes: true})) {
      const [id, start, epoch, extra] = file.name.split('.')
      if (!file.isFile() || extra !== undefined || !TusId.safeParse(id).success || !/^\d+$/.test(start ?? '') || !/^\d+$/.test(epoch ?? '')) {
        await rm(join(dir, file.name), {force: true}) // a temp file or a spool a crash left
        continue
      }
      const bytes = await readFile(join(dir, file.name))
      tails.known.set(id!, {start: Number(start), epoch: Number(epoch), length: bytes.length})
    }
    return tails
  }

  /** Bytes of the tail that continues exactly at `start` in `epoch`, else 0. */
  length(id: string, start: number, epoch: number): number {
    const tail = this.known.get(id)
    return tail && tail.start === start && tail.epoch === epoch ? tail.length : 0
  }

  /** The tail's bytes when it continues exactly at `start` in `epoch`, else none. */
  async read(id: string, start: number, epoch: number): Promise<Buffer> {
    if (this.length(id, start, epoch) === 0) return Buffer.alloc(0)
    const tail = this.known.get(id)!
    return readFile(join(this.dir, `${id}.${tail.start}.${tail.epoch}`))
  }

  /** Makes `parts` the tail of `id` from `start` on, durably (fsync, rename, fsync of the directory), before it resolves. */
  async save(id: string, start: number, epoch: number, parts: readonly Buffer[]): Promise<void> {
    const old = this.known.get(id)
    // Written piece by piece: a copy would hold the tail in memory twice, outside the PATCH budget.
    await writeFileAtomic(join(this.dir, `${id}.${start}.${epoch}`), parts)
    this.known.set(id, {start, epoch, length: parts.reduce((sum, part) => sum + part.length, 0)})
    if (old && (old.start !== start || old.epoch !== epoch)) await rm(join(this.dir, `${id}.${old.start}.${old.epoch}`), {force: true})
  }

  async drop(id: string): Promise<void> {
    const old = this.known.get(id)
    if (!old) return
    this.known.delete(id)
    await rm(join(this.dir, `${id}.${old.start}.${old.epoch}`), {force: true})
  }

  /** Where a checksummed PATCH body waits until its checksum is known to match. */
  spoolPath(id: string): string {
    return join(this.dir, `${id}.spool`)
  }
}
