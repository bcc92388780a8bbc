import {randomBytes} from 'node:crypto'
import {writeFile} from 'node:fs/promises'
import {createServer} from 'node:net'
import {join} from 'node:path'
import {afterAll, beforeAll, expect, it} from 'vitest'
import {StatusDoc} from '../../src/protocol/index.js'
import {killAll, runCli, startCluster, waitFor, type Cluster} from './harness.js'

// `chunky status --check` (SPEC.md "Operating a cluster"): 0 healthy, 3 when a node is dead or a
// chunk is under-replicated, stale or corrupt, with one line on stderr; 1 when it cannot ask.
let cluster: Cluster

beforeAll(async () => {
  cluster = await startCluster({nodes: 3, replicas: 3})
})

afterAll(async () => {
  await cluster?.close()
  await killAll()
})

it('exits 0 on a healthy cluster, 3 once a node is dead, and 1 when the master cannot be asked', async () => {
  const file = join(cluster.dir, 'check.bin')
  await writeFile(file, randomBytes(3 * 1024 * 1024))
  const up = await runCli(['upload', file, '--chunk-size', '1MiB', '--json'], cluster.env)
  expect(up.code, up.stderr).toBe(0)
  // R=3 on 3 nodes: the third copy may still be on its way (W=2 is enough to commit)
  await waitFor('every chunk at R', async () => (await cluster.status()).summary.underReplicated === 0)

  const healthy = await runCli(['status', '--check'], cluster.env)
  expect(healthy.code, healthy.stderr).toBe(0)
  expect(healthy.stderr).toBe('')
  expect(healthy.stdout).toBe('healthy: 3/3 nodes alive, 1 file, 3 chunks, every chunk has its fresh copies\n')

  await cluster.nodes.get('n3')!.kill9()
  await waitFor('n3 dead', async () => (await cluster.status()).nodes.find((n) => n.id === 'n3')?.state === 'dead', 15_000)

  const sick = await runCli(['status', '--check'], cluster.env)
  expect(sick.code).toBe(3)
  expect(sick.stdout).toBe('')
  // R=3 with two nodes alive: nothing to repair onto, so every chunk stays under-replicated
  expect(sick.stderr).toBe('chunky: unhealthy: 1 node dead (n3), 3 chunks under-replicated (2/3 nodes alive, 1 file, 3 chunks)\n')

  const sickJson = await runCli(['status', '--check', '--json'], cluster.env)
  expect(sickJson.code).toBe(3)
  expect(StatusDoc.parse(JSON.parse(sickJson.stdout)).summary.underReplicated).toBe(3) // one document, the report
  expect(sickJson.stderr.trim().split('\n')).toHaveLength(1)

  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const closed = `http://127.0.0.1:${(server.address() as {port: number}).port}`
  await new Promise((resolve) => server.close(resolve))
  const cannot = await runCli(['status', '--check', '--master', closed], cluster.env)
  expect(cannot.code).toBe(1)
  expect(cannot.stderr).toMatch(/^chunky: cannot reach the master at /)
  const wrongToken = await runCli(['status', '--check'], {...cluster.env, CHUNKY_TOKEN: 'not-the-token'})
  expect(wrongToken.code).toBe(1)
})
