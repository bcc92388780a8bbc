import {randomBytes} from 'node:crypto'
import {writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {chunkFilesOnDisk, flipByte, killAll, runCli, sha256File, startCluster, waitFor, type Cluster} from './harness.js'

// Issue 3 / invariants 3 and 5: a byte flipped in a stored chunk file is found (by a reader, and by
// the scrubber), never served as current, and replaced from a fresh replica.
const MiB = 1024 * 1024

async function uploadRandom(cluster: Cluster, name: string): Promise<string> {
  const file = join(cluster.dir, name)
  await writeFile(file, randomBytes(2 * MiB + 777))
  const up = await runCli(['upload', file, '--chunk-size', '1MiB', '--json'], cluster.env)
  expect(up.code, up.stderr).toBe(0)
  return file
}

async function chunkPath(cluster: Cluster, node: string, chunk: {id: string; version: number; sha256: string}): Promise<string> {
  const name = `${chunk.id}.${chunk.version}.${chunk.sha256}`
  expect(await chunkFilesOnDisk(cluster.nodeDirs.get(node)!)).toContain(name)
  return join(cluster.nodeDirs.get(node)!, 'chunks', chunk.id.slice(0, 2), name)
}

async function waitUntilHealed(cluster: Cluster, name: string, path: string, original: string): Promise<void> {
  await waitFor('the corrupt replica to be replaced by good bytes', async () => {
    const status = await cluster.status(name)
    const {corrupt, underReplicated, stale} = status.summary
    if (corrupt !== 0 || underReplicated !== 0 || stale !== 0) return false
    try {
      return (await sha256File(path)) === original // rewritten in place under the same name
    } catch {
      return false
    }
  }, 30_000)
}

describe('found by a reader', () => {
  let cluster: Cluster
  beforeAll(async () => {
    cluster = await startCluster({nodes: 3, replicas: 3}) // scrubbing left at its 24h default
  })
  afterAll(async () => {
    await cluster?.close()
    await killAll()
  })

  it('a download skips the rotten replica, still matches, and the replica it met is replaced', async () => {
    const file = await uploadRandom(cluster, 'rot-read.bin')
    const chunks = (await cluster.status('rot-read.bin')).files[0]!.chunks
    expect(chunks).toHaveLength(3)
    // Rot chunk i on node n(i+1). A reader tries the same nearest node first for every chunk, so
    // whichever node that is, it meets exactly one rotten copy; the other two copies of it are good.
    const rotten = await Promise.all(chunks.map((chunk, i) => chunkPath(cluster, `n${i + 1}`, chunk)))
    for (const path of rotten) await flipByte(path, 4096)

    const output = join(cluster.dir, 'rot-read.copy')
    const down = await runCli(['download', 'rot-read.bin', '-o', output], cluster.env)
    expect(down.code, down.stderr).toBe(0)
    expect(await sha256File(output)).toBe(await sha256File(file))
    await waitFor('the master to hear of the rotten copy', () => /corrupt/i.test(cluster.master.output()), 20_000)
    await waitFor('the rotten copy the reader met to be rewritten with good bytes', async () => {
      const healed = await Promise.all(rotten.map(async (path, i) => (await sha256File(path).catch(() => '')) === chunks[i]!.sha256))
      return healed.some(Boolean)
    }, 30_000)
    const status = await cluster.status('rot-read.bin')
    expect(status.summary).toMatchObject({corrupt: 0, underReplicated: 0})
  })
})

describe('found by scrubbing', () => {
  let cluster: Cluster
  beforeAll(async () => {
    cluster = await startCluster({nodes: 3, replicas: 3, scrubInterval: '1s'})
  })
  afterAll(async () => {
    await cluster?.close()
    await killAll()
  })

  it('the scrubber reports the flipped byte, and the replica is replaced without any reader', async () => {
    await uploadRandom(cluster, 'rot-scrub.bin')
    const chunk = (await cluster.status('rot-scrub.bin')).files[0]!.chunks[1]!
    const path = await chunkPath(cluster, 'n3', chunk)
    await flipByte(path, 10)
    await waitFor('the master to hear of the corrupt replica', () => /corrupt/i.test(cluster.master.output()), 20_000)
    await waitUntilHealed(cluster, 'rot-scrub.bin', path, chunk.sha256)
  })
})
