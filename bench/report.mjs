// The issue's targets as ratios of rows measured in the same run, and the markdown report.
import {round} from './lib.mjs'

const MB_PER_MiB = 1.048576
const SHIP_ROWS_NOTE = '10,000 rows per transaction'

/** Each target: {target, measured, limit text, met (true/false/undefined when a row is missing)}. */
export function targets(results) {
  const r = results.rows
  const med = (key) => r[key]?.median
  const ratio = (a, b) => (med(a) !== undefined && med(b) !== undefined ? round(med(a) / med(b), 2) : undefined)
  const check = (value, ok) => (value === undefined ? undefined : ok(value))
  const list = []
  const add = (target, measured, met, note) => list.push({target, measured, met, ...(note ? {note} : {})})

  // The floor is the fastest honest way to do the same work: whichever bare server wrote faster in this run.
  const floor = ['barePut', 'barePutBatch'].filter((k) => med(k) !== undefined).sort((a, b) => med(a) - med(b))[0] ?? 'barePut'
  const r1Bare = ratio('chunkyR1', floor)
  add('upload R=1 ≤ 1.2 × bare 10 MiB-PUT floor (the faster of the two bare servers)', r1Bare === undefined ? 'n/a' : `${r1Bare} ×`, check(r1Bare, (x) => x <= 1.2),
    r1Bare !== undefined ? `floor: ${r[floor].label} (${med(floor)} s); without process start-up: ${ratio('chunkyR1Inner', floor)} ×` : undefined)
  const r1Tus = ratio('chunkyR1', 'tus')
  add('upload R=1 ≤ 0.6 × tus+sync', r1Tus === undefined ? 'n/a' : `${r1Tus} ×`, check(r1Tus, (x) => x <= 0.6))
  const viaTus = ratio('chunkyTus', 'tus')
  const viaTusOnePatch = ratio('chunkyTusOnePatch', 'tusOnePatch')
  add('tus-js-client into chunky R=1 ≤ 1.0 × tus-js-client into @tus/server FileStore + sync', viaTus === undefined ? 'n/a' : `${viaTus} ×`, check(viaTus, (x) => x <= 1.0),
    viaTusOnePatch !== undefined ? `one PATCH for the whole file on both sides (tus-js-client's default): ${viaTusOnePatch} ×` : undefined)
  const r3 = ratio('chunkyR3', 'chunkyR1')
  add('upload R=3 ≤ 2.5 × chunky R=1', r3 === undefined ? 'n/a' : `${r3} ×`, check(r3, (x) => x <= 2.5))
  const down = ratio('chunkyDownload', 'curlGet')
  const downSync = ratio('chunkyDownload', 'curlGetSync')
  add('download, verified ≤ 1.2 × curl GET from the bare server', down === undefined ? 'n/a' : `${down} ×`, check(down, (x) => x <= 1.2),
    downSync !== undefined ? `against curl GET + fsync of its output (chunky fsyncs before the rename): ${downSync} ×` : undefined)
  add('download ≤ 1.1 × curl GET + fsync of its output', downSync === undefined ? 'n/a' : `${downSync} ×`, check(downSync, (x) => x <= 1.1))
  const holding = ratio('nginxGet', 'nodeGetHolding')
  add('whole-file GET through a node holding every chunk ≥ 0.8 × nginx', holding === undefined ? 'n/a' : `${holding} ×`, check(holding, (x) => x >= 0.8),
    r.nodeGetHolding && r.nginxGet ? `node ${r.nodeGetHolding.mbps} MiB/s, nginx ${r.nginxGet.mbps} MiB/s` : undefined)
  const empty = ratio('nginxGet', 'nodeGetEmpty')
  add('whole-file GET through a node holding none ≥ 0.5 × nginx', empty === undefined ? 'n/a' : `${empty} ×`, check(empty, (x) => x >= 0.5),
    r.nodeGetEmpty ? `node ${r.nodeGetEmpty.mbps} MiB/s` : undefined)
  const seek = results.play?.seekTtfbMs
  add('seek: time to first byte of `bytes=N-` ≤ 20 ms median over 50 seeks', seek === undefined ? 'n/a' : `${seek} ms`, check(seek, (x) => x <= 20),
    seek !== undefined ? `through a node holding none: ${results.play.seekTtfbPeerMs} ms` : undefined)
  const re = ratio('chunkyReupload', 'sha256')
  add('re-upload unchanged ≤ 1.5 × SHA-256 in Node', re === undefined ? 'n/a' : `${re} ×`, check(re, (x) => x <= 1.5))
  // Same bytes both ways, so throughput ratio = rsync time / repair time.
  const repair = med('repair') !== undefined && med('rsync') !== undefined ? round(med('rsync') / med('repair'), 2) : undefined
  add('repair throughput ≥ 0.8 × rsync --fsync to a daemon', repair === undefined ? 'n/a' : `${repair} ×`, check(repair, (x) => x >= 0.8),
    r.repair ? `repair ${r.repair.mbps} MiB/s${r.rsync ? `, rsync ${r.rsync.mbps} MiB/s` : ' (rsync not measured)'}` : undefined)

  const client = maxOf([results.chunky.r1?.clientPeakRssMiB, results.chunky.r3?.clientPeakRssMiB])
  add('client peak RSS ≤ 120 MB uploading at concurrency 4', client === undefined ? 'n/a' : `${round(client * MB_PER_MiB, 0)} MB`,
    check(client, (x) => x * MB_PER_MiB <= 120))
  const node = maxOf([...Object.values(results.chunky.r1?.nodePeakRssMiB ?? {}), ...Object.values(results.chunky.r3?.nodePeakRssMiB ?? {})])
  add('node peak RSS ≤ 150 MB under that load', node === undefined ? 'n/a' : `${round(node * MB_PER_MiB, 0)} MB`, check(node, (x) => x * MB_PER_MiB <= 150))

  const s = results.masterScale
  add(`master: 100,000-entry report ≤ 1 s (${s ? s.chunks.toLocaleString('en') : '?'} chunks recorded)`, s ? `${s.reportMs} ms` : 'n/a', s ? s.reportMs <= 1000 : undefined)
  add('master: `status NAME` of a 1,000-chunk file ≤ 50 ms', s ? `${s.statusNameMs} ms` : 'n/a', s ? s.statusNameMs <= 50 : undefined)
  add('master RSS ≤ 500 MB', s ? `${round(s.peakRssMiB * MB_PER_MiB, 0)} MB` : 'n/a', s ? s.peakRssMiB * MB_PER_MiB <= 500 : undefined)
  const p = results.masterScalePg
  add('master on PostgreSQL: 100,000-entry report (no target: said how long)', p ? `${p.reportMs} ms + ${p.pg.reportFlushMs} ms flush` : 'n/a', undefined,
    p ? `a report changes replica locations only, which live in the leader's working copy, not in PostgreSQL; a new leader loads the ${p.pg.loadedRows.toLocaleString('en')} rows in ${p.pg.loadMs} ms` : undefined)
  add('master on PostgreSQL: `status NAME` of a 1,000-chunk file ≤ 50 ms', p ? `${p.statusNameMs} ms` : 'n/a', p ? p.statusNameMs <= 50 : undefined)
  const f = results.failoverScalePg
  add(`master on PostgreSQL: kill -9 of the leader → the standby leads and serves \`status NAME\` within --node-timeout (10 s) + a few seconds (${f ? f.chunks.toLocaleString('en') : '?'} chunks)`,
    f ? `${f.failover.statusMs} ms` : 'n/a', f ? f.failover.statusMs <= 15_000 : undefined,
    f ? `healthz said leader after ${f.failover.leaderMs} ms; a leader that loads everything first served after ${f.firstStatusMs} ms` : undefined)
  const pgUpload = ratio('chunkyR3Pg', 'chunkyR3PairSqlite')
  const sessions = results.chunky.r3PgSessions
  add('upload R=3 through a master on PostgreSQL ≤ 1.1 × through one on SQLite (taken in turns)', pgUpload === undefined ? 'n/a' : `${pgUpload} ×`, check(pgUpload, (x) => x <= 1.1),
    sessions ? `medians of both sessions; ${sessions.map((x) => `${x.first === 'sqlite' ? 'SQLite' : 'PostgreSQL'} uploading first: ${x.ratio} ×`).join(', ')}` : undefined)
  return list
}

const maxOf = (values) => {
  const known = values.filter((v) => typeof v === 'number')
  return known.length ? Math.max(...known) : undefined
}

export function renderMarkdown(results) {
  const out = []
  const sizeMiB = results.fileBytes / 1024 / 1024
  out.push(`# chunky benchmark results (${results.mode}${results.mode === 'quick' ? ': NOT the full run' : ''})`, '')
  out.push(`${results.when} · ${results.machine.cpus} × ${results.machine.cpu} · Node ${results.machine.node} · ${results.machine.platform}`)
  out.push(`File: ${sizeMiB} MiB of random bytes · ${results.runs} runs each (repair: up to 3) · whole run ${results.seconds} s`, '')
  out.push('| what | median s | min s | max s | MiB/s |', '|---|---:|---:|---:|---:|')
  for (const row of Object.values(results.rows)) out.push(`| ${row.label} | ${row.median} | ${row.min} | ${row.max} | ${row.mbps ?? ''} |`)
  out.push('')
  const skipped = Object.entries(results.skipped)
  if (skipped.length) {
    out.push('Skipped or failed:', '')
    for (const [key, why] of skipped) out.push(`- **${key}**: ${why}`)
    out.push('')
  }
  out.push('| target | measured | met? |', '|---|---:|---|')
  for (const t of results.targets) out.push(`| ${t.target} | ${t.measured}${t.note ? ` (${t.note})` : ''} | ${t.met === undefined ? 'not measured' : t.met ? 'met' : '**missed**'} |`)
  out.push('')
  const c = results.chunky
  if (c.r1 || c.r3) {
    out.push(`Peak RSS (MiB): client R=1 ${c.r1?.clientPeakRssMiB ?? 'n/a'}, R=3 ${c.r3?.clientPeakRssMiB ?? 'n/a'}; nodes R=1 ${JSON.stringify(c.r1?.nodePeakRssMiB ?? {})}, R=3 ${JSON.stringify(c.r3?.nodePeakRssMiB ?? {})}`, '')
  }
  const s = results.masterScale
  if (s) {
    out.push(`Master at scale (in-process, synthetic): ${s.chunks.toLocaleString('en')} chunks recorded in ${s.recordMs} ms; ` +
      `${s.reportEntries.toLocaleString('en')}-entry report from a node whose rows are on record ${s.reportMs} ms (slowest 2,000-entry batch ${s.slowestBatchMs} ms), ` +
      `from a node whose rows are all new ${s.reportNewRowsMs} ms; ` +
      `\`status NAME\` (${s.statusChunks} chunks) ${s.statusNameMs} ms median of 5, ${s.statusColdMs} ms for the first call after a change ` +
      `(the cluster summary is recomputed then); RSS ${s.rssMiB} MiB, peak ${s.peakRssMiB} MiB.`, '')
  }
  const p = results.masterScalePg
  if (p) {
    out.push(`Master at scale on PostgreSQL (the same scene): ${p.pg.shippedRows.toLocaleString('en')} rows written to PostgreSQL in ${p.pg.shipMs} ms ` +
      `(${SHIP_ROWS_NOTE}), loaded back by a new leader into its working copy in ${p.pg.loadMs} ms; ` +
      `${p.reportEntries.toLocaleString('en')}-entry report ${p.reportMs} ms, its flush to PostgreSQL ${p.pg.reportFlushMs} ms; ` +
      `\`status NAME\` ${p.statusNameMs} ms median of 5; peak RSS ${p.peakRssMiB} MiB.`, '')
  }
  const f = results.failoverScalePg
  if (f) {
    out.push(`Failover on PostgreSQL at scale (two master processes, ${f.chunks.toLocaleString('en')} chunks written into PostgreSQL in ${f.seedMs} ms): ` +
      `the first master led and served \`status NAME\` ${f.firstStatusMs} ms after it started (it loads everything at takeover); the standby's working copy ` +
      `was loaded ${f.standbyLoadMs} ms after it started, and it used ${f.standbyCpuPct} % of a core standing by; after kill -9 of the leader the standby ` +
      `answered /healthz as leader after ${f.failover.leaderMs} ms and \`status NAME\` after ${f.failover.statusMs} ms (${f.leading}).`, '')
  }
  out.push('Times are wall-clock; chunky rows run the built CLI as separate processes (master, nodes, client) on 127.0.0.1.')
  return out.join('\n') + '\n'
}
