#!/usr/bin/env node
// Profiles one chunky upload and one download: `node bench/profile.mjs [--size-mib 256] [--replicas 1]`,
// or with --tus one tus-js-client upload instead (one PATCH, or --tus-chunk-mib N pieces).
// Every chunky process (master, nodes, client) runs with --cpu-prof; the hottest functions of each
// profile are printed (self time), and the .cpuprofile files are kept for Chrome DevTools.
import {randomFillSync} from 'node:crypto'
import {readdirSync, readFileSync} from 'node:fs'
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {parseArgs} from 'node:util'
import {setExecArgs, startCluster} from './chunky.mjs'
import {MiB, stopAll} from './lib.mjs'
import {tusIntoCluster} from './tus-chunky.mjs'

const {values: args} = parseArgs({options: {'size-mib': {type: 'string', default: '256'}, replicas: {type: 'string', default: '1'}, tus: {type: 'boolean', default: false}, 'tus-chunk-mib': {type: 'string'}}})
const R = Number(args.replicas)
const work = await mkdtemp(join(tmpdir(), 'chunky-profile-'))
const profiles = join(work, 'profiles')
await mkdir(profiles)
const file = join(work, 'source.bin')
const buf = Buffer.alloc(Number(args['size-mib']) * MiB)
randomFillSync(buf)
await writeFile(file, buf)

setExecArgs(['--cpu-prof', `--cpu-prof-dir=${profiles}`])
const cluster = await startCluster(work, 'profile', {replicas: R, minReplicas: Math.min(2, R), nodeCount: R})
try {
  if (args.tus) {
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
