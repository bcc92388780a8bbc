import {randomBytes} from 'node:crypto'
import {mkdir, mkdtemp, readdir, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import type {ReplicaInfo} from '../../src/protocol/index.js'
import {FileChunkStore} from '../../src/storage/index.js'
import {WRITE_BATCH_BYTES} from '../../src/storage/file-chunk-store.js'
import {SLICE_BYTES} from '../../src/util/shared-slices.js'
import {bodyOf, chunkIdFor, replicaOf} from './chunk-store.contract.js'
import {messageLogger} from '../../src/util/log.js'

// What only a store on disk can get wrong: names, leftovers after a crash, and what a restart sees.

let root: string
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'chunky-fstore-'))
})
afterAll(async () => {
  await rm(root, {recursive: true, force: true})
})

async function freshDir(name: string): Promise<string> {
  const dir = join(root, name)
  await mkdir(dir, {recursive: true})
  return dir
}

/** Every file under dir, as relative paths, sorted. */
async function filesUnder(dir: string): Promise<string[]> {
  const all = await readdir(dir, {recursive: true, withFileTypes: true})
  return all
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort()
}

async function listAll(store: FileChunkStore): Promise<ReplicaInfo[]> {
  const all: ReplicaInfo[] = []
  for await (const r of store.list()) all.push(r)
  return all.sort((a, b) => a.chunkId.localeCompare(b.chunkId))
}

describe('FileChunkStore on disk', () => {
  it('names a replica <2 hex>/<chunkId>.<version>.<sha256>', async () => {
    const dir = await freshDir('layout')
    const store = await FileChunkStore.open(dir)
    const bytes = randomBytes(1234)
    const replica = replicaOf(bytes, chunkIdFor(1), 3)
    await store.write(replica, bodyOf(bytes))
    const name = join(replica.chunkId.slice(0, 2), `${replica.chunkId}.3.${replica.sha256}`)
    expect(await filesUnder(dir)).toEqual([name, `${name}.blocks`]) // the replica and its block checksums
  })

  it('leaves no file at all after a refused write (too long, too short, wrong checksum)', async () => {
    const dir = await freshDir('refused')
    const store = await FileChunkStore.open(dir)
    const bytes = randomBytes(100_000)
    const replica = replicaOf(bytes)
    await expect(store.write({...replica, size: 99_999}, bodyOf(bytes))).rejects.toMatchObject({code: 'CHUNK_TOO_LARGE'})
    await expect(store.write({...replica, size: 100_001}, bodyOf(bytes))).rejects.toMatchObject({code: 'LENGTH_MISMATCH'})
    await expect(store.write(replica, bodyOf(randomBytes(100_000)))).rejects.toMatchObject({code: 'CHECKSUM_MISMATCH'})
    expect(await filesUnder(dir)).toEqual([])
  })

  it('removes the temp file when the body fails mid-way', async () => {
    const dir = await freshDir('aborted')
    const store = await FileChunkStore.open(dir)
    const bytes = randomBytes(10_000)
    const body = Readable.from(
      (async function* () {
        yield bytes.subarray(0, 5000)
        throw new Error('client went away')
      })(),
    )
    await expect(store.write(replicaOf(bytes), body)).rejects.toThrow('client went away')
    expect(await filesUnder(dir)).toEqual([])
  })

  it('lists the same replicas after a reopen, with sizes from disk', async () => {
    const dir = await freshDir('reopen')
    const store = await FileChunkStore.open(dir)
    const written: ReplicaInfo[] = []
    for (let i = 0; i < 5; i++) {
      const bytes = randomBytes(500 + i)
      written.push(await store.write(replicaOf(bytes, chunkIdFor(i), i + 1), bodyOf(bytes)))
    }
    await store.delete(written[0]!.chunkId, written[0]!.version)
    const reopened = await FileChunkStore.open(dir)
    expect(await listAll(reopened)).toEqual(written.slice(1).sort((a, b) => a.chunkId.localeCompare(b.chunkId)))
    expect(await reopened.usage()).toMatchObject({chunkCount: 4, usedBytes: 501 + 502 + 503 + 504})
  })

  it('removes temp files and unparseable names left by a crash at open, and keeps the good ones', async () => {
    const dir = await freshDir('crash')
    const store = await FileChunkStore.open(dir)
    const bytes = randomBytes(800)
    const replica = replicaOf(bytes)
    await store.write(replica, bodyOf(bytes))
    const sub = join(dir, replica.chunkId.slice(0, 2))
    const finalName = `${replica.chunkId}.1.${replica.sha256}`
    await writeFile(join(sub, `${finalName}.abcdef.tmp`), 'half a chunk')
    await writeFile(join(sub, 'notes.txt'), 'stray')
    await writeFile(join(sub, `${chunkIdFor(9)}.1.${replica.sha256}`), 'wrong prefix directory')
    await writeFile(join(dir, 'stray-at-top'), 'x')
    const logged: string[] = []
    const reopened = await FileChunkStore.open(dir, {log: messageLogger((m) => logged.push(m))})
    expect(await filesUnder(dir)).toEqual([join(replica.chunkId.slice(0, 2), finalName), join(replica.chunkId.slice(0, 2), `${finalName}.blocks`)])
    expect(await listAll(reopened)).toEqual([replica])
    expect(logged.join('\n')).toMatch(/removed 4 leftover/)
  })

  it('streams a large chunk without holding it whole and reads it back', async () => {
    const dir = await freshDir('large')
    const store = await FileChunkStore.open(dir)
    const bytes = randomBytes(10 * 1024 * 1024)
    const replica = replicaOf(bytes)
    await store.write(replica, bodyOf(bytes, 64 * 1024))
    await expect(store.verify(replica.chunkId, 1)).resolves.toBe(true)
  })

  it('writes bodies in uneven pieces around the write batch size byte for byte, and cleans up a failure after several batches', async () => {
    const dir = await freshDir('batches')
    const store = await FileChunkStore.open(dir)
    const bytes = randomBytes(3 * WRITE_BATCH_BYTES + 12_345)
    const sizes = [1, 7_000, WRITE_BATCH_BYTES - 7_001, WRITE_BATCH_BYTES + 1, 300_000] // then the rest in 64 KiB
    async function* uneven(failAfter?: number) {
      let at = 0
      for (const size of sizes) {
        yield bytes.subarray(at, at + size)
        at += size
      }
      while (at < bytes.length) {
        if (failAfter !== undefined && at >= failAfter) throw new Error('sender went away')
        yield bytes.subarray(at, at + 65_536)
        at += 65_536
      }
    }
    const replica = replicaOf(bytes, chunkIdFor(77))
    await store.write(replica, uneven())
    const opened = await store.open(replica.chunkId, 1)
    const back: Buffer[] = []
    for await (const part of opened.stream) back.push(part as Buffer)
    expect(Buffer.concat(back).equals(bytes)).toBe(true)

    const other = replicaOf(bytes, chunkIdFor(78))
    await expect(store.write(other, uneven(2 * WRITE_BATCH_BYTES + 100_000))).rejects.toThrow('sender went away')
    expect((await filesUnder(dir)).filter((f) => f.includes(other.chunkId))).toEqual([])
  })

  it('writes copies past the page cache (cache: false) byte for byte at sizes around blocks and slices, with block checksums, refusals leaving nothing, and more writes at once than slices', async () => {
    const dir = await freshDir('uncached')
    const store = await FileChunkStore.open(dir)
    const sizes = [0, 1, 4095, 4096, 4097, 65_537, SLICE_BYTES - 1, SLICE_BYTES, SLICE_BYTES + 4096 + 5, 3 * SLICE_BYTES + 12_345]
    // 40 writes at once: more than the slices there are, so some wait for a slice back
    const written = await Promise.all(
      Array.from({length: 40}, async (_, i) => {
        const bytes = randomBytes(sizes[i % sizes.length]!)
        const replica = replicaOf(bytes, chunkIdFor(1000 + i))
        await store.write(replica, bodyOf(bytes, 65_536 - 7), {cache: false})
        return {replica, bytes}
      }),
    )
    for (const {replica, bytes} of written) {
      const opened = await store.open(replica.chunkId, 1)
      const back: Buffer[] = []
      for await (const part of opened.stream) back.push(part as Buffer)
      expect(Buffer.concat(back).equals(bytes)).toBe(true)
      await expect(store.verify(replica.chunkId, 1)).resolves.toBe(true)
      const from = Math.floor(bytes.length / 3)
      const range: Buffer[] = []
      for await (const part of store.readRange(replica.chunkId, 1, from, bytes.length)) range.push(part)
      expect(Buffer.concat(range).equals(bytes.subarray(from))).toBe(true) // checked against the block checksums written with it
    }
    const bytes = randomBytes(2 * SLICE_BYTES + 100)
    const replica = replicaOf(bytes, chunkIdFor(2000))
    await expect(store.write(replica, bodyOf(randomBytes(bytes.length)), {cache: false})).rejects.toMatchObject({code: 'CHECKSUM_MISMATCH'})
    await expect(store.write({...replica, size: bytes.length + 1}, bodyOf(bytes), {cache: false})).rejects.toMatchObject({code: 'LENGTH_MISMATCH'})
    expect((await filesUnder(dir)).filter((f) => f.includes(replica.chunkId))).toEqual([])
  })
})
