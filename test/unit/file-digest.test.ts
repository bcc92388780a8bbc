import {createHash, randomBytes} from 'node:crypto'
import {appendFile, mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {crc32} from 'node:zlib'
import {afterAll, beforeAll, expect, test} from 'vitest'
import {digestAsWritten, digestFile, digestSlices} from '../../src/util/file-digest.js'
import {acquireSlice, releaseSlice} from '../../src/util/shared-slices.js'

// The read-back digest of a file as it is written (node writes, download verification).

let root: string
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'chunky-digest-'))
})
afterAll(async () => {
  await rm(root, {recursive: true, force: true})
})

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex')

test('a file hashed piece by piece as it is written gives the SHA-256 and block CRC-32s of the whole', async () => {
  const path = join(root, 'growing')
  const data = randomBytes(3 * 1024 * 1024 + 12_345)
  await writeFile(path, '')
  const digest = digestAsWritten(path, {blockSize: 64 * 1024})
  // Pieces that straddle blocks and the worker's 1 MiB reads.
  for (let at = 0; at < data.length; ) {
    const next = Math.min(data.length, at + 700_001)
    await appendFile(path, data.subarray(at, next))
    digest.written(next)
    at = next
  }
  const got = await digest.finish()
  expect(got.size).toBe(data.length)
  expect(got.sha256).toBe(sha256(data))
  const blocks = Math.ceil(data.length / (64 * 1024))
  expect([...got.blockSums]).toEqual(Array.from({length: blocks}, (_, i) => crc32(data.subarray(i * 64 * 1024, (i + 1) * 64 * 1024))))
})

test('a range of a file: from start up to the end given, not to the end of the file', async () => {
  const path = join(root, 'ranged')
  const data = randomBytes(2 * 1024 * 1024)
  await writeFile(path, data)
  const digest = digestAsWritten(path, {start: 1000})
  digest.written(500_000)
  const got = await digest.finish(1_500_000)
  expect(got).toMatchObject({size: 1_499_000, sha256: sha256(data.subarray(1000, 1_500_000))})
  expect(got.blockSums.length).toBe(0)
})

test('a missing file is an error with its code; a cancelled digest answers nothing and frees its thread', async () => {
  await expect(digestFile(join(root, 'missing'))).rejects.toMatchObject({code: 'ENOENT'})
  const path = join(root, 'cancelled')
  await writeFile(path, randomBytes(1024))
  const cancelled = digestAsWritten(path)
  cancelled.written(1024)
  cancelled.cancel()
  await expect(digestFile(path)).resolves.toMatchObject({size: 1024})
})

test('slices after bytes read back from a file: the digest covers both, and not what the file holds past them', async () => {
  const path = join(root, 'continued')
  const earlier = randomBytes(1024 * 1024 + 777)
  const later = [randomBytes(1024 * 1024), randomBytes(5000)]
  await writeFile(path, Buffer.concat([earlier, later[0]!, randomBytes(9999)])) // the file also holds bytes the digest was not handed
  const digest = digestSlices({blockSize: 64 * 1024, after: {path, bytes: earlier.length}})
  for (const piece of later) {
    const slice = await acquireSlice()
    piece.copy(slice.bytes)
    await digest.update(slice, piece.length)
    releaseSlice(slice)
  }
  const whole = Buffer.concat([earlier, ...later])
  const got = await digest.finish()
  expect(got).toMatchObject({size: whole.length, sha256: sha256(whole)})
  const blocks = Math.ceil(whole.length / (64 * 1024))
  expect([...got.blockSums]).toEqual(Array.from({length: blocks}, (_, i) => crc32(whole.subarray(i * 64 * 1024, (i + 1) * 64 * 1024))))
})
