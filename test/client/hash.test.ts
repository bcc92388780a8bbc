import {createHash, randomBytes} from 'node:crypto'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, expect, it} from 'vitest'
import {hashChunks, PARALLEL_HASH_MIN_BYTES, rangeHasher} from '../../src/client/hash.js'
import {planChunks} from '../../src/client/plan.js'

const dirs: string[] = []
afterAll(async () => Promise.all(dirs.map((dir) => rm(dir, {recursive: true, force: true}))))

it('hashes each range of the file like hashing its bytes directly, reporting progress up to the size', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'chunky-hash-'))
  dirs.push(dir)
  const bytes = randomBytes(3 * 65_536 + 123)
  const path = join(dir, 'f')
  await writeFile(path, bytes)
  const ranges = planChunks(bytes.length, 65_536)
  const seen: number[] = []
  const digests = await hashChunks(path, ranges, (done) => seen.push(done))
  expect(digests).toEqual(ranges.map((r) => createHash('sha256').update(bytes.subarray(r.start, r.end)).digest('hex')))
  expect(seen.at(-1)).toBe(bytes.length)
  expect(seen).toEqual([...seen].sort((a, b) => a - b))
})

it('hashes a large file on worker threads with the same digests, and notices a file shorter than planned', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'chunky-hash-'))
  dirs.push(dir)
  const bytes = Buffer.alloc(PARALLEL_HASH_MIN_BYTES + 5 * 1024 * 1024 + 77)
  for (let i = 0; i < bytes.length; i += 4096) bytes[i] = (i / 4096) & 0xff // every chunk different
  const path = join(dir, 'big')
  await writeFile(path, bytes)
  const ranges = planChunks(bytes.length, 10 * 1024 * 1024)
  const seen: number[] = []
  const digests = await hashChunks(path, ranges, (done) => seen.push(done))
  expect(digests).toEqual(ranges.map((r) => createHash('sha256').update(bytes.subarray(r.start, r.end)).digest('hex')))
  expect(seen.at(-1)).toBe(bytes.length)
  expect(seen).toEqual([...seen].sort((a, b) => a - b))

  const longer = planChunks(bytes.length + 10 * 1024 * 1024, 10 * 1024 * 1024) // as if the file shrank after planning
  await expect(hashChunks(path, longer)).rejects.toThrow(/changed while it was being read/)
}, 30_000)

it.each([0, 2])('a range hasher with %i worker threads hashes what is in the file now, and rejects a range past its end', async (workers) => {
  const dir = await mkdtemp(join(tmpdir(), 'chunky-hash-'))
  dirs.push(dir)
  const bytes = randomBytes(3 * 1024 * 1024 + 5)
  const path = join(dir, 'f')
  await writeFile(path, bytes)
  const hasher = rangeHasher(path, workers)
  try {
    const sha = (start: number, end: number) => createHash('sha256').update(bytes.subarray(start, end)).digest('hex')
    const ranges: [number, number][] = [[0, 1024 * 1024], [1024 * 1024, 3 * 1024 * 1024 + 5], [17, 18], [5, 2 * 1024 * 1024 + 3]]
    expect(await Promise.all(ranges.map(([start, end]) => hasher.hash(start, end)))).toEqual(ranges.map(([start, end]) => sha(start, end)))
    // bytes written after the hasher started are what it sees (download verifies what landed on disk)
    const changed = Buffer.from(bytes)
    changed[10] ^= 0xff
    await writeFile(path, changed)
    expect(await hasher.hash(0, 100)).toBe(createHash('sha256').update(changed.subarray(0, 100)).digest('hex'))
    await expect(hasher.hash(0, bytes.length + 1)).rejects.toThrow(/shorter|changed/)
  } finally {
    await hasher.close()
  }
})
