import {randomBytes} from 'node:crypto'
import {mkdtemp, readdir, rm, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BLOCK_SIZE, BlockHasher, decodeSidecar, encodeSidecar} from '../../src/storage/block-checksums.js'
import {CorruptBlockError, FileChunkStore, READ_BLOCKS, SIDECAR_SUFFIX} from '../../src/storage/index.js'
import {flipByte} from '../chaos/flip-byte.js'
import {bodyOf, chunkIdFor, replicaOf} from './chunk-store.contract.js'

// Per-block checksums (issue 12): computed on write, kept beside the chunk, checked by every ranged
// read for exactly the blocks it touches.

let root: string
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'chunky-blocks-'))
})
afterAll(async () => {
  await rm(root, {recursive: true, force: true})
})

async function collect(pieces: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const piece of pieces) parts.push(Buffer.from(piece))
  return Buffer.concat(parts)
}

async function storeWith(dirName: string, bytes: Buffer, n = 1) {
  const store = await FileChunkStore.open(join(root, dirName))
  const replica = replicaOf(bytes, chunkIdFor(n))
  await store.write(replica, bodyOf(bytes, 10_000)) // pieces that straddle block boundaries
  const path = join(store.dir, replica.chunkId.slice(0, 2), `${replica.chunkId}.1.${replica.sha256}`)
  return {store, replica, path}
}


describe('block checksums', () => {
  it('a sidecar round-trips, and a torn or foreign one is refused', () => {
    const hasher = new BlockHasher()
    const bytes = randomBytes(3 * BLOCK_SIZE + 17)
    hasher.update(bytes.subarray(0, 1000))
    hasher.update(bytes.subarray(1000))
    const sums = hasher.finish()
    expect(sums.length).toBe(4)
    const encoded = encodeSidecar(sums)
    expect(decodeSidecar(encoded, bytes.length)).toEqual(sums)
    expect(decodeSidecar(encoded, bytes.length + BLOCK_SIZE)).toBeUndefined() // for another size
    expect(decodeSidecar(encoded.subarray(0, encoded.length - 2), bytes.length)).toBeUndefined() // torn
    const flipped = Buffer.from(encoded)
    flipped[20] = flipped[20]! ^ 1
    expect(decodeSidecar(flipped, bytes.length)).toBeUndefined()
  })

  it('every write keeps a sidecar, and any range reads back byte for byte', async () => {
    const bytes = randomBytes(10 * BLOCK_SIZE + 12345)
    const {store, replica, path} = await storeWith('ranges', bytes)
    expect((await stat(path + SIDECAR_SUFFIX)).size).toBe(16 + 4 * 11)
    const cases: [number, number][] = [[0, bytes.length], [0, 1], [BLOCK_SIZE - 1, BLOCK_SIZE + 1], [bytes.length - 1, bytes.length], [5, 5], [3 * BLOCK_SIZE, 7 * BLOCK_SIZE + 3]]
    for (let i = 0; i < 20; i++) {
      const a = Math.floor(Math.random() * bytes.length)
      cases.push([a, a + Math.floor(Math.random() * (bytes.length - a))])
    }
    for (const [a, b] of cases) {
      expect((await collect(store.readRange(replica.chunkId, 1, a, b))).equals(bytes.subarray(a, b)), `${a}-${b}`).toBe(true)
    }
  })

  it('a flipped byte fails exactly the ranges over its block', async () => {
    const bytes = randomBytes(6 * BLOCK_SIZE)
    const {store, replica, path} = await storeWith('rot', bytes, 2)
    await flipByte(path, 4 * BLOCK_SIZE + 100)
    await expect(collect(store.readRange(replica.chunkId, 1, 4 * BLOCK_SIZE + 200, 4 * BLOCK_SIZE + 300))).rejects.toBeInstanceOf(CorruptBlockError)
    await expect(collect(store.readRange(replica.chunkId, 1, 0, bytes.length))).rejects.toMatchObject({code: 'CHECKSUM_MISMATCH', block: 4})
    // the blocks before it are sound and still served
    expect((await collect(store.readRange(replica.chunkId, 1, 0, 4 * BLOCK_SIZE))).equals(bytes.subarray(0, 4 * BLOCK_SIZE))).toBe(true)
  })

  it('a replica without a sidecar (written before them) is verified whole, then gets one', async () => {
    const bytes = randomBytes(3 * BLOCK_SIZE + 5)
    const {store, replica, path} = await storeWith('legacy', bytes, 3)
    await rm(path + SIDECAR_SUFFIX)
    let read = 0
    const piece = await collect(store.readRange(replica.chunkId, 1, 10, 20, {onDiskRead: (n) => (read += n)}))
    expect(piece.equals(bytes.subarray(10, 20))).toBe(true)
    expect(read).toBeGreaterThanOrEqual(bytes.length) // the whole chunk, once
    expect((await stat(path + SIDECAR_SUFFIX)).size).toBe(16 + 4 * 4)
    read = 0
    await collect(store.readRange(replica.chunkId, 1, 10, 20, {onDiskRead: (n) => (read += n)}))
    expect(read).toBe(BLOCK_SIZE) // now only the block it touches
    await flipByte(path, 2)
    await rm(path + SIDECAR_SUFFIX)
    const restarted = await FileChunkStore.open(store.dir) // the running store still knows the checksums it read
    await expect(collect(restarted.readRange(replica.chunkId, 1, BLOCK_SIZE, BLOCK_SIZE + 10))).rejects.toBeInstanceOf(CorruptBlockError)
  })

  it('a reader that stops pulling makes the disk read at most the one read already issued ahead', async () => {
    const bytes = randomBytes(40 * BLOCK_SIZE)
    const {store, replica} = await storeWith('abort', bytes, 4)
    let read = 0
    const stop = new AbortController()
    const pieces = store.readRange(replica.chunkId, 1, 0, bytes.length, {signal: stop.signal, onDiskRead: (n) => (read += n)})
    await pieces.next()
    stop.abort()
    const rest = await pieces.next()
    expect(rest.done).toBe(true)
    expect(read).toBeLessThanOrEqual(3 * READ_BLOCKS * BLOCK_SIZE) // the first read and the next, twice its size
  })

  it('a restart keeps sidecars of replicas, drops orphans, and delete removes both', async () => {
    const bytes = randomBytes(2 * BLOCK_SIZE)
    const {store, replica, path} = await storeWith('restart', bytes, 5)
    const orphan = join(store.dir, replica.chunkId.slice(0, 2), `${replica.chunkId}.9.${replica.sha256}${SIDECAR_SUFFIX}`)
    await writeFile(orphan, 'left by a crash between the two renames')
    const again = await FileChunkStore.open(store.dir)
    const names = await readdir(join(store.dir, replica.chunkId.slice(0, 2)))
    expect(names.sort()).toEqual([`${replica.chunkId}.1.${replica.sha256}`, `${replica.chunkId}.1.${replica.sha256}${SIDECAR_SUFFIX}`])
    expect((await collect(again.readRange(replica.chunkId, 1, 1, 2))).equals(bytes.subarray(1, 2))).toBe(true)
    await again.delete(replica.chunkId, 1)
    await expect(stat(path + SIDECAR_SUFFIX)).rejects.toMatchObject({code: 'ENOENT'})
  })
})
