import {randomBytes} from 'node:crypto'
import {open} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, expect, it} from 'vitest'
import {chunkFilesOnDisk, killAll, runCli, sha256File, spawnCli, startCluster, tmpFilesOnDisk, waitFor, type Cluster} from './harness.js'

// Issue 2: `kill -9` one node during a larger upload; the upload still succeeds (W=2 of the two
// nodes left) and the download matches. Invariant 6: the killed node shows no partial chunk.
let cluster: Cluster
let file: string

beforeAll(async () => {
  cluster = await startCluster({nodes: 3, replicas: 3})
  file = join(cluster.dir, 'large.bin')
  const handle = await open(file, 'w')
  for (let i = 0; i < 12; i++) await handle.write(randomBytes(8 * 1024 * 1024)) // 96 MiB
  await handle.close()
})

afterAll(async () => {
  await cluster?.close()
  await killAll()
})

it('survives kill -9 of a node part way through, and the download matches', async () => {
  // 1 MiB chunks, one at a time: about a hundred chunk writes, so the kill lands mid-upload.
  const upload = spawnCli(['upload', file, '--name', 'large.bin', '--chunk-size', '1MiB', '--concurrency', '1', '--json'], cluster.env)
  const victim = 'n2'
  await waitFor('a few chunks on the victim', async () => (await chunkFilesOnDisk(cluster.nodeDirs.get(victim)!)).length >= 5, 60_000)
  await cluster.nodes.get(victim)!.kill9()
  const result = await upload.result
  expect(result.code, result.stderr).toBe(0)
  const doc = JSON.parse(result.stdout)
  expect(doc).toMatchObject({name: 'large.bin', size: 96 * 1024 * 1024, chunks: 96, uploadedChunks: 96, skippedChunks: 0})

  // every chunk is committed with at least W=2 fresh replicas on the nodes still alive
  const status = await cluster.status('large.bin')
  for (const chunk of status.files[0]!.chunks) {
    const freshAlive = chunk.replicas.filter((r) => r.state === 'fresh' && r.node !== victim)
    expect(freshAlive.length, `chunk ${chunk.index}`).toBeGreaterThanOrEqual(2)
  }
  const output = join(cluster.dir, 'large.copy')
  const down = await runCli(['download', 'large.bin', '-o', output], cluster.env)
  expect(down.code, down.stderr).toBe(0)
  expect(await sha256File(output)).toBe(await sha256File(file))

  // the killed node's leftovers are cleaned when it starts again: no partial chunk stays visible
  await cluster.startNode(victim)
  expect(await tmpFilesOnDisk(cluster.nodeDirs.get(victim)!)).toEqual([])
})
