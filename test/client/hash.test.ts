import {createHash, randomBytes} from 'node:crypto'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, expect, it} from 'vitest'
import {hashChunks, PARALLEL_HASH_MIN_BYTES} from '../../src/client/hash.js'
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
