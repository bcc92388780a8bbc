import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {Readable} from 'node:stream'
import type {ReplicaInfo} from '../protocol/index.js'
import {BodyCheck, checkReplica} from './body-check.js'
import {type ChunkBody, type ChunkStore, notFound, type OpenedReplica, replicaKey, type StoreUsage} from './chunk-store.js'

/** The ChunkStore contract without a disk, for tests of code that only needs a store. */
export class MemoryChunkStore implements ChunkStore {
  private readonly replicas = new Map<string, {info: ReplicaInfo; bytes: Buffer}>()

  constructor(private readonly capacityBytes = 1024 ** 4) {}

  async write(replica: ReplicaInfo, body: ChunkBody): Promise<ReplicaInfo> {
    const wanted = checkReplica(replica)
    const check = new BodyCheck(wanted)
    const parts: Buffer[] = []
    for await (const buf of check.pass(body)) parts.push(Buffer.from(buf)) // a copy: the producer may reuse the piece
    check.finish()
    const info: ReplicaInfo = {chunkId: wanted.chunkId, version: wanted.version, size: wanted.size, sha256: wanted.sha256}
    this.replicas.set(replicaKey(info.chunkId, info.version), {info, bytes: Buffer.concat(parts)})
    return info
  }

  adopt(replica: ReplicaInfo, file: string): Promise<ReplicaInfo> {
    return this.write(replica, createReadStream(file)) // hashed again here: the digest is the disk's concern
  }

  async open(chunkId: string, version: number): Promise<OpenedReplica> {
    const held = this.replicas.get(replicaKey(chunkId, version))
    if (!held) throw notFound(chunkId, version)
    const read = async (into: Buffer, position: number) => held.bytes.copy(into, 0, Math.min(position, held.bytes.length))
    return {size: held.bytes.length, sha256: held.info.sha256, stream: Readable.from([held.bytes]), read}
  }

  has(chunkId: string, version: number): boolean {
    return this.replicas.has(replicaKey(chunkId, version))
  }

  get(chunkId: string, version: number): ReplicaInfo | undefined {
    return this.replicas.get(replicaKey(chunkId, version))?.info
  }

  async delete(chunkId: string, version: number): Promise<boolean> {
    return this.replicas.delete(replicaKey(chunkId, version))
  }

  async *list(): AsyncIterable<ReplicaInfo> {
    yield* [...this.replicas.values()].map((r) => r.info)
  }

  async verify(chunkId: string, version: number): Promise<boolean> {
    const held = this.replicas.get(replicaKey(chunkId, version))
    if (!held) throw notFound(chunkId, version)
    const sha256 = createHash('sha256').update(held.bytes).digest('hex')
    return held.bytes.length === held.info.size && sha256 === held.info.sha256
  }

  async usage(): Promise<StoreUsage> {
    let usedBytes = 0
    for (const r of this.replicas.values()) usedBytes += r.info.size
    return {usedBytes, chunkCount: this.replicas.size, freeBytes: Math.max(0, this.capacityBytes - usedBytes)}
  }

  /** Test hook: rot one byte in place, as a disk might. */
  flipByte(chunkId: string, version: number, offset = 0): void {
    const held = this.replicas.get(replicaKey(chunkId, version))
    if (!held || offset >= held.bytes.length) throw notFound(chunkId, version)
    held.bytes[offset] = held.bytes[offset]! ^ 0xff
  }
}
