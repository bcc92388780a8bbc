import {randomBytes} from 'node:crypto'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {downloadFile} from '../../src/client/download.js'
import {getStatus} from '../../src/client/operations.js'
import {uploadFile} from '../../src/client/upload.js'
import {silentView} from '../../src/client/view.js'
import {startMaster, type RunningMaster} from '../../src/master/index.js'
import {startNode, type RunningNode} from '../../src/node/index.js'
import {deriveCredentials} from '../../src/protocol/index.js'
import {silentLogger} from '../../src/util/log.js'
import {parsePrometheusText, type Scrape} from './prom-text.js'
import {waitFor} from '../poll.js'

// GET /metrics on the master and on nodes (issue 7): refused without a credential, readable with the
// read-only one, and the counters move as an upload, a download and a repair happen. A real master
// and three real nodes in this process (each with a registry of its own), R=2.
const TOKEN = 'metrics-' + randomBytes(6).toString('hex')
const RO = deriveCredentials(TOKEN).ro
const MiB = 1024 * 1024
let dir: string
let master: RunningMaster
const nodes = new Map<string, RunningNode>()

async function scrape(url: string, token: string | null = RO): Promise<{status: number; type: string | null; text: string}> {
  const res = await fetch(new URL('/metrics', url), {headers: token ? {authorization: `Bearer ${token}`} : {}})
  return {status: res.status, type: res.headers.get('content-type'), text: await res.text()}
}

async function metricsOf(url: string): Promise<Scrape> {
  const res = await scrape(url)
  expect(res.status, res.text).toBe(200)
  return parsePrometheusText(res.text)
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chunky-metrics-'))
  master = await startMaster({
    host: '127.0.0.1', port: 0, dataDir: join(dir, 'master'), replicas: 2, minReplicas: 2,
    nodeTimeoutMs: 1000, repairIntervalMs: 200, token: TOKEN, log: silentLogger,
  })
  for (const id of ['n1', 'n2', 'n3']) {
    nodes.set(id, await startNode({
      masterUrl: master.url, host: '127.0.0.1', port: 0, id, zone: `zone-${id}`, dataDir: join(dir, id),
      heartbeatIntervalMs: 200, scrubIntervalMs: 0, token: TOKEN, log: silentLogger,
    }))
  }
  await waitFor('three nodes alive', async () => (await getStatus({master: master.url, token: TOKEN})).summary.aliveNodes === 3)
})

afterAll(async () => {
  for (const node of nodes.values()) await node.close()
  await master?.close()
  await rm(dir, {recursive: true, force: true})
})

describe('GET /metrics', () => {
  it('is refused without a credential or with a wrong one, on the master and on a node', async () => {
    for (const url of [master.url, nodes.get('n1')!.url]) {
      expect((await scrape(url, null)).status).toBe(401)
      expect((await scrape(url, 'ro-not-this-clusters')).status).toBe(401)
    }
  })

  it('answers the read-only credential in the Prometheus text format, with help for every chunky metric', async () => {
    for (const url of [master.url, ...[...nodes.values()].map((n) => n.url)]) {
      const res = await scrape(url)
      expect(res.status).toBe(200)
      expect(res.type).toMatch(/^text\/plain; version=0\.0\.4/)
      const parsed = parsePrometheusText(res.text)
      const names = new Set(parsed.samples.map((s) => s.name.replace(/_(bucket|sum|count)$/, '')).filter((n) => n.startsWith('chunky_')))
      expect(names.size).toBeGreaterThan(5)
      for (const name of names) expect(parsed.help.get(name), `help of ${name}`).toBeTruthy()
      expect(parsed.value('process_cpu_user_seconds_total')).toBeGreaterThan(0) // prom-client's process metrics
    }
    const m = await metricsOf(master.url)
    expect(m.value('chunky_nodes', {state: 'alive'})).toBe(3)
    expect(m.value('chunky_nodes', {state: 'dead'})).toBe(0)
    expect(m.samples.filter((s) => s.name === 'chunky_node_heartbeat_age_seconds').map((s) => s.labels.node).sort()).toEqual(['n1', 'n2', 'n3'])
    expect(m.value('chunky_node_links_accepted_total')).toBeGreaterThanOrEqual(3)
    expect((await metricsOf(nodes.get('n1')!.url)).value('chunky_master_connected')).toBe(1)
  })

  it('counts request errors by status and code', async () => {
    const before = (await metricsOf(master.url)).value('chunky_request_errors_total', {status: '401', code: 'UNAUTHORIZED'})
    await scrape(master.url, null)
    const after = (await metricsOf(master.url)).value('chunky_request_errors_total', {status: '401', code: 'UNAUTHORIZED'})
    expect(after).toBe(before + 1)
  })

  it('moves versions handed out, upload bytes and durations after an upload, and download bytes on the nodes after a download', async () => {
    const before = await metricsOf(master.url)
    const bytes = randomBytes(3 * MiB + 17) // 4 chunks of 1 MiB, the last short
    const file = join(dir, 'clip.bin')
    await writeFile(file, bytes)
    await uploadFile({path: file, name: 'clip.bin', chunkSize: MiB, master: master.url, token: TOKEN}, silentView)

    const after = await metricsOf(master.url)
    expect(after.value('chunky_versions_handed_out_total') - before.value('chunky_versions_handed_out_total')).toBe(4)
    expect(after.value('chunky_upload_bytes_total') - before.value('chunky_upload_bytes_total')).toBe(bytes.length)
    expect(after.value('chunky_uploads_committed_total') - before.value('chunky_uploads_committed_total')).toBe(1)
    expect(after.value('chunky_upload_duration_seconds_count') - before.value('chunky_upload_duration_seconds_count')).toBe(1)
    expect(after.value('chunky_files')).toBe(1)
    expect(after.value('chunky_chunks', {state: 'fresh'})).toBe(4)
    expect(after.value('chunky_chunks', {state: 'under_replicated'})).toBe(0)

    const stored = await Promise.all([...nodes.values()].map(async (n) => (await metricsOf(n.url)).value('chunky_stored_bytes_total')))
    expect(stored.reduce((a, b) => a + b, 0)).toBe(2 * bytes.length) // R=2: every byte on two nodes

    const served = async () => (await Promise.all([...nodes.values()].map(async (n) => (await metricsOf(n.url)).value('chunky_download_bytes_total')))).reduce((a, b) => a + b, 0)
    const servedBefore = await served()
    await downloadFile({name: 'clip.bin', output: join(dir, 'clip.copy'), master: master.url, token: TOKEN}, silentView)
    expect((await served()) - servedBefore).toBe(bytes.length)
  })

  it('moves the repair counters and bytes repaired after a node holding replicas is stopped', async () => {
    const status = await getStatus({master: master.url, token: TOKEN}, 'clip.bin')
    const held = (id: string) => status.files[0]!.chunks.filter((c) => c.replicas.some((r) => r.node === id))
    const victim = [...nodes.keys()].sort((a, b) => held(b).length - held(a).length)[0]!
    const lost = held(victim)
    expect(lost.length).toBeGreaterThan(0)
    const before = await metricsOf(master.url)

    await nodes.get(victim)!.close()
    nodes.delete(victim)
    const after = await waitFor('the repair to finish', async () => {
      const m = await metricsOf(master.url)
      return m.value('chunky_repaired_chunks_total') - before.value('chunky_repaired_chunks_total') >= lost.length && m.value('chunky_chunks', {state: 'under_replicated'}) === 0 && m
    })
    expect(after.value('chunky_nodes', {state: 'dead'})).toBe(1)
    expect(after.value('chunky_repaired_bytes_total') - before.value('chunky_repaired_bytes_total')).toBe(lost.reduce((sum, c) => sum + c.size, 0))
    expect(after.value('chunky_repair_transfers_total', {event: 'started'}) - before.value('chunky_repair_transfers_total', {event: 'started'})).toBeGreaterThan(0)
    expect(after.value('chunky_repair_transfers_total', {event: 'finished'})).toBe(after.value('chunky_repair_transfers_total', {event: 'started'}))
    expect(after.value('chunky_repair_transfers_running')).toBe(0)
    expect(after.value('chunky_node_heartbeat_age_seconds', {node: victim})).toBeGreaterThanOrEqual(1)
    const served = await Promise.all([...nodes.values()].map(async (n) => (await metricsOf(n.url)).value('chunky_transfer_bytes_served_total')))
    expect(served.reduce((a, b) => a + b, 0)).toBe(lost.reduce((sum, c) => sum + c.size, 0))
  })

  it('shows scrub progress on a node after a pass', async () => {
    const [id, node] = [...nodes][0]!
    const result = await node.scrubNow()
    const m = await metricsOf(node.url)
    expect(m.value('chunky_scrub_passes_total'), id).toBe(1)
    expect(m.value('chunky_scrub_chunks_total')).toBe(result.checked)
    expect(m.value('chunky_scrub_bytes_total')).toBe(m.value('chunky_node_used_bytes'))
    expect(m.value('chunky_scrub_last_pass_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 - 60)
  })
})
