import {randomBytes} from 'node:crypto'
import {writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {performance} from 'node:perf_hooks'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {killAll, runCli, sha256File, startCluster, startDelayProxy, waitFor, type Cluster, type DelayProxy} from './harness.js'

// Issue 4: the client enters the cluster at the node with the lowest measured round trip. n1 and n2
// sit behind a TCP proxy that adds 40 ms each way and advertise it with --public-url; n3 does not.
const MiB = 1024 * 1024

let cluster: Cluster
const proxies: DelayProxy[] = []
let file: string

beforeAll(async () => {
  cluster = await startCluster({nodes: 0, replicas: 3})
  for (const id of ['n1', 'n2']) {
    const proxy = await startDelayProxy(40)
    proxies.push(proxy)
    const node = await cluster.startNode(id, `z${id.slice(1)}`, ['--public-url', proxy.url])
    proxy.setTarget(Number(new URL(node.url).port))
  }
  await cluster.startNode('n3')
  await waitFor('three nodes alive', async () => (await cluster.status()).summary.aliveNodes === 3)
  file = join(cluster.dir, 'near.bin')
  await writeFile(file, randomBytes(3 * MiB + 1234))
})

afterAll(async () => {
  await cluster?.close()
  for (const proxy of proxies) await proxy.close()
  await killAll()
})

async function upload(name: string, extra: string[] = []): Promise<{entryNode: string}> {
  const result = await runCli(['upload', file, '--name', name, '--chunk-size', '1MiB', '--json', ...extra], cluster.env)
  expect(result.code, result.stderr).toBe(0)
  return JSON.parse(result.stdout)
}

async function expectDownloadMatches(name: string): Promise<void> {
  const output = join(cluster.dir, 'near.copy')
  const result = await runCli(['download', name, '-o', output], cluster.env)
  expect(result.code, result.stderr).toBe(0)
  expect(await sha256File(output)).toBe(await sha256File(file))
}

describe('nearest node by measured round trip', () => {
  it('the nodes behind the proxy advertise its address', async () => {
    const nodes = (await cluster.status()).nodes
    expect(nodes.find((n) => n.id === 'n1')?.url).toBe(proxies[0]!.url)
    expect(nodes.find((n) => n.id === 'n2')?.url).toBe(proxies[1]!.url)
    const started = performance.now()
    expect((await fetch(`${proxies[0]!.url}/healthz`)).status).toBe(200)
    expect(performance.now() - started).toBeGreaterThanOrEqual(80) // 40 ms each way, really
  })

  it('enters at the undelayed node', async () => {
    expect((await upload('near/a.bin')).entryNode).toBe('n3')
    await expectDownloadMatches('near/a.bin')
  })

  it('--zone only breaks near-ties: a zone 80 ms away does not beat the measurement', async () => {
    expect((await upload('near/b.bin', ['--zone', 'z1'])).entryNode).toBe('n3')
  })

  it('--node overrides the measurement (through the proxy), and the chunks still reach every node', async () => {
    expect((await upload('near/c.bin', ['--node', 'n2'])).entryNode).toBe('n2')
    await expectDownloadMatches('near/c.bin')
    const status = await cluster.status('near/c.bin')
    for (const chunk of status.files[0]!.chunks) expect(chunk.replicas.filter((r) => r.state === 'fresh')).toHaveLength(3)
  })
})
