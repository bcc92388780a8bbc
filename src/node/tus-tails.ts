import {mkdir, readdir, rm, stat} from 'node:fs/promises'
import {join} from 'node:path'
import {TusId} from '../protocol/index.js'
import {fsyncDir} from '../util/fs.js'

/** The bytes of one chunk of a tus upload, from `start` on, in the file `<id>.<start>.<epoch>`. */
export interface TailSegment {
  start: number
  /** Bytes fsynced so far. */
  length: number
}

/**
 * The bytes of tus uploads this node holds past the master's durable offset, fsynced in DATA_DIR/tus
 * as they arrive so a PATCH can answer its offset: one file per chunk, `<id>.<start>.<epoch>`, named
 * by the offset its first byte has and the holder epoch it was written in. Those of one upload are
 * consecutive chunks (the last may be filling) and count only while the epoch is the master's; each
 * goes once the master's offset is past it. A whole one becomes the chunk's replica here by a hard
 * link (FileChunkStore.adopt), so its bytes are written once.
 */
export class TusTails {
  private readonly known = new Map<string, {epoch: number; segments: TailSegment[]}>()

  private constructor(readonly dir: string) {}

  static async open(dir: string): Promise<TusTails> {
    await mkdir(dir, {recursive: true})
    const tails = new TusTails(dir)
    const found = new Map<string, {start: number; epoch: number; file: string}[]>()
    for (const file of await readdir(dir, {withFileTypes: true})) {
      const [id, start, epoch, extra] = file.name.split('.')
      if (!file.isFile() || extra !== undefined || !TusId.safeParse(id).success || !/^\d+$/.test(start ?? '') || !/^\d+$/.test(epoch ?? '')) {
        await rm(join(dir, file.name), {force: true}) // a temp file or a spool a crash left
        continue
      }
      found.set(id!, [...(found.get(id!) ?? []), {start: Number(start), epoch: Number(epoch), file: file.name}])
    }
    for (const [id, files] of found) {
      const epoch = Math.max(...files.map((f) => f.epoch))
      const segments: TailSegment[] = []
      for (const f of files.filter((f) => f.epoch === epoch).sort((a, b) => a.start - b.start)) {
        const last = segments.at(-1)
        if (last && last.start + last.length !== f.start) break // after a gap nothing counts
        segments.push({start: f.start, length: (await stat(join(dir, f.file))).size})
      }
      tails.known.set(id, {epoch, segments})
      for (const f of files) if (!segments.some((s) => s.start === f.start && f.epoch === epoch)) await rm(join(dir, f.file), {force: true})
    }
    return tails
  }

  /** Where the durable bytes of `id` in `epoch` end, when this node holds any; else undefined. */
  end(id: string, epoch: number): number | undefined {
    const tail = this.known.get(id)
    if (tail?.epoch !== epoch || tail.segments.length === 0) return undefined
    let end = tail.segments[0]!.start
    for (const s of tail.segments) {
      if (s.start !== end) break // a later chunk was fsynced before this one's end: it does not count yet
      end += s.length
    }
    return end
  }

  /**
   * The segments of `id` in `epoch` that reach past `offset` (the master's, as last heard), in order;
   * every other file of it (another epoch, or below the offset) is removed. They may start above the
   * offset: a segment goes only once the master's offset is past it, so the master holds what is below.
   */
  async resume(id: string, offset: number, epoch: number): Promise<TailSegment[]> {
    const tail = this.known.get(id)
    const kept = tail?.epoch === epoch ? tail.segments.filter((s) => s.start + s.length > offset) : []
    if (tail) {
      for (const s of tail.segments) if (!kept.includes(s)) await rm(this.pathOf(id, s.start, tail.epoch), {force: true})
    }
    this.known.set(id, {epoch, segments: kept})
    return kept.map((s) => ({...s}))
  }

  pathOf(id: string, start: number, epoch: number): string {
    return join(this.dir, `${id}.${start}.${epoch}`)
  }

  /**
   * Bytes [start, start + length) of `id` are fsynced in their file (a new one's name too: see
   * nameDurable), after resume() for the epoch.
   */
  durable(id: string, start: number, epoch: number, length: number): void {
    const tail = this.known.get(id)
    if (!tail || tail.epoch !== epoch) throw new Error(`tus upload ${id}: no tail resumed in epoch ${epoch}`)
    const segment = tail.segments.find((s) => s.start === start)
    if (segment) segment.length = length
    else tail.segments = [...tail.segments, {start, length}].sort((a, b) => a.start - b.start) // fsyncs may finish out of order
  }

  /** The name of a new segment's file survives a crash (the directory is fsynced). */
  nameDurable(): Promise<void> {
    return fsyncDir(this.dir)
  }

  /** Removes the segments that end at or below `offset`: the master's offset is past them. */
  async dropBelow(id: string, epoch: number, offset: number): Promise<void> {
    const tail = this.known.get(id)
    if (!tail || tail.epoch !== epoch) return
    const gone = tail.segments.filter((s) => s.start + s.length <= offset)
    tail.segments = tail.segments.filter((s) => !gone.includes(s))
    for (const s of gone) await rm(this.pathOf(id, s.start, epoch), {force: true})
  }

  async drop(id: string): Promise<void> {
    const tail = this.known.get(id)
    if (!tail) return
    this.known.delete(id)
    for (const s of tail.segments) await rm(this.pathOf(id, s.start, tail.epoch), {force: true})
  }

  /** Where a checksummed PATCH body waits until its checksum is known to match. */
  spoolPath(id: string): string {
    return join(this.dir, `${id}.spool`)
  }
}
