// The master at scale, in-process and synthetic (run as its own process so its RSS is the master's):
// 1,000,000 committed chunks (1,000 files of 1,000 chunks, one replica each: n1 holds 100,000, n3 the rest) recorded in SQLite,
// then a 100,000-entry chunk report from n2 processed through the same code the WebSocket link calls,
// then `status NAME` of one 1,000-chunk file, the repair loop's first look and a healthy round, and
// `status NAME` again right after a change, its summary from the loop's kept counts. Prints one JSON line.
// With a postgres:// URL the same scene is shipped to PostgreSQL through the store the master writes
// with, then loaded back as a new leader loads it (its working copy), and the rest runs on that copy
// with every change recorded and flushed to PostgreSQL, as a leader on PostgreSQL runs.
// Usage: node master-scale.mjs DIR [CHUNKS] [postgres://…]
import {createHash} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {createMasterContext} from '../dist/src/master/context.js'
import {META_TABLE_NAMES, META_TABLES} from '../dist/src/master/meta-store.js'
import {loadWorkingCopy, MetaSync} from '../dist/src/master/meta-sync.js'
import {PostgresMetaStore} from '../dist/src/master/postgres-meta-store.js'
import {openDatabase} from '../dist/src/master/db.js'
import {RepairLoop} from '../dist/src/master/repair-loop.js'
import {ReplicaRecords} from '../dist/src/master/replicas.js'
import {Views} from '../dist/src/master/views.js'
import {MasterMetrics} from '../dist/src/telemetry/metrics.js'
import {messageLogger} from '../dist/src/util/log.js'

const dir = process.argv[2]
const CHUNKS = Number(process.argv[3] ?? 1_000_000)
const META = process.argv[4]
/** Rows per transaction when shipping the scene to PostgreSQL. */
const SHIP_BATCH = 10_000
const PER_FILE = 1000
const REPORT = Math.min(100_000, CHUNKS)
const BATCH = 2000
const SIZE = 10 * 1024 * 1024

const chunkId = (i) => i.toString(16).padStart(24, '0')
const sha = (i) => createHash('sha256').update(`chunk-${i}`).digest('hex')
const fileName = (f) => `bench/file-${String(f).padStart(6, '0')}.bin`
const ms = (start) => Math.round((performance.now() - start) * 10) / 10

const db = openDatabase(dir)
const clock = {now: () => Date.now()}
const lines = []
const log = messageLogger((line) => void lines.push(line))
const metrics = new MasterMetrics()
const ctx = createMasterContext({db, clock, log, metrics, nodeTimeoutMs: 60_000, replicas: 2, minReplicas: 1})
const {nodes} = ctx
let messagesToNodes = 0
for (const id of ['n1', 'n2']) {
  nodes.hello({type: 'hello', v: 1, nodeId: id, url: `http://127.0.0.1:1/${id}`, zone: id, freeBytes: 1e15, usedBytes: 0, chunkCount: 0})
  nodes.attach(id, {send: () => void messagesToNodes++, close() {}})
}

// 1. record a million chunks (not the measure: setting the scene)
let t = performance.now()
const committedAt = new Date().toISOString()
db.transaction(() => {
  const file = db.prepare('INSERT INTO files (name, size, chunk_size, chunk_count, committed_at) VALUES (?, ?, ?, ?, ?)')
  const ids = db.prepare('INSERT INTO chunk_ids (name, idx, chunk_id) VALUES (?, ?, ?)')
  const chunk = db.prepare('INSERT INTO chunks (chunk_id, committed_version, max_version, size, sha256) VALUES (?, 1, 1, ?, ?)')
  const replica = db.prepare("INSERT INTO replicas (chunk_id, node_id, version, sha256, corrupt, seen) VALUES (?, ?, 1, ?, 0, 'seed')")
  for (let f = 0; f * PER_FILE < CHUNKS; f++) {
    file.run(fileName(f), PER_FILE * SIZE, SIZE, PER_FILE, committedAt)
    for (let k = 0; k < PER_FILE && f * PER_FILE + k < CHUNKS; k++) {
      const i = f * PER_FILE + k
      ids.run(fileName(f), k, chunkId(i))
      chunk.run(chunkId(i), SIZE, sha(i))
      replica.run(chunkId(i), i < REPORT ? 'n1' : 'n3', sha(i)) // n1 holds what it will report; n3 the rest
    }
  }
})()
const recordMs = ms(t)

// 1b. on PostgreSQL: the scene shipped to it (setting the scene too), then a takeover's load of it
let store
let sync
let pg
if (META) {
  store = new PostgresMetaStore(META, {leaseMs: 60_000, log})
  await store.init()
  const leadership = await store.lead('http://127.0.0.1:1', AbortSignal.timeout(60_000))
  t = performance.now()
  let shipped = 0
  for (const table of META_TABLE_NAMES) {
    let batch = []
    for (const row of db.prepare(`SELECT ${META_TABLES[table].columns.map((c) => `"${c}"`).join(', ')} FROM ${table}`).iterate()) {
      batch.push({table, op: 'put', row})
      if (batch.length === SHIP_BATCH) {
        await store.apply(leadership.epoch, batch)
        shipped += batch.length
        batch = []
      }
    }
    if (batch.length > 0) await store.apply(leadership.epoch, batch)
    shipped += batch.length
  }
  const shipMs = ms(t)
  t = performance.now()
  const {rows: loadedRows} = await loadWorkingCopy(db, store)
  const loadMs = ms(t)
  sync = new MetaSync(db, store, leadership.epoch, (err) => {
    throw err
  })
  pg = {shippedRows: shipped, shipMs, loadedRows, loadMs}
}

// 2. a 100,000-entry report, as every node sends on every (re)connect: from n1, whose rows are on
// record (a node coming back: the common case), and from n2, whose rows are all new.
const records = new ReplicaRecords(ctx)
const batches = []
for (let b = 0; b * BATCH < REPORT; b++) {
  const replicas = []
  for (let i = b * BATCH; i < Math.min(REPORT, (b + 1) * BATCH); i++) replicas.push({chunkId: chunkId(i), version: 1, size: SIZE, sha256: sha(i)})
  batches.push(replicas)
}
function report(nodeId) {
  const started = performance.now()
  let slowest = 0
  for (let b = 0; b < batches.length; b++) {
    const bt = performance.now()
    records.reportBatch(nodeId, 'bench:1', {reportId: `bench-${nodeId}`, done: b === batches.length - 1, replicas: batches[b]})
    slowest = Math.max(slowest, ms(bt))
  }
  return {ms: ms(started), slowest}
}
const known = report('n1')
t = performance.now()
await sync?.flush() // what a report changed that PostgreSQL keeps (nothing: replica locations are rebuilt from reports)
const reportFlushMs = META ? ms(t) : undefined
const fresh = report('n2')
await sync?.flush()
const reportMs = known.ms
const slowestBatchMs = known.slowest
const summaryLine = lines.find((l) => l.startsWith('report from n1'))

// 3. status NAME of a 1,000-chunk file (median of 5; the first also warms the statement cache)
const views = new Views(ctx)
const statusRuns = []
// The cluster-wide summary is cached until the database changes: the first call after a change pays for it.
let t0 = performance.now()
views.status(fileName(0))
const statusCold = ms(t0)
let doc
for (let r = 0; r < 5; r++) {
  t = performance.now()
  doc = views.status(fileName(Math.floor(CHUNKS / PER_FILE / 2)))
  statusRuns.push(ms(t))
}
statusRuns.sort((a, b) => a - b)

// 4. a /metrics scrape right after a change: the chunk-state gauges come from the last pass over the
// chunks (chunk-counts.ts), never from one query over all of them.
metrics.attach({nodes: () => ({alive: 2, dead: 0}), heartbeatAges: () => [], cluster: () => views.summaryForMetrics(), repair: () => ({queued: 0, running: 0, looking: false})})
db.prepare('UPDATE files SET committed_at = committed_at WHERE name = ?').run(fileName(0))
t = performance.now()
const scrape = await metrics.registry.metrics()
const metricsScrapeMs = ms(t)
const scrapedChunks = /^chunky_chunks\{state="fresh"\} (\d+)/m.exec(scrape)?.[1]

// 5. the repair loop at this scale (R=1 here: every chunk has its copy on n1, n2 or n3, all alive): the
// first look at every chunk after a start, in slices, then a healthy round, which must cost nothing.
nodes.hello({type: 'hello', v: 1, nodeId: 'n3', url: 'http://127.0.0.1:1/n3', zone: 'n3', freeBytes: 1e15, usedBytes: 0, chunkCount: 0})
nodes.attach('n3', {send: () => void messagesToNodes++, close() {}})
const loop = new RepairLoop({...ctx, replicas: 1}, () => 0)
loop.stop() // no timers: the bench drives it
t = performance.now()
let slowestSliceMs = 0
let slices = 0
const runSlice = () => {
  const st = performance.now()
  loop.run()
  slowestSliceMs = Math.max(slowestSliceMs, ms(st))
  slices++
}
runSlice()
while (loop.hasChangesToLookAt() && slices < 1_000_000) runSlice()
const firstLookMs = ms(t)
const healthyRuns = []
for (let r = 0; r < 5; r++) {
  t = performance.now()
  loop.run()
  healthyRuns.push(ms(t))
}
healthyRuns.sort((a, b) => a - b)

// 6. status NAME once the loop has looked at every chunk: the summary comes from its counts, kept as
// chunks change (here: one copy reported corrupt just before), not from a query over every chunk.
const keptViews = new Views(ctx, () => 0, () => false, undefined, () => loop.counts())
records.corrupt('n1', chunkId(0), 1)
t = performance.now()
const keptDoc = keptViews.status(fileName(Math.floor(CHUNKS / PER_FILE / 2)))
const statusAfterChangeMs = ms(t)

const hwm = Number(/^VmHWM:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]) / 1024
console.log(
  JSON.stringify({
    chunks: CHUNKS,
    recordMs,
    reportEntries: REPORT,
    reportMs,
    slowestBatchMs,
    reportNewRowsMs: fresh.ms,
    reportLine: summaryLine,
    statusNameMs: statusRuns[2],
    statusNameRunsMs: statusRuns,
    statusChunks: doc.files[0]?.chunks.length,
    statusSummary: doc.summary,
    statusColdMs: statusCold,
    metricsScrapeMs,
    repairFirstLookMs: firstLookMs,
    repairSlices: slices,
    repairSlowestSliceMs: slowestSliceMs,
    repairHealthyRoundMs: healthyRuns[2],
    repairQueue: loop.queue(),
    statusAfterChangeMs,
    statusAfterChangeSummary: keptDoc.summary,
    scrapedFreshChunks: Number(scrapedChunks),
    meta: META ? 'postgres' : 'sqlite',
    ...(pg ? {pg: {...pg, reportFlushMs}} : {}),
    rssMiB: Math.round(process.memoryUsage().rss / 1024 / 1024),
    peakRssMiB: Math.round(hwm),
    messagesToNodes,
  }),
)
db.close()
await store?.close()
