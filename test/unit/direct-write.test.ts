import {createHash, randomBytes} from 'node:crypto'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, expect, test} from 'vitest'
import {DirectFile, writeAndDigestSlices} from '../../src/util/direct-write.js'

// Pieces of one file written at their own offsets past the page cache (a download's chunks).

let root: string
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'chunky-direct-'))
})
afterAll(async () => {
  await rm(root, {recursive: true, force: true})
})

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex')
const MiB = 1024 * 1024

async function* inPieces(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size)
}

test('parts at aligned and odd offsets, written at once, land byte for byte and each hashes to its own bytes', async () => {
  // Lengths around 4 KiB blocks and 1 MiB slices; the third starts off a block boundary, the fourth on one again.
  const lengths = [2 * MiB, MiB + 4096 + 17, 3 * MiB - 5, 4096 * 3, 1]
  const parts = lengths.map((length) => randomBytes(length))
  const bases: number[] = []
  let size = 0
  for (const part of parts) {
    bases.push(size)
    size += part.length
  }
  const path = join(root, 'joined')
  const file = await DirectFile.create(path)
  try {
    await file.truncate(size)
    // More writers than fit in the slices two at a time, each fed in pieces that straddle slices.
    const digests = await Promise.all([...parts, ...parts].map((part, i) => writeAndDigestSlices(file, bases[i % parts.length]!, inPieces(part, 700_001))))
    digests.forEach((digest, i) => expect(digest.sha256).toBe(sha256(parts[i % parts.length]!)))
    await file.sync()
  } finally {
    await file.close()
  }
  expect(sha256(await readFile(path))).toBe(sha256(Buffer.concat(parts)))
})

test('a body that fails midway gives its slices back: later writes still find slices to use', async () => {
  const file = await DirectFile.create(join(root, 'failing'))
  try {
    async function* failing(): AsyncGenerator<Buffer> {
      yield randomBytes(3 * MiB)
      throw new Error('the sender went away')
    }
    for (let i = 0; i < 20; i++) await expect(writeAndDigestSlices(file, 0, failing())).rejects.toThrow('the sender went away')
    const data = randomBytes(5 * MiB)
    expect((await writeAndDigestSlices(file, 0, inPieces(data, MiB))).sha256).toBe(sha256(data))
  } finally {
    await file.close()
  }
})

test('open: `empty` empties a file that exists, `existing` keeps its bytes and writes past them; `new` refuses one that exists', async () => {
  const path = join(root, 'reopened')
  const first = randomBytes(MiB + 123)
  const file = await DirectFile.open(path, 'empty')
  try {
    await writeAndDigestSlices(file, 0, inPieces(first, 300_000))
    await file.sync()
  } finally {
    await file.close()
  }
  const again = await DirectFile.open(path, 'existing')
  const rest = randomBytes(2 * MiB)
  try {
    await again.write(rest, first.length) // an odd position: through the page cache
    await again.sync()
  } finally {
    await again.close()
  }
  expect(sha256(await readFile(path))).toBe(sha256(Buffer.concat([first, rest])))
  await expect(DirectFile.open(path, 'new')).rejects.toMatchObject({code: 'EEXIST'})
  const emptied = await DirectFile.open(path, 'empty')
  await emptied.close()
  expect((await readFile(path)).length).toBe(0)
})
