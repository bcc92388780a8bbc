// Playing from the cluster (issue 12), measured as users run it: a whole-file GET of FILE through
// /v1/files on a node that holds every chunk and on one that holds none (it fetches from peers),
// each against nginx serving the same bytes from a file on the same disk (`curl -o /dev/null`
// both), and the time to first byte of `Range: bytes=N-` at random offsets (seek latency).
//
//   node bench/play.mjs [--size-mib 1024] [--runs 3] [--seeks 50]
//
// Needs `npm run build` first and nginx for the comparison (`npm run bench:setup`).
import {createHash, randomBytes} from 'node:crypto'
import {createWriteStream, existsSync, readFileSync} from 'node:fs'
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import {request} from 'node:http'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {performance} from 'node:perf_hooks'
import {once} from 'node:events'
import {setExecArgs, startCluster} from './chunky.mjs'
import {freePort, median, MiB, round, run, startProcess, stopAll, timeRuns, waitFor, which} from './lib.mjs'

const args = process.argv.slice(2)
const option = (name, fallback) => {
  const at = args.indexOf(`--${name}`)
  return at >= 0 ? Number(args[at + 1]) : fallback
}
const SIZE = option('size-mib', 1024) * MiB
const RUNS = option('runs', 3)
const SEEKS = option('seeks', 50)
const TOKEN = 'bench-cluster-token-0123456789abcdef'
// CHUNKY_BENCH_PROFILE=DIR: every chunky process writes a CPU profile there (node --cpu-prof)
if (process.env.CHUNKY_BENCH_PROFILE) setExecArgs(['--cpu-prof', '--cpu-prof-dir', process.env.CHUNKY_BENCH_PROFILE])

async function makeFile(path, size) {
  const out = createWriteStream(path)
  for (let left = size; left > 0; left -= 4 * MiB) {
    if (!out.write(randomBytes(Math.min(4 * MiB, left)))) await once(out, 'drain')
  }
  out.end()
  await once(out, 'finish')
}

async function curlGet(url, headers = []) {
  await run('curl', ['-sS', '--fail', '-o', '/dev/null', ...headers.flatMap((h) => ['-H', h]), url])
}

/** Milliseconds to the first body byte of `Range: bytes=N-`, then the request is dropped. */
function ttfb(url, offset, token) {
  return new Promise((resolve, reject) => {
    const started = performance.now()
    const req = request(url, {headers: {range: `bytes=${offset}-`, ...(token ? {authorization: `Bearer ${token}`} : {})}}, (res) => {
      if (res.statusCode !== 206) reject(new Error(`HTTP ${res.statusCode}`))
      res.once('data', () => {
        resolve(performance.now() - started)
        req.destroy()
      })
    })
    req.on('error', (err) => (err.code === 'ECONNRESET' ? undefined : reject(err)))
    req.end()
  })
}

function cpuSeconds(pid) {
  if (!existsSync(`/proc/${pid}/stat`)) return NaN
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100 // utime, stime in clock ticks (100 a second on Linux)
}

async function nginxServing(work, file) {
  const nginx = (await which('nginx')) ?? ((await which('/usr/sbin/nginx')) ? '/usr/sbin/nginx' : undefined)
  if (!nginx) return undefined
  const dir = join(work, 'nginx')
  await mkdir(join(dir, 'www'), {recursive: true})
  await run('ln', ['-s', file, join(dir, 'www', 'file.bin')])
  const port = await freePort()
  await writeFile(join(dir, 'nginx.conf'), `${process.getuid?.() === 0 ? 'user root;\n' : ''}daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events {}
http {
  access_log off;
  sendfile on;
  server { listen 127.0.0.1:${port}; root ${dir}/www; }
}
`)
  const server = await startProcess(nginx, ['-p', dir, '-c', join(dir, 'nginx.conf')])
  const url = `http://127.0.0.1:${port}/file.bin`
  await waitFor('nginx to listen', async () => (await fetch(url, {method: 'HEAD'}).catch(() => undefined))?.ok, 10_000)
  return {url, stop: () => server.stop()}
}

const work = await mkdtemp(join(tmpdir(), 'chunky-bench-play-'))
const results = {sizeMiB: SIZE / MiB, runs: RUNS, seeks: SEEKS}
try {
  const file = join(work, 'file.bin')
  await makeFile(file, SIZE)
  // Two nodes at R=2 hold every chunk; a third, joined after the upload, holds none.
  const cluster = await startCluster(work, 'play', {replicas: 2, minReplicas: 2, nodeCount: 2, masterArgs: ['--no-rebalance']}) // n3 must stay empty
  await cluster.cli(['upload', file, '--name', 'bench/play.bin'], {timeoutMs: 600_000})
  await cluster.addNode('n3')
  const status = await cluster.status()
  const urlOf = (id) => status.nodes.find((n) => n.id === id).url
  const auth = [`Authorization: Bearer ${TOKEN}`]
  const holding = `${urlOf('n1')}/v1/files/bench/play.bin`
  const empty = `${urlOf('n3')}/v1/files/bench/play.bin`
  const sha = createHash('sha256')
  await new Promise((resolve, reject) => {
    request(holding, {headers: {authorization: `Bearer ${TOKEN}`}}, (res) => res.on('data', (d) => sha.update(d)).on('end', resolve).on('error', reject)).on('error', reject).end()
  })
  const nginx = await nginxServing(work, file)
  results.samples = {}
  if (nginx) results.nginx = median((results.samples.nginx = await timeRuns(RUNS, () => curlGet(nginx.url))))
  else results.skipped = 'nginx is not installed (npm run bench:setup installs it)'
  // CPU seconds per GiB of each node while it serves (all threads, from /proc): where the time goes
  const pids = Object.fromEntries(['n1', 'n2', 'n3'].map((id) => [id, cluster.nodes.get(id).pid]))
  const cpuPerGiB = async (fn) => {
    const before = Object.fromEntries(Object.entries(pids).map(([id, pid]) => [id, cpuSeconds(pid)]))
    const samples = await fn()
    const gib = (SIZE * RUNS) / (1024 * MiB)
    return [samples, Object.fromEntries(Object.entries(pids).map(([id, pid]) => [id, round((cpuSeconds(pid) - before[id]) / gib, 2)]))]
  }
  results.cpuSecondsPerGiB = {}
  ;[results.samples.holding, results.cpuSecondsPerGiB.holding] = await cpuPerGiB(() => timeRuns(RUNS, () => curlGet(holding, auth)))
  results.nodeHolding = median(results.samples.holding)
  ;[results.samples.empty, results.cpuSecondsPerGiB.empty] = await cpuPerGiB(() => timeRuns(RUNS, () => curlGet(empty, auth)))
  results.nodeEmpty = median(results.samples.empty)
  const seeks = []
  for (let i = 0; i < SEEKS; i++) seeks.push(await ttfb(holding, Math.floor(Math.random() * (SIZE - 1)), TOKEN))
  results.seekTtfbMs = round(median(seeks), 2)
  results.seekTtfbMaxMs = round(Math.max(...seeks), 2)
  const seeksEmpty = []
  for (let i = 0; i < SEEKS; i++) seeksEmpty.push(await ttfb(empty, Math.floor(Math.random() * (SIZE - 1)), TOKEN))
  results.seekTtfbPeerMs = round(median(seeksEmpty), 2)
  if (results.nginx) {
    results.holdingVsNginx = round(results.nginx / results.nodeHolding, 2)
    results.emptyVsNginx = round(results.nginx / results.nodeEmpty, 2)
  }
  results.mibPerSecond = {nginx: results.nginx && round(SIZE / MiB / results.nginx, 0), holding: round(SIZE / MiB / results.nodeHolding, 0), empty: round(SIZE / MiB / results.nodeEmpty, 0)}
  await nginx?.stop()
  await cluster.close()
  console.log(JSON.stringify(results, null, 2))
} finally {
  await stopAll()
  await rm(work, {recursive: true, force: true})
}
