import {randomBytes} from 'node:crypto'
import {open} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {chunkFilesOnDisk, killAll, runCli, sha256File, spawnCli, startCluster, tmpFilesOnDisk, waitFor, type Cluster} from './harness.js'

// Issue 4: an interrupted upload, run again with the same command, sends only what is not stored
// yet. Interrupted two ways: `kill -9` of the client, and Ctrl-C (SIGINT), which must stop within a
// couple of seconds, say how to resume and exit 130.
const MiB = 1024 * 1024

let cluster: Cluster

beforeAll(async () => {
  cluster = await startCluster({nodes: 3, replicas: 3})
})

afterAll(async () => {
  await cluster?.close()
  await killAll()
})

async function randomFile(name: string, mib: number): Promise<string> {
  const path = join(cluster.dir, name)
  const handle = await open(path, 'w')
  for (let i = 0; i < mib; i += 8) await handle.write(randomBytes(Math.min(8, mib - i) * MiB))
  await handle.close()
  return path
}

/** Chunk files on n1's disk (with R=3 every chunk lands on every node). */
const storedOnN1 = async () => (await chunkFilesOnDisk(cluster.nodeDirs.get('n1')!)).length

async function expectDownloadMatches(name: string, original: string): Promise<void> {
  const output = join(cluster.dir, `${name}.copy`)
  const result = await runCli(['download', name, '-o', output], cluster.env)
  expect(result.code, result.stderr).toBe(0)
  expect(await sha256File(output)).toBe(await sha256File(original))
}

async function noPartialChunks(): Promise<void> {
  await waitFor('no partial chunk files on any node', async () => {
    const tmp = await Promise.all([...cluster.nodeDirs.values()].map((dir) => tmpFilesOnDisk(dir)))
    return tmp.flat().length === 0
  })
}

describe('resuming an interrupted upload', () => {
  it('after kill -9 of the client, the same command skips what is stored and the download matches', async () => {
    // 96 chunks, so that the kill after the first 8 lands well before the last one, even on a loaded machine
    const file = await randomFile('killed.bin', 96)
    const args = ['upload', file, '--name', 'killed.bin', '--chunk-size', '1MiB', '--concurrency', '1', '--json']
    const before = await storedOnN1()
    const first = spawnCli(args, cluster.env)
    await waitFor('some chunks stored', async () => (await storedOnN1()) - before >= 8, 30_000)
    first.child.kill('SIGKILL')
    const killed = await first.result
    expect(killed.code).toBeNull() // killed, not finished
    expect((await cluster.status()).files.map((f) => f.name)).not.toContain('killed.bin') // nothing committed
    await noPartialChunks()

    const rerun = await runCli(args, cluster.env)
    expect(rerun.code, rerun.stderr).toBe(0)
    const doc = JSON.parse(rerun.stdout)
    expect(doc.chunks).toBe(96)
    expect(doc.skippedChunks).toBeGreaterThanOrEqual(8)
    expect(doc.uploadedChunks).toBeLessThan(96)
    expect(doc.uploadedChunks + doc.skippedChunks).toBe(96)
    await expectDownloadMatches('killed.bin', file)
  })

  it('Ctrl-C stops within two seconds, says how to resume, exits 130; the same command then resumes', async () => {
    const file = await randomFile('ctrl-c.bin', 32)
    const args = ['upload', file, '--name', 'ctrl-c.bin', '--chunk-size', '1MiB', '--concurrency', '1']
    const before = await storedOnN1()
    const first = spawnCli(args, cluster.env)
    await waitFor('some chunks stored', async () => (await storedOnN1()) - before >= 8, 30_000)
    const interruptedAt = Date.now()
    first.child.kill('SIGINT')
    const stopped = await first.result
    expect(Date.now() - interruptedAt).toBeLessThan(2_000)
    expect(stopped.code).toBe(130)
    expect(stopped.stdout).toBe('')
    const lines = stopped.stderr.trim().split('\n')
    // the command as it was run: the tests run bin/run.js by its path from the checkout
    expect(lines.at(-1)).toMatch(/^chunky: interrupted: .*to resume, run the same command again: \.\/bin\/run\.js upload /)
    expect(lines.at(-1)).toContain(`./bin/run.js ${args.join(' ')}`)
    expect((await cluster.status()).files.map((f) => f.name)).not.toContain('ctrl-c.bin')
    await noPartialChunks()

    const rerun = await runCli([...args, '--json'], cluster.env)
    expect(rerun.code, rerun.stderr).toBe(0)
    const doc = JSON.parse(rerun.stdout)
    expect(doc.skippedChunks).toBeGreaterThanOrEqual(8)
    expect(doc.uploadedChunks).toBeLessThan(32)
    expect(doc.uploadedChunks + doc.skippedChunks).toBe(32)
    await expectDownloadMatches('ctrl-c.bin', file)
  })
})
