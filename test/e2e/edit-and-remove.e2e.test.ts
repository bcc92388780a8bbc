import {randomBytes} from 'node:crypto'
import {open, truncate, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {chunkFilesOnDisk, killAll, runCli, sha256File, startCluster, waitFor, type Cluster} from './harness.js'

// Issue 4: editing a video costs only what changed. The same file again sends nothing, one changed
// chunk sends one chunk and only its version rises, a shorter file drops its tail (bytes gone from
// every disk), `ls` lists it, `rm` leaves no chunk bytes anywhere. Downloads match after each step.
const MiB = 1024 * 1024
const NAME = 'edits/clip.bin'

let cluster: Cluster
let file: string

beforeAll(async () => {
  cluster = await startCluster({nodes: 3, replicas: 3})
  file = join(cluster.dir, 'clip.bin')
  await writeFile(file, randomBytes(8 * MiB + MiB / 2)) // 9 chunks of 1 MiB, the last one half
})

afterAll(async () => {
  await cluster?.close()
  await killAll()
})

async function upload(): Promise<{chunks: number; uploadedChunks: number; skippedChunks: number}> {
  const result = await runCli(['upload', file, '--name', NAME, '--chunk-size', '1MiB', '--json'], cluster.env)
  expect(result.code, result.stderr).toBe(0)
  expect(result.stderr).toBe('') // --json: standard error only for errors
  return JSON.parse(result.stdout)
}

async function expectDownloadMatches(): Promise<void> {
  const output = join(cluster.dir, 'copy.bin')
  const result = await runCli(['download', NAME, '-o', output, '--json'], cluster.env)
  expect(result.code, result.stderr).toBe(0)
  expect(await sha256File(output)).toBe(await sha256File(file))
}

async function versions(): Promise<number[]> {
  return (await cluster.status(NAME)).files[0]!.chunks.map((chunk) => chunk.version)
}

/** Every chunk file on any node's disk whose chunk id is one of `ids`. */
async function filesOf(ids: string[]): Promise<string[]> {
  const all = await Promise.all([...cluster.nodeDirs.values()].map((dir) => chunkFilesOnDisk(dir)))
  return all.flat().filter((name) => ids.includes(name.split('.')[0]!))
}

describe('editing a file that is already in the cluster', () => {
  it('first upload sends every chunk, and the download matches', async () => {
    expect(await upload()).toMatchObject({chunks: 9, uploadedChunks: 9, skippedChunks: 0})
    expect(await versions()).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1])
    await expectDownloadMatches()
  })

  it('the same file again sends 0 chunks and keeps every version', async () => {
    expect(await upload()).toMatchObject({chunks: 9, uploadedChunks: 0, skippedChunks: 9})
    expect(await versions()).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1])
    await expectDownloadMatches()
  })

  it('one changed chunk sends 1 chunk and only its version rises; its old copies are deleted', async () => {
    const before = (await cluster.status(NAME)).files[0]!.chunks[4]!
    const handle = await open(file, 'r+')
    await handle.write(randomBytes(1000), 0, 1000, 4 * MiB + 123) // inside chunk 4 only
    await handle.close()
    expect(await upload()).toMatchObject({chunks: 9, uploadedChunks: 1, skippedChunks: 8})
    expect(await versions()).toEqual([1, 1, 1, 1, 2, 1, 1, 1, 1])
    await expectDownloadMatches()
    await waitFor('version 1 of chunk 4 deleted from every node', async () => {
      const copies = await filesOf([before.id])
      return copies.length === 3 && copies.every((name) => name.startsWith(`${before.id}.2.`))
    })
  })

  it('a shorter file drops its tail: fewer chunks in status, the dropped bytes gone from every disk', async () => {
    const dropped = (await cluster.status(NAME)).files[0]!.chunks.slice(6).map((chunk) => chunk.id)
    expect(dropped).toHaveLength(3)
    await truncate(file, 5 * MiB + MiB / 4) // chunk 5 becomes a short one, 6..8 are gone
    expect(await upload()).toMatchObject({chunks: 6, uploadedChunks: 1, skippedChunks: 5})
    const status = await cluster.status(NAME)
    expect(status.files[0]!.chunks).toHaveLength(6)
    expect(status.files[0]!.size).toBe(5 * MiB + MiB / 4)
    expect(await versions()).toEqual([1, 1, 1, 1, 2, 2])
    await expectDownloadMatches()
    await waitFor('the dropped chunks deleted from every node', async () => (await filesOf(dropped)).length === 0)
  })

  it('ls lists the file with its size, chunks, last change and lowest fresh copy count', async () => {
    const json = await runCli(['ls', '--json'], cluster.env)
    expect(json.code, json.stderr).toBe(0)
    const {files} = JSON.parse(json.stdout)
    expect(files).toHaveLength(1)
    expect(files[0]).toMatchObject({name: NAME, size: 5 * MiB + MiB / 4, chunks: 6, lowestFreshReplicas: 3})
    expect(files[0]).not.toHaveProperty('minReplicas') // W in `status --json`: not reused for another meaning
    expect(JSON.parse(json.stdout).replicas).toBe(3)
    expect(Date.now() - Date.parse(files[0].committedAt)).toBeLessThan(60_000)
    const text = await runCli(['ls'], cluster.env)
    expect(text.code, text.stderr).toBe(0)
    expect(text.stdout).toMatch(/FILE\s+SIZE\s+CHUNKS/)
    expect(text.stdout).toMatch(/edits\/clip\.bin\s+5\.25 MiB\s+6\s+3\/3\s/) // as status shows it
  })

  it('rm forgets the file and leaves no chunk bytes on any node', async () => {
    const ids = (await cluster.status(NAME)).files[0]!.chunks.map((chunk) => chunk.id)
    expect(await filesOf(ids)).toHaveLength(18)
    const result = await runCli(['rm', NAME, '--json'], cluster.env)
    expect(result.code, result.stderr).toBe(0)
    expect(JSON.parse(result.stdout)).toEqual({name: NAME, removedChunks: 6})
    await waitFor('no chunk bytes left on any node', async () => {
      const left = await Promise.all([...cluster.nodeDirs.values()].map((dir) => chunkFilesOnDisk(dir)))
      return left.flat().length === 0
    })
    const ls = await runCli(['ls', '--json'], cluster.env)
    expect(JSON.parse(ls.stdout)).toEqual({files: [], replicas: 3})
    const download = await runCli(['download', NAME, '-o', join(cluster.dir, 'gone.bin')], cluster.env)
    expect(download.code).toBe(1)
    expect(download.stderr).toMatch(/no file named "?edits\/clip\.bin/)
    const again = await runCli(['rm', NAME], cluster.env)
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/edits\/clip\.bin/)
  })
})
