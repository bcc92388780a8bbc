// chunky itself, as users run it: the built binary as separate processes (a master and nodes on
// 127.0.0.1 in temp folders), the client run by /usr/bin/time -v when present for its peak RSS.
import {existsSync} from 'node:fs'
import {mkdir, rm} from 'node:fs/promises'
import {join, resolve} from 'node:path'
import {MiB, peakRssMiB, round, run, sha256File, startProcess, timeRuns, waitFor} from './lib.mjs'

const ROOT = resolve(import.meta.dirname, '..')
const BIN = join(ROOT, 'bin/run.js')
export const TOKEN = 'bench-cluster-token-0123456789abcdef'
const TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined

/** Extra node flags for every chunky process (bench/profile.mjs sets --cpu-prof this way). */
let execArgs = []
export const setExecArgs = (args) => void (execArgs = args)

const env = () => {
  const e = {...process.env, NO_COLOR: '1'}
  delete e.CHUNKY_MASTER
  delete e.CHUNKY_TOKEN
  return e
}

/** A master (R, W) and `nodeCount` nodes n1.. in zones z1.., short timeouts so repair starts quickly. */
export async function startCluster(work, tag, {replicas, minReplicas, nodeCount, masterArgs = []}) {
  const dir = join(work, `cluster-${tag}`)
  await mkdir(dir, {recursive: true})
  const master = await startProcess(
    process.execPath,
    [...execArgs, BIN, 'master', '--port', '0', '--data-dir', join(dir, 'master'), '--token', TOKEN, '--replicas', String(replicas),
      '--min-replicas', String(minReplicas), '--node-timeout', '3s', '--repair-interval', '300ms', ...masterArgs],
    {ready: /^listening on /, env: env()},
  )
  const url = master.readyLine.split(' ').pop()
  const nodes = new Map()
  const cluster = {
    dir, master, url, nodes,
    async addNode(id) {
      const node = await startProcess(
        process.execPath,
        [...execArgs, BIN, 'node', '--master', url, '--token', TOKEN, '--port', '0', '--id', id, '--zone', `z${id.slice(1)}`,
          '--data-dir', join(dir, id), '--heartbeat-interval', '250ms'],
        {ready: /^listening on /, env: env()},
      )
      nodes.set(id, node)
      await waitFor(`node ${id} to join`, async () => (await cluster.status()).nodes.some((n) => n.id === id && n.state === 'alive'), 20_000)
      return node
    },
    async status(name) {
      const res = await fetch(`${url}/api/status${name ? `?name=${encodeURIComponent(name)}` : ''}`, {headers: {authorization: `Bearer ${TOKEN}`}})
      if (!res.ok) throw new Error(`status: HTTP ${res.status}`)
      return res.json()
    },
    cli: (args, {time = false, timeoutMs = 300_000} = {}) => cli(url, args, {time, timeoutMs}),
    async close() {
      await Promise.all([...nodes.values()].map((n) => n.stop()))
      await master.stop()
      await rm(dir, {recursive: true, force: true})
    },
  }
  for (let i = 1; i <= nodeCount; i++) await cluster.addNode(`n${i}`)
  return cluster
}

/** Runs a client command with --json; with `time`, under /usr/bin/time -v for the peak RSS. */
async function cli(master, args, {time, timeoutMs}) {
  const argv = [...execArgs, BIN, ...args, '--json', '--master', master, '--token', TOKEN]
  const started = performance.now()
  const {stdout, stderr} = time && TIME
    ? await run(TIME, ['-v', process.execPath, ...argv], {env: env(), timeoutMs})
    : await run(process.execPath, argv, {env: env(), timeoutMs})
  const seconds = (performance.now() - started) / 1000
  const kb = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(stderr)?.[1])
  return {json: JSON.parse(stdout), seconds, peakRssMiB: Number.isFinite(kb) ? round(kb / 1024, 1) : undefined}
}

/**
 * Upload runs of the file under fresh names (nothing is skipped), each removed afterwards. Returns
 * wall seconds (process start to exit, as the user waits), the client's own `seconds`, its peak RSS.
 */
export async function uploadRuns(cluster, file, runs, tag) {
  const inner = []
  const rss = []
  const wall = await timeRuns(
    runs,
    async (i) => {
      const {json, peakRssMiB: peak} = await cluster.cli(['upload', file, '--name', `bench/${tag}-${i}.bin`], {time: true})
      if (json.skippedChunks !== 0) throw new Error(`upload ${tag}-${i} skipped ${json.skippedChunks} chunks`)
      inner.push(json.seconds)
      if (peak !== undefined) rss.push(peak)
    },
    {cleanup: (i) => (i < runs - 1 ? cluster.cli(['rm', `bench/${tag}-${i}.bin`]) : undefined)},
  )
  const nodeRss = {}
  for (const [id, node] of cluster.nodes) nodeRss[id] = await peakRssMiB(node.pid)
  return {wall, inner, clientPeakRssMiB: rss.length ? Math.max(...rss) : undefined, nodePeakRssMiB: nodeRss, name: `bench/${tag}-${runs - 1}.bin`}
}

export async function downloadRuns(cluster, name, work, runs, expectedSha) {
  const out = join(work, 'chunky-download.bin')
  let verified = true
  const wall = await timeRuns(runs, () => cluster.cli(['download', name, '-o', out]), {
    cleanup: async (i) => {
      if (i === 0) verified = (await sha256File(out)) === expectedSha // checked once, untimed
      await rm(out, {force: true})
    },
  })
  if (!verified) throw new Error('the downloaded file differs from the uploaded one')
  return {wall, verified}
}

/** Upload of the same file under the same name again: every chunk must be skipped. */
export async function reuploadRuns(cluster, file, name, runs) {
  return timeRuns(runs, async () => {
    const {json} = await cluster.cli(['upload', file, '--name', name])
    if (json.skippedChunks !== json.chunks) throw new Error(`re-upload sent ${json.uploadedChunks} chunks; expected none`)
  })
}

/**
 * Repair: a cluster at R=2 with two nodes takes the file (each node holds all of it), a third node
 * joins, one holder is killed (SIGKILL); timed from the master's first "repair … started" line to the
 * status showing every chunk at R fresh replicas again. Also timed: from the kill.
 */
export async function repairRun(work, file, size, i) {
  // --no-rebalance: n3 joins empty just before the kill, and moves filling it would compete with the repair measured here
  const cluster = await startCluster(work, `repair-${i}`, {replicas: 2, minReplicas: 2, nodeCount: 2, masterArgs: ['--no-rebalance']})
  try {
    const name = 'bench/repair.bin'
    await cluster.cli(['upload', file, '--name', name])
    await cluster.addNode('n3')
    const killedAt = performance.now()
    await cluster.nodes.get('n1').stop('SIGKILL')
    const started = await cluster.master.waitLine(/repair \S+ started/, 30_000)
    const startedAt = performance.now()
    void started
    await waitFor(
      'repair to restore R replicas',
      async () => {
        const doc = await cluster.status()
        return doc.summary.aliveNodes === 2 && doc.summary.underReplicated === 0
      },
      300_000,
      25,
    )
    const done = performance.now()
    return {transferSeconds: (done - startedAt) / 1000, fromKillSeconds: (done - killedAt) / 1000, bytes: size}
  } finally {
    await cluster.close()
  }
}

/**
 * The drain of a node holding the whole file (R=2 on n1 and n2, then n3 joins): `chunky nodes drain n1`
 * until the master says drained. The same bytes move as in repairRun (one copy of every chunk onto n3),
 * so the two are neighbours: a drain is repair's copying with the node still there as a source.
 */
export async function drainRun(work, file, size, i) {
  const cluster = await startCluster(work, `drain-${i}`, {replicas: 2, minReplicas: 2, nodeCount: 2, masterArgs: ['--no-rebalance']})
  try {
    await cluster.cli(['upload', file, '--name', 'bench/drain.bin'])
    await cluster.addNode('n3')
    const startedAt = performance.now()
    await cluster.cli(['nodes', 'drain', 'n1', '--wait'], {timeoutMs: 600_000})
    return {seconds: (performance.now() - startedAt) / 1000, bytes: size}
  } finally {
    await cluster.close()
  }
}

export {MiB}
