import {randomBytes} from 'node:crypto'
import {writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, expect, it} from 'vitest'
import {killAll, runCli, sha256File, startCluster, waitFor, type Cluster} from './harness.js'

// Issue 3 / invariant 5: a node killed for good; every chunk it held gets back to R fresh replicas
// on the nodes still alive, without anyone running a command.
let cluster: Cluster

beforeAll(async () => {
  cluster = await startCluster({nodes: 4, replicas: 3})
})

afterAll(async () => {
  await cluster?.close()
  await killAll()
})

it('re-replicates every chunk of a dead node to R fresh replicas on the others', async () => {
  const file = join(cluster.dir, 'reel.bin')
  await writeFile(file, randomBytes(6 * 1024 * 1024 + 1))
  const up = await runCli(['upload', file, '--chunk-size', '1MiB', '--json'], cluster.env)
  expect(up.code, up.stderr).toBe(0)

  const before = await cluster.status('reel.bin')
  const counts = new Map<string, number>()
  for (const chunk of before.files[0]!.chunks) for (const r of chunk.replicas) counts.set(r.node, (counts.get(r.node) ?? 0) + 1)
  const victim = [...counts].sort((a, b) => b[1] - a[1])[0]![0] // the node holding the most chunks
  await cluster.nodes.get(victim)!.kill9()

  const healed = await waitFor('R fresh replicas on alive nodes for every chunk', async () => {
    const status = await cluster.status('reel.bin')
    const dead = status.nodes.find((n) => n.id === victim)?.state === 'dead'
    return dead && status.summary.underReplicated === 0 && status
  }, 45_000)
  for (const chunk of healed.files[0]!.chunks) {
    const fresh = chunk.replicas.filter((r) => r.state === 'fresh' && r.node !== victim).map((r) => r.node)
    expect(new Set(fresh).size, `chunk ${chunk.index}`).toBe(3)
  }
  const output = join(cluster.dir, 'reel.copy')
  const down = await runCli(['download', 'reel.bin', '-o', output], cluster.env)
  expect(down.code, down.stderr).toBe(0)
  expect(await sha256File(output)).toBe(await sha256File(file))
})
