import {randomBytes} from 'node:crypto'
import {writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, expect, it} from 'vitest'
import {BalanceReport} from '../../src/protocol/index.js'
import {killAll, runCli, sha256File, startCluster, waitFor, type Cluster} from './harness.js'

// Issue 16: a node added to a full cluster is filled by the rebalancer until it is within the band of
// the mean; nothing is under-replicated at any point, and killing the target mid-move loses nothing.
let cluster: Cluster

beforeAll(async () => {
  cluster = await startCluster({nodes: 4, replicas: 3})
})

afterAll(async () => {
  await cluster?.close()
  await killAll()
})

const heldBy = async (id: string) => (await cluster.status()).nodes.find((n) => n.id === id)?.chunks ?? 0

it('fills a node that joins empty until every node is within the band, never under-replicating, surviving a kill -9 of the target', async () => {
  const file = join(cluster.dir, 'library.bin')
  await writeFile(file, randomBytes(40 * 1024 * 1024 + 7))
  const up = await runCli(['upload', file, '--chunk-size', '1MiB', '--json'], cluster.env)
  expect(up.code, up.stderr).toBe(0)
  await waitFor('the four nodes balanced', async () => {
    const result = await runCli(['rebalance', '--json'], cluster.env)
    return result.code === 0 && BalanceReport.parse(JSON.parse(result.stdout)).balanced
  }, 30_000)

  // While copies move, no chunk may drop below R fresh copies on alive nodes.
  let watching = true
  let mostUnder = 0
  const watcher = (async () => {
    while (watching) {
      const status = await cluster.status().catch(() => undefined)
      if (status) mostUnder = Math.max(mostUnder, status.summary.underReplicated)
    }
  })()
  await cluster.startNode('n5')
  await waitFor('n5 to receive moved copies', async () => (await heldBy('n5')) >= 8, 60_000)
  watching = false
  await watcher
  expect(mostUnder).toBe(0)

  // The target dies mid-move: what it took is repaired like any dead node's; nothing is lost.
  await cluster.nodes.get('n5')!.kill9()
  await cluster.startNode('n5')
  const waited = await runCli(['rebalance', '--wait', '--json'], cluster.env, 120_000)
  if (waited.code !== 0) {
    const now = await runCli(['rebalance'], cluster.env)
    throw new Error(`rebalance --wait exited ${waited.code}: ${waited.stderr}\nnow: ${now.stdout}\n${(await runCli(['status'], cluster.env)).stdout}\n${cluster.master.output().split('\n').filter((l) => /move|repair|excess|delete/.test(l)).slice(-40).join('\n')}`)
  }
  const report = BalanceReport.parse(JSON.parse(waited.stdout))
  expect(report.balanced).toBe(true)
  expect(report.nodes.every((n) => !n.outOfBand)).toBe(true)
  expect(report.moved).toBeGreaterThan(0)
  await waitFor('nothing under-replicated', async () => (await cluster.status()).summary.underReplicated === 0, 30_000)

  const status = await cluster.status()
  const mean = (status.summary.chunks * 3) / 5
  const n5 = status.nodes.find((n) => n.id === 'n5')!
  expect(n5.chunks).toBeGreaterThanOrEqual(Math.floor(mean * 0.9) - 2) // its share, within the band (plus slack)
  const output = join(cluster.dir, 'library.copy')
  const down = await runCli(['download', 'library.bin', '-o', output], cluster.env)
  expect(down.code, down.stderr).toBe(0)
  expect(await sha256File(output)).toBe(await sha256File(file))
}, 240_000)
