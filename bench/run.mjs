#!/usr/bin/env node
// npm run bench [-- --quick] [-- --runs N] [-- --size-mib N] [-- --scale-chunks N] [-- --skip-scale] [-- --only a,b]
// The rows on PostgreSQL (chunkyR3Pg, masterScalePg, failoverScalePg) start a throwaway server (scripts/postgres-server.mjs).
// Measures chunky and its floors and neighbours side by side on one file of random bytes, and writes
// bench/results.md and bench/results.json. Needs `npm run build` first (it runs the built dist/).
import {randomFillSync} from 'node:crypto'
import {existsSync} from 'node:fs'
import {mkdtemp, open, rm, writeFile} from 'node:fs/promises'
import {cpus, tmpdir} from 'node:os'
import {join, resolve} from 'node:path'
import {parseArgs} from 'node:util'
import {downloadRuns, drainRun, reuploadRuns, repairRun, startCluster, uploadRuns} from './chunky.mjs'
import {MiB, median, round, run, sha256File, stopAll, summarize} from './lib.mjs'
import * as n from './neighbours.mjs'
import {renderMarkdown, targets} from './report.mjs'
import {startPostgres} from '../scripts/postgres-server.mjs'
import {tusIntoChunky} from './tus-chunky.mjs'

const ROOT = resolve(import.meta.dirname, '..')
const {values: args} = parseArgs({
  options: {
    quick: {type: 'boolean', default: false},
    runs: {type: 'string'},
    'size-mib': {type: 'string'},
    'scale-chunks': {type: 'string'},
    'skip-scale': {type: 'boolean', default: false},
    only: {type: 'string'}, // comma-separated step keys (sha256,dd,…,chunkyR1,chunkyR3,chunkyR3Pg,chunkyTus,tusOnePatch,chunkyTusOnePatch,repair,drain,masterScale,masterScalePg,failoverScalePg): a partial run
  },
})
const runs = Number(args.runs ?? (args.quick ? 2 : 5))
const size = Number(args['size-mib'] ?? (args.quick ? 128 : 1024)) * MiB
// --quick records 200,000 chunks for the master at scale (the report stays 100,000 entries): a minute less.
const scaleChunks = Number(args['scale-chunks'] ?? (args.quick ? 200_000 : 1_000_000))

if (!existsSync(join(ROOT, 'dist/src/master/index.js'))) {
  console.error('bench: dist/ is missing: run `npm run build` first')
  process.exit(2)
}

const results = {
  when: new Date().toISOString(),
  machine: {cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version, platform: `${process.platform} ${process.arch}`},
  mode: args.quick ? 'quick' : 'full',
  fileBytes: size,
  runs,
  rows: {},
  skipped: {},
  chunky: {},
}
const log = (line) => console.error(`[bench ${((performance.now() - t0) / 1000).toFixed(1)}s] ${line}`)
const t0 = performance.now()

function record(key, label, seconds, bytes = size) {
  results.rows[key] = {label, ...summarize(seconds, bytes)}
  const r = results.rows[key]
  log(`${label}: median ${r.median}s (min ${r.min}, max ${r.max})${r.mbps ? `, ${r.mbps} MiB/s` : ''}`)
}

const only = args.only ? new Set(args.only.split(',')) : undefined

async function step(key, what, fn) {
  if (only && !only.has(key)) {
    results.skipped[key] = 'not selected (--only)'
    return
  }
  try {
    await fn()
  } catch (err) {
    results.skipped[key] = `failed: ${err.message}`
    log(`${what} FAILED: ${err.message}`)
  }
}

const work = await mkdtemp(join(tmpdir(), 'chunky-bench-'))
const cleanup = async () => {
  await stopAll()
  await rm(work, {recursive: true, force: true})
}
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)))

try {
  const file = join(work, 'source.bin')
  log(`making ${size / MiB} MiB of random bytes in ${work}`)
  await makeRandomFile(file, size)
  await run('sync', [])
  const sourceSha = await sha256File(file)

  // Floors and neighbours.
  await step('sha256', 'SHA-256', async () => record('sha256', 'SHA-256 of the file in Node, 10 MiB pieces', await n.sha256Floor(file, runs)))
  await step('dd', 'dd', async () => record('dd', 'write the file with fsync (`dd conv=fsync`)', await n.ddFloor(file, work, runs)))
  await step('threeCopies', 'three copies', async () =>
    record('threeCopies', 'three fsynced copies in parallel (R=3 disk floor)', await n.threeCopiesFloor(file, work, runs)))
  await step('barePut', 'bare PUT', async () =>
    record('barePut', '10 MiB PUTs, 4 in flight, client SHA-256, server `pipeline(req, file stream)` and fsync per chunk (bare Node http)', await n.barePutFloor(work, file, size, runs)))
  await step('barePutBatch', 'bare PUT batched', async () =>
    record('barePutBatch', 'same, server writing in 4 MiB batches', await n.barePutFloor(work, file, size, runs, true)))
  await step('curlGet', 'curl GET', async () => {
    const sink = await n.startSink(work, file)
    try {
      record('curlGet', '`curl` GET of the file from the bare Node server', await n.curlGetFloor(`${sink.url}/file`, work, runs))
      // chunky's download fsyncs the file before it takes its name (nothing half-written survives a crash): the same for curl
      record('curlGetSync', '`curl` GET, then fsync of the output (`dd conv=fsync` over it)', await n.curlGetFloor(`${sink.url}/file`, work, runs, true))
    } finally {
      await sink.stop()
    }
  })
  await step('nginxPut', 'nginx', async () => {
    const nginx = await n.nginxNeighbour(work, file, runs)
    if (nginx.skipped) results.skipped.nginxPut = nginx.skipped
    else record('nginxPut', 'nginx WebDAV PUT of the whole file, then sync', nginx.put)
  })
  await step('tus', 'tus', async () =>
    record('tus', 'tus (`tus-js-client` → `@tus/server` FileStore, 10 MiB chunks), then sync', await n.tusNeighbour(work, file, size, runs)))
  await step('rsync', 'rsync', async () => {
    const rsync = await n.rsyncNeighbour(work, file, size, runs)
    if (rsync.skipped) results.skipped.rsync = rsync.skipped
    else record('rsync', `rsync of the ${rsync.files} chunk files to an rsync daemon, \`--fsync\``, rsync.put)
  })
  for (const [key, why] of Object.entries(results.skipped)) log(`SKIPPED ${key}: ${why}`)

  // chunky, R=1 then R=3 (pipelined chain over three local nodes).
  await step('chunkyR1', 'chunky R=1', async () => {
    const cluster = await startCluster(work, 'r1', {replicas: 1, minReplicas: 1, nodeCount: 1})
    try {
      const up = await uploadRuns(cluster, file, runs, 'r1')
      record('chunkyR1', 'chunky `upload`, R=1 (wall time of the command)', up.wall)
      record('chunkyR1Inner', 'chunky `upload`, R=1 (its own `seconds`: without process start-up)', up.inner)
      results.chunky.r1 = {clientPeakRssMiB: up.clientPeakRssMiB, nodePeakRssMiB: up.nodePeakRssMiB}
    } finally {
      await cluster.close()
    }
  })
  await step('chunkyR3', 'chunky R=3', async () => {
    const cluster = await startCluster(work, 'r3', {replicas: 3, minReplicas: 2, nodeCount: 3})
    try {
      const up = await uploadRuns(cluster, file, runs, 'r3')
      record('chunkyR3', 'chunky `upload`, R=3 on three local nodes (wall time)', up.wall)
      record('chunkyR3Inner', 'chunky `upload`, R=3 (its own `seconds`)', up.inner)
      results.chunky.r3 = {clientPeakRssMiB: up.clientPeakRssMiB, nodePeakRssMiB: up.nodePeakRssMiB}
      const down = await downloadRuns(cluster, up.name, work, runs, sourceSha)
      record('chunkyDownload', 'chunky `download`, verified (wall time)', down.wall)
      record('chunkyReupload', 'chunky re-upload of the unchanged file (wall time)', await reuploadRuns(cluster, file, up.name, runs))
    } finally {
      await cluster.close()
    }
  })
  await step('chunkyR3Pg', 'chunky R=3 through a master on PostgreSQL', async () => {
    // Two clusters side by side, uploads taken in turns so both see the same load: one master on
    // SQLite, one on PostgreSQL (every metadata change written there before it answers). Whichever
    // cluster uploaded first stayed the faster one for the whole session on the bench machine, by up
    // to 14 %, on either store: the other's nodes spent more user CPU on the same bytes, while
    // PostgreSQL and both masters used next to none. So a session with SQLite first is matched by one
    // of fresh clusters with PostgreSQL first; within each, which goes first alternates pair by pair.
    const walls = [[], []]
    const sessions = []
    for (const first of [0, 1]) {
      const pg = await startPostgres()
      const clusters = []
      const own = [[], []]
      try {
        clusters.push(await startCluster(work, `r3-sqlite-${first}`, {replicas: 3, minReplicas: 2, nodeCount: 3}))
        clusters.push(await startCluster(work, `r3-pg-${first}`, {replicas: 3, minReplicas: 2, nodeCount: 3, masterArgs: ['--meta', pg.url]}))
        for (let i = 0; i < runs; i++) {
          for (const k of (i + first) % 2 === 0 ? [0, 1] : [1, 0]) {
            const cluster = clusters[k]
            const up = await uploadRuns(cluster, file, 1, `${k === 0 ? 'sqlite' : 'pg'}-${first}-${i}`)
            own[k].push(up.wall[0])
            await cluster.cli(['rm', up.name])
          }
        }
      } finally {
        for (const cluster of clusters) await cluster.close()
        await pg.destroy()
      }
      walls[0].push(...own[0])
      walls[1].push(...own[1])
      sessions.push({first: first === 0 ? 'sqlite' : 'postgres', sqliteMedian: round(median(own[0])), postgresMedian: round(median(own[1])), ratio: round(median(own[1]) / median(own[0]), 3)})
      log(`R=3 in turns, ${sessions.at(-1).first} uploading first: SQLite ${sessions.at(-1).sqliteMedian}s, PostgreSQL ${sessions.at(-1).postgresMedian}s (${sessions.at(-1).ratio} ×)`)
    }
    record('chunkyR3PairSqlite', 'chunky `upload`, R=3, master on SQLite (in turns with the next row)', walls[0])
    record('chunkyR3Pg', 'chunky `upload`, R=3, master on PostgreSQL (in turns with the row above)', walls[1])
    results.chunky.r3PgSessions = sessions
  })
  await step('chunkyTus', 'chunky through tus', async () =>
    record('chunkyTus', 'tus (`tus-js-client` → chunky node `/tus/`, R=1, 10 MiB PATCHes; durable, committed)', await tusIntoChunky(work, file, size, runs)))
  await step('tusOnePatch', 'tus, one PATCH', async () =>
    record('tusOnePatch', 'tus, one PATCH for the whole file (tus-js-client\'s default) → `@tus/server` FileStore, then sync', await n.tusNeighbour(work, file, size, runs, Infinity)))
  await step('chunkyTusOnePatch', 'chunky through tus, one PATCH', async () =>
    record('chunkyTusOnePatch', 'tus, one PATCH for the whole file → chunky node `/tus/`, R=1', await tusIntoChunky(work, file, size, runs, Infinity)))
  await step('repair', 'repair', async () => {
    const repairs = []
    for (let i = 0; i < Math.min(runs, 3); i++) {
      repairs.push(await repairRun(work, file, size, i))
      log(`repair run ${i + 1}: ${round(repairs.at(-1).transferSeconds)}s from the first transfer, ${round(repairs.at(-1).fromKillSeconds)}s from the kill`)
    }
    record('repair', "repair: a dead node's file back on another node (from the first transfer)", repairs.map((r) => r.transferSeconds))
    record('repairFromKill', 'repair, from the kill (includes the 3 s node timeout)', repairs.map((r) => r.fromKillSeconds))
  })
  await step('drain', 'drain', async () => {
    const drains = []
    for (let i = 0; i < Math.min(runs, 3); i++) {
      drains.push(await drainRun(work, file, size, i))
      log(`drain run ${i + 1}: ${round(drains.at(-1).seconds)}s`)
    }
    record('drain', '`chunky nodes drain --wait` of a node holding the whole file (the same bytes as repair)', drains.map((r) => r.seconds))
  })

  await step('play', 'whole-file GET through nodes', async () => {
    // bench/play.mjs in its own process: a cluster of its own, nginx beside it, on a file of the same size
    const {stdout} = await run(process.execPath, [join(import.meta.dirname, 'play.mjs'), '--size-mib', String(size / MiB), '--runs', String(runs)], {timeoutMs: 1_800_000})
    const play = JSON.parse(stdout.slice(stdout.indexOf('{')))
    results.play = play
    if (play.nginx) record('nginxGet', '`curl -o /dev/null` GET of the file from nginx (the same disk)', play.samples.nginx)
    else results.skipped.nginxGet = play.skipped
    record('nodeGetHolding', '`curl -o /dev/null` GET /v1/files/NAME through a node holding every chunk', play.samples.holding)
    record('nodeGetEmpty', 'the same through a node holding none (it fetches from peers)', play.samples.empty)
    log(`seek: time to first byte ${play.seekTtfbMs} ms median (max ${play.seekTtfbMaxMs}); through the empty node ${play.seekTtfbPeerMs} ms`)
  })

  if (!args['skip-scale']) {
    await step('masterScale', 'master at scale', async () => {
      const dir = join(work, 'scale')
      log(`master at scale: recording ${scaleChunks} chunks (takes a while)`)
      const {stdout} = await run(process.execPath, [join(import.meta.dirname, 'master-scale.mjs'), dir, String(scaleChunks)], {timeoutMs: 600_000})
      results.masterScale = JSON.parse(stdout.trim().split('\n').pop())
      const s = results.masterScale
      log(`master at scale: ${s.chunks} chunks recorded in ${s.recordMs} ms; ${s.reportEntries}-entry report ${s.reportMs} ms; status NAME ${s.statusNameMs} ms; peak RSS ${s.peakRssMiB} MiB`)
      await rm(dir, {recursive: true, force: true})
    })
    await step('masterScalePg', 'master at scale on PostgreSQL', async () => {
      const dir = join(work, 'scale-pg')
      const pg = await startPostgres()
      try {
        log(`master at scale on PostgreSQL: recording ${scaleChunks} chunks and shipping them there (takes a while)`)
        const {stdout} = await run(process.execPath, [join(import.meta.dirname, 'master-scale.mjs'), dir, String(scaleChunks), pg.url], {timeoutMs: 900_000})
        results.masterScalePg = JSON.parse(stdout.trim().split('\n').pop())
        const s = results.masterScalePg
        log(`master at scale on PostgreSQL: ${s.pg.shippedRows} rows shipped in ${s.pg.shipMs} ms, loaded by a new leader in ${s.pg.loadMs} ms; ${s.reportEntries}-entry report ${s.reportMs} ms (+ flush ${s.pg.reportFlushMs} ms); status NAME ${s.statusNameMs} ms`)
      } finally {
        await pg.destroy()
        await rm(dir, {recursive: true, force: true})
      }
    })
    await step('failoverScalePg', 'failover of a master on PostgreSQL at scale', async () => {
      const dir = join(work, 'failover-pg')
      const pg = await startPostgres()
      try {
        log(`failover at scale: ${scaleChunks} chunks in PostgreSQL, a leader and a warm standby, then kill -9 of the leader (takes a few minutes)`)
        const {stdout} = await run(process.execPath, [join(import.meta.dirname, 'failover-scale.mjs'), dir, pg.url, String(scaleChunks)], {timeoutMs: 900_000})
        results.failoverScalePg = JSON.parse(stdout.trim().split('\n').pop())
        const f = results.failoverScalePg
        log(`failover at scale: a first leader served after ${f.firstStatusMs} ms (loading everything), the standby's copy was loaded after ${f.standbyLoadMs} ms; after kill -9 of the leader the standby led after ${f.failover.leaderMs} ms and served status NAME after ${f.failover.statusMs} ms`)
      } finally {
        await pg.destroy()
        await rm(dir, {recursive: true, force: true})
      }
    })
  } else {
    results.skipped.masterScale = '--skip-scale'
    results.skipped.masterScalePg = '--skip-scale'
    results.skipped.failoverScalePg = '--skip-scale'
  }

  results.targets = targets(results)
  results.seconds = round((performance.now() - t0) / 1000, 1)
  const md = renderMarkdown(results)
  await writeFile(join(import.meta.dirname, 'results.json'), JSON.stringify(results, null, 2) + '\n')
  await writeFile(join(import.meta.dirname, 'results.md'), md)
  console.log(md)
  log(`done in ${results.seconds}s; wrote bench/results.md and bench/results.json`)
} finally {
  await cleanup()
}

async function makeRandomFile(path, bytes) {
  const handle = await open(path, 'w')
  try {
    const block = Buffer.alloc(8 * MiB)
    for (let written = 0; written < bytes; written += block.length) {
      randomFillSync(block)
      await handle.write(block, 0, Math.min(block.length, bytes - written))
    }
  } finally {
    await handle.close()
  }
}

export {median}
