#!/usr/bin/env node
// The master with thousands of nodes: a real `chunky master` process, and this one process holding N
// node links (it speaks the node protocol: hello, an empty report, a heartbeat every 2 s, a ping when the
// master has been quiet for 7.5 s; it stores no
// data). Measures how long N links take to join, then the master's CPU while idle and its event-loop
// lag. Prints one JSON line. All on 127.0.0.1; every process it starts is stopped.
// Usage: node bench/many-links.mjs [LINKS=5000] [IDLE_SECONDS=20]
import {spawn} from 'node:child_process'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'
import {createInterface} from 'node:readline'
import WebSocket from 'ws'

const LINKS = Number(process.argv[2] ?? 5000)
const IDLE_SECONDS = Number(process.argv[3] ?? 20)
const HEARTBEAT_MS = 2000
const PING_WHEN_QUIET_MS = 7500
const SECRET = 'many-links-bench-secret-0123456789'
const ROOT = resolve(import.meta.dirname, '..')
const TICKS = 100 // clock ticks per second in /proc/PID/stat

const dir = await mkdtemp(join(tmpdir(), 'chunky-links-'))
const master = spawn(process.execPath, [...(process.env.CHUNKY_BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.CHUNKY_BENCH_PROF}`] : []), join(ROOT, 'bin/run.js'), 'master', '--port', '0', '--data-dir', join(dir, 'm'), '--secret', SECRET, '--log-level', 'warn'], {
  stdio: ['ignore', 'pipe', 'inherit'],
  env: {...process.env, XDG_CONFIG_HOME: join(dir, 'config')},
})
const stopAll = async () => {
  for (const ws of sockets) ws.terminate()
  if (master.exitCode === null) master.kill(process.env.CHUNKY_BENCH_PROF ? 'SIGINT' : 'SIGKILL')
  await rm(dir, {recursive: true, force: true})
}
const sockets = []
try {
  const lines = createInterface({input: master.stdout})
  let url
  let nodeToken
  for await (const line of lines) {
    nodeToken ??= /(node-[0-9a-f]{64})/.exec(line)?.[1]
    url = /^listening on (\S+)$/.exec(line)?.[1]
    if (url) break
  }
  master.stdout.resume()
  if (!url || !nodeToken) throw new Error('the master did not start')
  const cpuTimes = async () => {
    const fields = (await readFile(`/proc/${master.pid}/stat`, 'utf8')).split(') ')[1].split(' ')
    return {user: Number(fields[11]) / TICKS, system: Number(fields[12]) / TICKS}
  }
  const cpuSeconds = async () => {
    const {user, system} = await cpuTimes()
    return user + system
  }
  const alive = async () => {
    const res = await fetch(`${url}/api/nodes`, {headers: {authorization: `Bearer ${SECRET}`}})
    return (await res.json()).nodes.filter((n) => n.state === 'alive').length
  }

  // 1. N links join, 50 dials at a time (as nodes coming up after a master restart would)
  const started = performance.now()
  const cpuBefore = await cpuSeconds()
  let failed = 0
  const connect = (i) =>
    new Promise((resolveLink) => {
      const ws = new WebSocket(`${url.replace('http', 'ws')}/ws`, {headers: {authorization: `Bearer ${nodeToken}`}})
      sockets.push(ws)
      const id = `sim-${String(i).padStart(5, '0')}`
      ws.on('error', () => {})
      ws.once('open', () => ws.send(JSON.stringify({type: 'hello', v: 1, nodeId: id, url: `http://127.0.0.1:9/${id}`, zone: `z${i % 8}`, freeBytes: 1e12, usedBytes: 0, chunkCount: 0})))
      ws.on('message', (data) => {
        const msg = JSON.parse(data.toString())
        if (msg.type !== 'welcome') return
        ws.send(JSON.stringify({type: 'report', reportId: `r${i}`, done: true, replicas: []}))
        // as a node does: a heartbeat every 2 s, and a ping only when the master has been quiet for half
        // the node's silence window (src/node/master-link.ts: 15 s with one master)
        let lastHeard = Date.now()
        ws.on('pong', () => (lastHeard = Date.now()))
        ws.on('ping', () => (lastHeard = Date.now()))
        setInterval(() => {
          if (ws.readyState !== WebSocket.OPEN) return
          ws.send(JSON.stringify({type: 'heartbeat', freeBytes: 1e12, usedBytes: 0, chunkCount: 0}))
          if (Date.now() - lastHeard >= PING_WHEN_QUIET_MS) ws.ping()
        }, HEARTBEAT_MS).unref()
        resolveLink(true)
      })
      ws.once('close', () => resolveLink(false))
    })
  for (let i = 0; i < LINKS; i += 50) {
    const batch = await Promise.all(Array.from({length: Math.min(50, LINKS - i)}, (_, k) => connect(i + k)))
    failed += batch.filter((ok) => !ok).length
  }
  const deadline = Date.now() + 120_000
  let joined = 0
  while (Date.now() < deadline && (joined = await alive()) < LINKS - failed) await new Promise((r) => setTimeout(r, 200))
  const joinSeconds = (performance.now() - started) / 1000
  const joinCpuSeconds = (await cpuSeconds()) - cpuBefore

  // 2. idle: heartbeats only
  const idleFrom = await cpuTimes()
  const idleStart = performance.now()
  await new Promise((r) => setTimeout(r, IDLE_SECONDS * 1000))
  const idleTo = await cpuTimes()
  const idleWall = (performance.now() - idleStart) / 1000
  const idleUser = (idleTo.user - idleFrom.user) / idleWall
  const idleSystem = (idleTo.system - idleFrom.system) / idleWall
  const idleCpu = idleUser + idleSystem
  const metrics = await (await fetch(`${url}/metrics`, {headers: {authorization: `Bearer ${SECRET}`}})).text()
  const lag = (name) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1])
  const stillAlive = await alive()
  console.log(JSON.stringify({
    links: LINKS,
    joined,
    failedLinks: failed,
    joinSeconds: Math.round(joinSeconds * 10) / 10,
    joinCpuSeconds: Math.round(joinCpuSeconds * 10) / 10,
    idleCpuShareOfCore: Math.round(idleCpu * 1000) / 1000,
    idleCpuUser: Math.round(idleUser * 1000) / 1000,
    idleCpuSystem: Math.round(idleSystem * 1000) / 1000,
    idleSeconds: IDLE_SECONDS,
    aliveAfterIdle: stillAlive,
    eventLoopLagP99Ms: Math.round(lag('nodejs_eventloop_lag_p99_seconds') * 1000 * 10) / 10,
    eventLoopLagMaxMs: Math.round(lag('nodejs_eventloop_lag_max_seconds') * 1000 * 10) / 10,
  }))
} finally {
  await stopAll()
}
