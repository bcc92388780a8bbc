import {randomBytes} from 'node:crypto'
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, expect, it} from 'vitest'
import {chunkFilesOnDisk, killAll, runCli, sha256File, startCluster, waitFor, type Cluster} from './harness.js'

// Issue 3 / invariant 4: a node that was down while a chunk changed comes back; its stale copy is
// reported, deleted from its disk, and it receives the new version.
const MiB = 1024 * 1024
let cluster: Cluster

beforeAll(async () => {
  cluster = await startCluster({nodes: 3, replicas: 3})
})

afterAll(async () => {
  await cluster?.close()
  await killAll()
})

it('finds, deletes and replaces the stale copy of a node that was down while a chunk changed', async () => {
  const file = join(cluster.dir, 'clip.bin')
  const original = randomBytes(3 * MiB + 12345) // 4 chunks of 1 MiB, the last short
  await writeFile(file, original)
  const first = await runCli(['upload', file, '--name', 'clip.bin', '--chunk-size', '1MiB', '--json'], cluster.env)
  expect(first.code, first.stderr).toBe(0)
  const before = (await cluster.status('clip.bin')).files[0]!
  const changedChunk = before.chunks[1]!
  expect(changedChunk.version).toBe(1)

  await cluster.nodes.get('n3')!.stop()
  const changed = Buffer.from(original)
  changed.fill(7, MiB + 100, MiB + 200) // change bytes inside chunk 1 only
  await writeFile(file, changed)
  const second = await runCli(['upload', file, '--name', 'clip.bin', '--chunk-size', '1MiB', '--json'], cluster.env)
  expect(second.code, second.stderr).toBe(0)
  expect(JSON.parse(second.stdout)).toMatchObject({chunks: 4, uploadedChunks: 1, skippedChunks: 3})

  const after = (await cluster.status('clip.bin')).files[0]!
  expect(after.chunks.map((c) => c.version)).toEqual([1, 2, 1, 1]) // only the changed chunk's version rises
  expect(after.chunks.map((c) => c.id)).toEqual(before.chunks.map((c) => c.id))
  const staleName = `${changedChunk.id}.1.${changedChunk.sha256}`
  const n3Dir = cluster.nodeDirs.get('n3')!
  expect(await chunkFilesOnDisk(n3Dir)).toContain(staleName) // n3 was down: it still holds version 1

  await cluster.startNode('n3')
  const fresh = `${changedChunk.id}.2.${after.chunks[1]!.sha256}`
  await waitFor('n3 to hold version 2 and not version 1', async () => {
    const files = await chunkFilesOnDisk(n3Dir)
    return files.includes(fresh) && !files.includes(staleName)
  })
  const healed = await waitFor('the cluster to report itself healed', async () => {
    const status = await cluster.status('clip.bin')
    const ok = status.summary.stale === 0 && status.summary.underReplicated === 0 && status.summary.aliveNodes === 3
    return ok && status
  })
  const chunk1 = healed.files[0]!.chunks[1]!
  expect(chunk1.replicas.map((r) => `${r.node}:v${r.version}:${r.state}`).sort()).toEqual(['n1:v2:fresh', 'n2:v2:fresh', 'n3:v2:fresh'])
  expect(cluster.master.output()).toMatch(/stale/i)

  const output = join(cluster.dir, 'clip.copy')
  const down = await runCli(['download', 'clip.bin', '-o', output], cluster.env)
  expect(down.code, down.stderr).toBe(0)
  expect((await readFile(output)).equals(changed)).toBe(true)
  expect(await sha256File(output)).toBe(await sha256File(file))
})
