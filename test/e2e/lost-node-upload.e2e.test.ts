import {randomBytes} from 'node:crypto'
import {open} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, expect, it} from 'vitest'
import {chunkFilesOnDisk, killAll, runCli, sha256File, spawnCli, startCluster, waitFor, type Cluster} from './harness.js'

// SPEC.md "Operating a cluster": an upload that loses a node stops sending to it for the rest of that
// upload, with one warning, not one per chunk. Four chunks in flight when the node is killed: each
// of them fails on it, and every chunk not yet sent is placed without it before it is sent.
let cluster: Cluster
let file: string

beforeAll(async () => {
  cluster = await startCluster({nodes: 4, replicas: 3})
  file = join(cluster.dir, 'lost.bin')
  const handle = await open(file, 'w')
  for (let i = 0; i < 8; i++) await handle.write(randomBytes(8 * 1024 * 1024)) // 64 MiB
  await handle.close()
})

afterAll(async () => {
  await cluster?.close()
  await killAll()
})

it('kill -9 of a node mid-upload: one warning naming it, the upload succeeds, the download matches', async () => {
  const upload = spawnCli(['upload', file, '--name', 'lost.bin', '--chunk-size', '1MiB', '--concurrency', '4', '--node', 'n1'], cluster.env)
  const victim = 'n2' // not the entry node: it fails inside the chains that n1 forwards down
  await waitFor('a few chunks on the victim', async () => (await chunkFilesOnDisk(cluster.nodeDirs.get(victim)!)).length >= 4, 60_000)
  await cluster.nodes.get(victim)!.kill9()
  const result = await upload.result
  expect(result.code, result.stderr).toBe(0)
  expect(result.stdout).toMatch(/^uploaded lost\.bin: 64\.0 MiB in 64 chunks \(64 sent, 0 already stored\)/)

  const lines = result.stderr.split('\n')
  const warnings = lines.filter((line) => line.includes('not sending to it for the rest of this upload'))
  expect(warnings, result.stderr).toHaveLength(1)
  expect(warnings[0]).toMatch(new RegExp(`^\\S*\\s*node ${victim} failed \\(`))
  // and nothing else about it: no note per chunk that was in flight to it
  expect(lines.filter((line) => line.includes(victim)), result.stderr).toHaveLength(1)

  const output = join(cluster.dir, 'lost.copy')
  const down = await runCli(['download', 'lost.bin', '-o', output], cluster.env)
  expect(down.code, down.stderr).toBe(0)
  expect(await sha256File(output)).toBe(await sha256File(file))
})
