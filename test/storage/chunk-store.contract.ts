import {createHash, randomBytes} from 'node:crypto'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {describe, expect, it} from 'vitest'
import type {ReplicaInfo} from '../../src/protocol/index.js'
import {BLOCK_SIZE, type ChunkStore} from '../../src/storage/index.js'
import {digestFile} from '../../src/util/file-digest.js'

export interface StoreHarness<S extends ChunkStore> {
  create(): Promise<S>
  /** Rot one byte of a stored replica, the way a disk might. */
  flipByte(store: S, chunkId: string, version: number): Promise<void>
}

export function chunkIdFor(n: number): string {
  return createHash('sha256').update(`chunk-${n}`).digest('hex').slice(0, 24)
}

export function replicaOf(bytes: Buffer, chunkId = chunkIdFor(1), version = 1): ReplicaInfo {
  return {chunkId, version, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex')}
}

/** Splits bytes into several pieces so writes see a real stream, not one buffer. */
export function bodyOf(bytes: Buffer, pieceSize = 4096): Readable {
  const pieces: Buffer[] = []
  for (let at = 0; at < bytes.length; at += pieceSize) pieces.push(bytes.subarray(at, at + pieceSize))
  return Readable.from(pieces)
}

export async function readAll(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const part of stream) parts.push(part)
  return Buffer.concat(parts)
}

async function listAll(store: ChunkStore): Promise<ReplicaInfo[]> {
  const all: ReplicaInfo[] = []
  for await (const r of store.list()) all.push(r)
  return all
}

export function describeChunkStore<S extends ChunkStore>(name: string, harness: StoreHarness<S>): void {
  describe(`${name} (ChunkStore contract)`, () => {
    it('gives back exactly the bytes written, with size and checksum', async () => {
      const store = await harness.create()
      const bytes = randomBytes(50_000)
      const replica = replicaOf(bytes)
      await expect(store.write(replica, bodyOf(bytes))).resolves.toEqual(replica)
      const opened = await store.open(replica.chunkId, 1)
      expect(opened.size).toBe(bytes.length)
      expect(opened.sha256).toBe(replica.sha256)
      expect((await readAll(opened.stream)).equals(bytes)).toBe(true)
      expect(store.has(replica.chunkId, 1)).toBe(true)
      expect(store.get(replica.chunkId, 1)).toEqual(replica)
    })

    it('adopts a file as a replica (as a tus upload hands over a chunk) and refuses a digest of other bytes', async () => {
      const store = await harness.create()
      const bytes = randomBytes(200_000)
      const dir = await mkdtemp(join(tmpdir(), 'chunky-adopt-'))
      const file = join(dir, 'chunk')
      await writeFile(file, bytes)
      const digest = await digestFile(file, {blockSize: BLOCK_SIZE})
      const replica = replicaOf(bytes)
      await expect(store.adopt(replicaOf(randomBytes(200_000)), file, digest)).rejects.toMatchObject({code: 'CHECKSUM_MISMATCH'})
      expect(store.has(replica.chunkId, 1)).toBe(false)
      await expect(store.adopt(replica, file, digest)).resolves.toEqual(replica)
      await rm(dir, {recursive: true}) // the replica does not need the file it came from
      expect((await readAll((await store.open(replica.chunkId, 1)).stream)).equals(bytes)).toBe(true)
      expect(await store.verify(replica.chunkId, 1)).toBe(true)
    })

    it('stores an empty chunk', async () => {
      const store = await harness.create()
      const replica = replicaOf(Buffer.alloc(0))
      await store.write(replica, bodyOf(Buffer.alloc(0)))
      expect((await readAll((await store.open(replica.chunkId, 1)).stream)).length).toBe(0)
    })

    it('refuses a body longer than declared and keeps nothing of it', async () => {
      const store = await harness.create()
      const bytes = randomBytes(10_000)
      const replica = {...replicaOf(bytes), size: 9_999}
      await expect(store.write(replica, bodyOf(bytes))).rejects.toMatchObject({code: 'CHUNK_TOO_LARGE'})
      await expect(store.open(replica.chunkId, 1)).rejects.toMatchObject({code: 'CHUNK_NOT_FOUND'})
      expect(await listAll(store)).toEqual([])
    })

    it('refuses a body shorter than declared', async () => {
      const store = await harness.create()
      const bytes = randomBytes(10_000)
      const replica = {...replicaOf(bytes), size: 10_001}
      await expect(store.write(replica, bodyOf(bytes))).rejects.toMatchObject({code: 'LENGTH_MISMATCH'})
      expect(store.has(replica.chunkId, 1)).toBe(false)
    })

    it('refuses another checksum and says which was expected and which arrived', async () => {
      const store = await harness.create()
      const bytes = randomBytes(10_000)
      const replica = replicaOf(bytes)
      const other = Buffer.from(bytes)
      other[5_000] = other[5_000]! ^ 1
      const err = await store.write(replica, bodyOf(other)).catch((e: unknown) => e)
      expect(err).toMatchObject({code: 'CHECKSUM_MISMATCH'})
      expect((err as Error).message).toContain(replica.sha256)
      expect((err as Error).message).toContain(replicaOf(other).sha256)
      expect(store.has(replica.chunkId, 1)).toBe(false)
    })

    it('keeps versions apart and never serves one for another', async () => {
      const store = await harness.create()
      const v1 = randomBytes(1000)
      const v2 = randomBytes(1200)
      const id = chunkIdFor(7)
      await store.write(replicaOf(v1, id, 1), bodyOf(v1))
      await store.write(replicaOf(v2, id, 2), bodyOf(v2))
      expect((await readAll((await store.open(id, 2)).stream)).equals(v2)).toBe(true)
      expect((await readAll((await store.open(id, 1)).stream)).equals(v1)).toBe(true)
      await expect(store.open(id, 3)).rejects.toMatchObject({code: 'CHUNK_NOT_FOUND'})
      expect((await listAll(store)).map((r) => r.version).sort()).toEqual([1, 2])
    })

    it('rewriting a held version with the same bytes replaces it', async () => {
      const store = await harness.create()
      const bytes = randomBytes(2000)
      const replica = replicaOf(bytes)
      await store.write(replica, bodyOf(bytes))
      await store.write(replica, bodyOf(bytes))
      expect(await listAll(store)).toEqual([replica])
      expect((await store.usage()).usedBytes).toBe(2000)
    })

    it('deletes a replica, and deleting a missing one is fine', async () => {
      const store = await harness.create()
      const bytes = randomBytes(3000)
      const replica = replicaOf(bytes)
      await store.write(replica, bodyOf(bytes))
      await expect(store.delete(replica.chunkId, 1)).resolves.toBe(true)
      await expect(store.delete(replica.chunkId, 1)).resolves.toBe(false)
      expect(store.has(replica.chunkId, 1)).toBe(false)
      expect(await store.usage()).toMatchObject({usedBytes: 0, chunkCount: 0})
    })

    it('counts used bytes and chunks, and reports free space', async () => {
      const store = await harness.create()
      for (let i = 0; i < 3; i++) {
        const bytes = randomBytes(1000 * (i + 1))
        await store.write(replicaOf(bytes, chunkIdFor(i)), bodyOf(bytes))
      }
      const usage = await store.usage()
      expect(usage).toMatchObject({usedBytes: 6000, chunkCount: 3})
      expect(usage.freeBytes).toBeGreaterThan(0)
    })

    it('verify passes sound bytes and detects a flipped byte', async () => {
      const store = await harness.create()
      const bytes = randomBytes(20_000)
      const replica = replicaOf(bytes)
      await store.write(replica, bodyOf(bytes))
      await expect(store.verify(replica.chunkId, 1)).resolves.toBe(true)
      await harness.flipByte(store, replica.chunkId, 1)
      await expect(store.verify(replica.chunkId, 1)).resolves.toBe(false)
      await expect(store.verify(replica.chunkId, 9)).rejects.toMatchObject({code: 'CHUNK_NOT_FOUND'})
    })

    it('refuses ids, versions and checksums that could name a path outside the store', async () => {
      const store = await harness.create()
      const bytes = randomBytes(10)
      const good = replicaOf(bytes)
      for (const bad of [
        {...good, chunkId: '../../../../etc/passwd'},
        {...good, chunkId: `${good.chunkId}/x`},
        {...good, version: 0},
        {...good, version: 1.5},
        {...good, sha256: '../' + good.sha256.slice(3)},
      ]) {
        await expect(store.write(bad, bodyOf(bytes))).rejects.toMatchObject({code: 'BAD_REQUEST'})
      }
      expect(await listAll(store)).toEqual([])
    })
  })
}
