#!/usr/bin/env node
// The repair loop at scale, against a real `chunky master` process: CHUNKS committed chunks (seeded
// straight into its database before it starts) held R=3 times by NODES node links that this process
// holds (it speaks the node protocol: hello, a full report, heartbeats every 2 s, and it answers the
// master's commands as a node would, storing no bytes: a `replicate` is answered with a `stored` per
// chunk and a `replicated`, a `delete` with a `deleted`). It measures, from the master's /metrics:
// - the first look at every chunk after the start, until every chunk counts as at R;
// - healthy repair rounds (the repair round histogram while nothing changes);
// - the event loop's p99 lag, scraped every 2 s throughout (prom-client resets it at each scrape);
// then cuts DIE of the links at once and waits until every chunk is back at R, counting any live
// node the master marked dead on the way (from its log). Prints one JSON line.
// Usage: node bench/scale-repair.mjs [CHUNKS=1000000] [NODES=256] [DIE=32] (CHUNKY_BENCH_LOG=FILE keeps the master's log)
import {spawn} from 'node:child_process'
import {createWriteStream} from 'node:fs'
import {createHash} from 'node:crypto'
import {mkdir, mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'
import {createInterface} from 'node:readline'
import WebSocket from 'ws'
import {openDatabase} from '../dist/src/master/db.js'
import {REPORT_BATCH_SIZE as BATCH} from '../dist/src/protocol/constants.js'

const CHUNKS = Number(process.argv[2] ?? 1_000_000)
const NODES = Number(process.argv[3] ?? 256)
const DIE = Number(process.argv[4] ?? 32)
const R = 3
const PER_FILE = 1000
const SIZE = 10 * 1024 * 1024
const HEARTBEAT_MS = 2000
const SECRET = 'scale-repair-bench-secret-0123456789'
const ROOT = resolve(import.meta.dirname, '..')
const DEADLINE_MS = Number(process.env.CHUNKY_BENCH_DEADLINE_MS ?? 1_800_000)

const chunkId = (i) => i.toString(16).padStart(24, '0')
const sha = (i) => createHash('sha256').update(`chunk-${i}`).digest('hex')
const nodeId = (n) => `sim-${String(n).padStart(4, '0')}`
/** The R nodes holding chunk i: spread so every node holds about CHUNKS × R / NODES. */
const holders = (i) => Array.from({length: R}, (_, k) => (i + k * Math.floor(NODES / R)) % NODES)
const since = (t) => Math.round(performance.now() - t)

const dir = await mkdtemp(join(tmpdir(), 'chunky-scale-'))
const dataDir = join(dir, 'm')
await mkdir(dataDir)

// 1. the committed files, straight into the master's database (setting the scene, not measured)
const seedStarted = performance.now()
{
  const db = openDatabase(dataDir)
  const committedAt = new Date().toISOString()
  db.transaction(() => {
    const file = db.prepare('INSERT INTO files (name, size, chunk_size, chunk_count, committed_at) VALUES (?, ?, ?, ?, ?)')
    const ids = db.prepare('INSERT INTO chunk_ids (name, idx, chunk_id) VALUES (?, ?, ?)')
    const chunk = db.prepare('INSERT INTO chunks (chunk_id, committed_version, max_version, size, sha256) VALUES (?, 1, 1, ?, ?)')
    for (let f = 0; f * PER_FILE < CHUNKS; f++) {
      const name = `bench/file-${String(f).padStart(6, '0')}.bin`
      const count = Math.min(PER_FILE, CHUNKS - f * PER_FILE)
      file.run(name, count * SIZE, SIZE, count, committedAt)
      for (let k = 0; k < count; k++) {
        const i = f * PER_FILE + k
        ids.run(name, k, chunkId(i))
        chunk.run(chunkId(i), SIZE, sha(i))
      }
    }
  })()
  db.close()
}
const seedMs = since(seedStarted)

const logFile = join(dir, 'master.log')
const master = spawn(
  process.execPath,
  [...(process.env.CHUNKY_BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.CHUNKY_BENCH_PROF}`] : []), join(ROOT, 'bin/run.js'), 'master', '--port', '0', '--data-dir', dataDir, '--secret', SECRET, '--replicas', String(R), '--min-replicas', '2', '--node-timeout', '10s', '--no-rebalance', '--log-level', 'info'],
  {stdio: ['ignore', 'pipe', 'pipe'], env: {...process.env, XDG_CONFIG_HOME: join(dir, 'config')}},
)
const deadNodes = new Set()
const noteDeaths = (line) => {
  const dead = /node (\S+) is dead/.exec(line)?.[1]
  if (dead) deadNodes.add(dead)
}
const keepLog = process.env.CHUNKY_BENCH_LOG ? createWriteStream(process.env.CHUNKY_BENCH_LOG) : undefined
createInterface({input: master.stderr}).on('line', (line) => {
  keepLog?.write(`${line}\n`)
  noteDeaths(line)
})
const sockets = []
const stopAll = async () => {
  for (const ws of sockets) ws.terminate()
  if (master.exitCode === null) master.kill(process.env.CHUNKY_BENCH_PROF ? 'SIGINT' : 'SIGKILL')
  if (process.env.CHUNKY_BENCH_PROF) await new Promise((r) => master.once('exit', r))
  await rm(dir, {recursive: true, force: true})
}

try {
  let nodeToken
  const url = await new Promise((resolveUrl) => {
    const lines = createInterface({input: master.stdout})
    lines.on('line', (line) => {
      keepLog?.write(`${line}\n`)
      noteDeaths(line)
      nodeToken ??= /(node-[0-9a-f]{64})/.exec(line)?.[1]
      const listening = /^listening on (\S+)$/.exec(line)?.[1]
      if (listening) resolveUrl(listening)
    })
    lines.once('close', () => resolveUrl(undefined))
  })
  if (!url || !nodeToken) throw new Error('the master did not start')

  const scrape = async () => (await fetch(`${url}/metrics`, {headers: {authorization: `Bearer ${SECRET}`}})).text()
  const gauge = (text, name) => Number(new RegExp(`^${name.replace(/[{}"=]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text)?.[1])
  const lagP99s = []
  const lagScraper = setInterval(async () => {
    try {
      lagP99s.push(gauge(await scrape(), 'nodejs_eventloop_lag_p99_seconds') * 1000)
    } catch {
      // a scrape that fails shows up as a missing sample
    }
  }, 2000)

  // 2. NODES links: hello, a full report, heartbeats; commands answered as a node would
  const held = Array.from({length: NODES}, () => [])
  for (let i = 0; i < CHUNKS; i++) for (const n of holders(i)) held[n].push(i)
  let reqId = 0
  let stored = 0
  const connect = (n) =>
    new Promise((resolveLink, rejectLink) => {
      const ws = new WebSocket(`${url.replace('http', 'ws')}/ws`, {headers: {authorization: `Bearer ${nodeToken}`}, maxPayload: 64 * 1024 * 1024})
      sockets[n] = ws
      const send = (msg) => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(msg))
      let lastHeard = Date.now()
      ws.on('error', rejectLink)
      ws.on('pong', () => (lastHeard = Date.now()))
      ws.once('open', () => send({type: 'hello', v: 1, nodeId: nodeId(n), url: `http://127.0.0.1:9/${nodeId(n)}`, zone: `z${n % 8}`, freeBytes: 1e15, usedBytes: 0, chunkCount: held[n].length}))
      ws.on('message', (data) => {
        lastHeard = Date.now()
        const msg = JSON.parse(data.toString())
        if (msg.type === 'welcome') {
          for (let b = 0; b * BATCH < held[n].length; b++) {
            const replicas = held[n].slice(b * BATCH, (b + 1) * BATCH).map((i) => ({chunkId: chunkId(i), version: 1, size: SIZE, sha256: sha(i)}))
            send({type: 'report', reportId: `r-${n}`, done: (b + 1) * BATCH >= held[n].length, replicas})
          }
          if (held[n].length === 0) send({type: 'report', reportId: `r-${n}`, done: true, replicas: []})
          setInterval(() => {
            send({type: 'heartbeat', freeBytes: 1e15, usedBytes: 0, chunkCount: held[n].length})
            if (Date.now() - lastHeard >= 5000 && ws.readyState === WebSocket.OPEN) ws.ping()
          }, HEARTBEAT_MS).unref()
          resolveLink()
        } else if (msg.type === 'replicate') {
          for (const replica of msg.replicas) send({type: 'stored', reqId: reqId++, replica})
          stored += msg.replicas.length
          send({type: 'replicated', taskId: msg.taskId, ok: msg.replicas, failed: []})
        } else if (msg.type === 'delete') {
          send({type: 'deleted', chunkId: msg.chunkId, version: msg.version})
        }
      })
    })
  const joinStarted = performance.now()
  for (let n = 0; n < NODES; n += 32) await Promise.all(Array.from({length: Math.min(32, NODES - n)}, (_, k) => connect(n + k)))
  const joinMs = since(joinStarted)

  // ms until every chunk is at R, or undefined when DEADLINE_MS pass first
  const waitHealthy = async (what) => {
    const started = performance.now()
    for (;;) {
      if (performance.now() - started > DEADLINE_MS) {
        console.error(`${what}: not every chunk at R after ${DEADLINE_MS / 1000}s`)
        return undefined
      }
      const text = await scrape()
      const under = gauge(text, 'chunky_chunks{state="under_replicated"}')
      const fresh = gauge(text, 'chunky_chunks{state="fresh"}')
      if (under === 0 && fresh === CHUNKS && gauge(text, 'chunky_repair_queue_chunks') === 0 && gauge(text, 'chunky_repair_transfers_running') === 0 && gauge(text, 'chunky_repair_looking') === 0) return since(started)
      await new Promise((r) => setTimeout(r, 1000))
    }
  }
  const rounds = (text) => ({sum: gauge(text, 'chunky_repair_round_duration_seconds_sum'), count: gauge(text, 'chunky_repair_round_duration_seconds_count')})

  // 3. the first look after the start, then healthy rounds
  const startedHealthy = await waitHealthy('after the start')
  if (startedHealthy === undefined) throw new Error('not every chunk at R after the start')
  const firstLookMs = joinMs + startedHealthy
  const lagDuringStart = Math.max(...lagP99s)
  const startSamples = lagP99s.length
  const before = rounds(await scrape())
  await new Promise((r) => setTimeout(r, 12_000)) // two repair intervals and more housekeeping turns
  const after = rounds(await scrape())
  const healthyRoundMs = after.count > before.count ? ((after.sum - before.sum) / (after.count - before.count)) * 1000 : null

  // 4. DIE links cut at once: back to R, with no live node marked dead
  const storedBefore = stored
  const killed = new Set()
  for (let n = 0; n < DIE; n++) {
    const victim = Math.floor((n * NODES) / DIE)
    killed.add(nodeId(victim))
    sockets[victim].terminate()
  }
  const healStarted = performance.now()
  await new Promise((r) => setTimeout(r, 11_000)) // past the node timeout, so the dead are known
  // A heal that misses the deadline still prints its figures (healMs null), with what is left under R.
  const healedMs = await waitHealthy('after the deaths')
  const healMs = healedMs === undefined ? null : 11_000 + healedMs
  clearInterval(lagScraper)
  const lagAfterStart = Math.max(...lagP99s.slice(startSamples))
  const liveMarkedDead = [...deadNodes].filter((id) => !killed.has(id))
  const text = await scrape()
  // the master's peak RSS (Linux): the start, with every link's report arriving at once, is where it peaks
  const peakKiB = Number(/^VmHWM:\s+(\d+) kB/m.exec(await readFile(`/proc/${master.pid}/status`, 'utf8').catch(() => ''))?.[1])
  console.log(
    JSON.stringify({
      chunks: CHUNKS,
      nodes: NODES,
      died: DIE,
      seedMs,
      joinMs,
      firstLookMs,
      healthyRoundMs: healthyRoundMs === null ? null : Math.round(healthyRoundMs * 100) / 100,
      healthyRounds: after.count - before.count,
      healMs,
      healSeconds: Math.round((performance.now() - healStarted) / 100) / 10,
      copiesRepaired: stored - storedBefore,
      underReplicatedLeft: gauge(text, 'chunky_chunks{state="under_replicated"}'),
      deadMarked: deadNodes.size,
      liveMarkedDead: liveMarkedDead.length,
      eventLoopLagP99MaxMs: Math.round(Math.max(...lagP99s) * 10) / 10,
      eventLoopLagP99DuringStartMaxMs: Math.round(lagDuringStart * 10) / 10,
      eventLoopLagP99AfterStartMaxMs: Math.round(lagAfterStart * 10) / 10,
      // slices of repair rounds (each meant to take about 20 ms) that took longer than 50 ms
      roundSlicesOver50Ms: gauge(text, 'chunky_repair_round_duration_seconds_count') - gauge(text, 'chunky_repair_round_duration_seconds_bucket{le="0.05"}'),
      lagSamples: lagP99s.length,
      masterRssMiB: Math.round(gauge(text, 'process_resident_memory_bytes') / 1024 / 1024),
      masterPeakRssMiB: Number.isFinite(peakKiB) ? Math.round(peakKiB / 1024) : null,
    }),
  )
} finally {
  await stopAll()
}
