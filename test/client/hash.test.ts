import {createHash, randomBytes} from 'node:crypto'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, expect, it} from 'vitest'
import {hashChunks} from '../../src/client/hash.js'
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
