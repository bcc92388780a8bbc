#!/usr/bin/env node
// Profiles one chunky upload and one download: `node bench/profile.mjs [--size-mib 256] [--replicas 1]`,
// or with --tus one tus-js-client upload instead (one PATCH, or --tus-chunk-mib N pieces), or with
// --repair the repair of bench/run.mjs's repair row (R=2 on n1 and n2, n3 joins empty, n1 is killed, n2
// copies to n3), printing the CPU seconds each process spent during the repair (from /proc on Linux).
// A profile covers its process's whole life (the upload included); n1 is killed and leaves none.
// Every chunky process (master, nodes, client) runs with --cpu-prof; the hottest functions of each
// profile are printed (self time), and the .cpuprofile files are kept for Chrome DevTools.
import {randomFillSync} from 'node:crypto'
import {existsSync, readdirSync, readFileSync} from 'node:fs'
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {parseArgs} from 'node:util'
import {setExecArgs, startCluster} from './chunky.mjs'
import {MiB, stopAll, waitFor} from './lib.mjs'
import {tusIntoCluster} from './tus-chunky.mjs'

const {values: args} = parseArgs({options: {'size-mib': {type: 'string', default: '256'}, replicas: {type: 'string', default: '1'}, tus: {type: 'boolean', default: false}, repair: {type: 'boolean', default: false}, 'tus-chunk-mib': {type: 'string'}}})
const R = args.repair ? 2 : Number(args.replicas)
const work = await mkdtemp(join(tmpdir(), 'chunky-profile-'))
const profiles = join(work, 'profiles')
await mkdir(profiles)
const file = join(work, 'source.bin')
const buf = Buffer.alloc(Number(args['size-mib']) * MiB)
randomFillSync(buf)
await writeFile(file, buf)

setExecArgs(['--cpu-prof', `--cpu-prof-dir=${profiles}`])
const cluster = await startCluster(work, 'profile', {replicas: R, minReplicas: Math.min(2, R), nodeCount: R, masterArgs: args.repair ? ['--no-rebalance'] : []})
try {
  if (args.repair) {
    await cluster.cli(['upload', file, '--name', 'p.bin'])
    await cluster.addNode('n3')
    await cluster.nodes.get('n1').stop('SIGKILL')
    cluster.nodes.delete('n1')
    await cluster.master.waitLine(/repair \S+ started/, 30_000)
    const procs = {master: cluster.master.pid, n2: cluster.nodes.get('n2').pid, n3: cluster.nodes.get('n3').pid}
    const before = Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, cpuSeconds(pid)]))
    const started = performance.now()
    await waitFor('repair', async () => (await cluster.status()).summary.underReplicated === 0, 300_000, 25)
    const spent = Object.entries(procs).map(([k, pid]) => `${k} ${(cpuSeconds(pid) - before[k]).toFixed(2)}`).join(', ')
    console.log(`repair: ${((performance.now() - started) / 1000).toFixed(2)}s from the first transfer; CPU seconds meanwhile (all threads): ${spent}`)
    await cluster.nodes.get('n3').stop() // before the others: it writes its profile as it exits
  } else if (args.tus) {
    const [seconds] = await tusIntoCluster(cluster, file, buf.length, 1, args['tus-chunk-mib'] ? Number(args['tus-chunk-mib']) * MiB : Infinity)
    console.log(`tus upload: ${seconds.toFixed(2)}s wall`)
  } else {
    const up = await cluster.cli(['upload', file, '--name', 'p.bin'])
    console.log(`upload: ${up.seconds.toFixed(2)}s wall, ${up.json.seconds}s inside`)
    const down = await cluster.cli(['download', 'p.bin', '-o', join(work, 'out.bin')])
    console.log(`download: ${down.seconds.toFixed(2)}s wall`)
  }
} finally {
  await Promise.all([...cluster.nodes.values()].map((n) => n.stop()))
  await cluster.master.stop()
  await stopAll()
  // Only the profiles stay: the data (source, download, cluster folders) goes.
  await Promise.all([file, join(work, 'out.bin'), cluster.dir].map((path) => rm(path, {recursive: true, force: true})))
}

/** User + system CPU seconds of a process (every thread), from /proc/PID/stat; NaN where there is no /proc. */
function cpuSeconds(pid) {
  if (!existsSync(`/proc/${pid}/stat`)) return NaN
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100 // utime, stime in clock ticks (100 a second on Linux)
}

for (const f of readdirSync(profiles).filter((f) => f.endsWith('.cpuprofile'))) {
  const p = JSON.parse(readFileSync(join(profiles, f), 'utf8'))
  const nodes = new Map(p.nodes.map((n) => [n.id, n]))
  const interval = (p.endTime - p.startTime) / p.samples.length / 1000
  const self = new Map()
  for (const id of p.samples) {
    const {callFrame: c} = nodes.get(id)
    const key = `${c.functionName || '(anonymous)'} ${c.url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${c.lineNumber + 1}`
    self.set(key, (self.get(key) ?? 0) + interval)
  }
  console.log(`\n${f}: ${Math.round((p.endTime - p.startTime) / 1000)} ms`)
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`  ${String(Math.round(v)).padStart(6)} ms  ${k}`)
}
console.log(`\nprofiles kept in ${profiles}`)
