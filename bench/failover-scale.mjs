// Failover of a master on PostgreSQL at scale: CHUNKS committed chunks (1,000-chunk files) put straight
// into PostgreSQL, then a leader and a standby started on it as separate processes. Once the standby
// says its working copy is loaded (or at once with --cold: the standby is killed-over while it still
// loads), the leader is killed with SIGKILL, and this measures the time from the kill to the standby
// answering GET /healthz as leader, and to it answering `status NAME` (GET /api/status?name=) of one
// file. Prints one JSON line.
// Usage: node failover-scale.mjs DIR postgres://… [CHUNKS] [--cold] [--no-warm-line]
// CHUNKY_BIN: the chunky binary to run (default this checkout's bin/run.js), to compare another build;
// --no-warm-line for a build whose standby does not load while standing by.
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import pg from 'pg'
import {PostgresMetaStore} from '../dist/src/master/postgres-meta-store.js'
import {silentLogger} from '../dist/src/util/log.js'
import {startProcess, stopAll, waitFor} from './lib.mjs'

const [dir, url] = process.argv.slice(2, 4)
const CHUNKS = Number(process.argv[4] && !process.argv[4].startsWith('--') ? process.argv[4] : 1_000_000)
const cold = process.argv.includes('--cold')
const warmLine = !process.argv.includes('--no-warm-line')
const BIN = process.env.CHUNKY_BIN ?? join(import.meta.dirname, '..', 'bin', 'run.js')
const TOKEN = 'bench-failover-secret-0123456789'
const PER_FILE = 1000
const SIZE = 10 * 1024 * 1024
const FILES = Math.ceil(CHUNKS / PER_FILE)
const NAME = `bench/file-${String(Math.floor(FILES / 2)).padStart(6, '0')}.bin`
const since = (start) => Math.round(performance.now() - start)

// 1. the scene, written by PostgreSQL itself (not the measure)
let t = performance.now()
const store = new PostgresMetaStore(url, {leaseMs: 10_000, log: silentLogger})
await store.init()
await store.close()
const admin = new pg.Client({connectionString: url})
await admin.connect()
const fileName = (f) => `'bench/file-' || lpad((${f})::text, 6, '0') || '.bin'`
await admin.query(`INSERT INTO chunky_files (name, size, chunk_size, chunk_count, committed_at)
  SELECT ${fileName('f')}, ${PER_FILE * SIZE}, ${SIZE}, ${PER_FILE}, '2026-12-01T00:00:00.000Z' FROM generate_series(0, ${FILES - 1}) f`)
await admin.query(`INSERT INTO chunky_chunk_ids (name, idx, chunk_id)
  SELECT ${fileName('i / ' + PER_FILE)}, i % ${PER_FILE}, lpad(to_hex(i), 24, '0') FROM generate_series(0, ${CHUNKS - 1}) i`)
await admin.query(`INSERT INTO chunky_chunks (chunk_id, committed_version, max_version, size, sha256)
  SELECT lpad(to_hex(i), 24, '0'), 1, 1, ${SIZE}, md5(i::text) || md5(i::text) FROM generate_series(0, ${CHUNKS - 1}) i`)
await admin.query('VACUUM ANALYZE')
await admin.end()
const seedMs = since(t)

const master = (name) =>
  startProcess(process.execPath, [BIN, 'master', '--port', '0', '--data-dir', join(dir, name), '--token', TOKEN, '--meta', url], {ready: /^listening on /, timeoutMs: 60_000})
const base = (proc) => proc.readyLine.replace(/^listening on /, '').trim()
const health = async (proc) => (await (await fetch(`${base(proc)}/healthz`, {signal: AbortSignal.timeout(2000)})).json()).role
const statusOk = async (proc) => {
  const res = await fetch(`${base(proc)}/api/status?name=${encodeURIComponent(NAME)}`, {headers: {authorization: `Bearer ${TOKEN}`}, signal: AbortSignal.timeout(5000)})
  if (res.status !== 200) return false
  const doc = await res.json()
  return doc.files?.[0]?.name === NAME && doc.files[0].chunks.length === PER_FILE
}
const cpuSeconds = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100 // utime + stime, in clock ticks of 1/100 s
}

try {
  // 2. the first master leads: it loads everything at takeover, as any master did before warm standbys
  t = performance.now()
  const a = await master('a')
  await waitFor('the first master to lead', async () => (await health(a)) === 'leader', 300_000, 50)
  const firstLeaderMs = since(t)
  await waitFor('the first master to serve status NAME', () => statusOk(a), 60_000, 50)
  const firstStatusMs = since(t)

  // 3. the standby: loads its working copy while standing by, then follows the leader's writes
  t = performance.now()
  const b = await master('b')
  await waitFor('the second master to stand by', async () => (await health(b)) === 'standby', 60_000, 50)
  let standbyLoadMs
  let standbyCpuPct
  if (!cold && warmLine) {
    await b.waitLine(/working copy loaded/, 300_000)
    standbyLoadMs = since(t)
    const cpu0 = cpuSeconds(b.pid)
    const wall0 = performance.now()
    await new Promise((resolve) => setTimeout(resolve, 10_000)) // a fixed window to measure its CPU over
    standbyCpuPct = Math.round(((cpuSeconds(b.pid) - cpu0) / ((performance.now() - wall0) / 1000)) * 1000) / 10
  }

  // 4. kill -9 of the leader
  t = performance.now()
  await a.stop('SIGKILL')
  await waitFor('the standby to lead', async () => (await health(b)) === 'leader', 300_000, 20)
  const leaderMs = since(t)
  await waitFor('the new leader to serve status NAME', () => statusOk(b), 60_000, 20)
  const statusMs = since(t)
  const line = b.lines().find((l) => /leading \(epoch/.test(l)) ?? ''
  const leading = line.startsWith('{') ? JSON.parse(line).msg : line
  console.log(JSON.stringify({chunks: CHUNKS, cold, seedMs, firstLeaderMs, firstStatusMs, standbyLoadMs, standbyCpuPct, failover: {leaderMs, statusMs}, leading}))
} finally {
  await stopAll()
}
