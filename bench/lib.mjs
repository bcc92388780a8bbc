// Shared helpers of the benchmark: timing, statistics, processes, ports, hashing, memory.
import {spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {createServer} from 'node:net'
import {createInterface} from 'node:readline'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

export const MiB = 1024 * 1024

/** Every child process the bench started, so a failure or Ctrl-C stops them all. */
const children = new Set()

export function median(values) {
  const s = [...values].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

export function summarize(seconds, bytes) {
  const med = median(seconds)
  return {
    runs: seconds.length,
    median: round(med),
    min: round(Math.min(...seconds)),
    max: round(Math.max(...seconds)),
    mbps: bytes ? round(bytes / MiB / med, 1) : undefined, // MiB/s at the median
    samples: seconds.map((s) => round(s)),
  }
}

export const round = (x, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits

/** Runs `fn` `runs` times (each bounded by timeoutMs), returning the seconds of each run; `prepare` runs untimed before each. */
export async function timeRuns(runs, fn, {prepare, cleanup, timeoutMs = 300_000} = {}) {
  const seconds = []
  for (let i = 0; i < runs; i++) {
    if (prepare) await prepare(i)
    const started = performance.now()
    await bounded(fn(i), timeoutMs, 'a run')
    seconds.push((performance.now() - started) / 1000)
    if (cleanup) await cleanup(i)
  }
  return seconds
}

export async function bounded(promise, ms, what) {
  let timer
  try {
    return await Promise.race([
      promise,
      new Promise((_, fail) => (timer = setTimeout(() => fail(new Error(`${what} took longer than ${ms / 1000}s`)), ms))),
    ])
  } finally {
    clearTimeout(timer)
  }
}

/** A command to completion; rejects on a non-zero exit. Returns {stdout, stderr, pid}. */
export function run(cmd, args, {timeoutMs = 300_000, env, cwd} = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env, cwd})
    children.add(child)
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', (err) => {
      clearTimeout(timer)
      children.delete(child)
      reject(err)
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      children.delete(child)
      if (code === 0) resolve({stdout, stderr, pid: child.pid})
      else reject(new Error(`${cmd} ${args.join(' ')} exited with ${code ?? signal}: ${[stdout.trim().slice(0, 500), stderr.trim().split("\n").filter((l) => !/^\t/.test(l)).slice(0, 5).join(" / ")].filter(Boolean).join(" · ")}`))
    })
  })
}

/**
 * A long-running process that prints a line matching `ready` once it serves. Keeps every output line
 * (`lines()`), and `stop()` ends it with SIGTERM (SIGKILL after 5 s).
 */
export async function startProcess(cmd, args, {ready, timeoutMs = 30_000, env} = {}) {
  const child = spawn(cmd, args, {stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env})
  children.add(child)
  child.on('exit', () => children.delete(child))
  const lines = []
  const listeners = new Set()
  const onLine = (line) => {
    lines.push(line)
    for (const listener of listeners) listener(line)
  }
  createInterface({input: child.stdout}).on('line', onLine)
  createInterface({input: child.stderr}).on('line', onLine)
  const proc = {
    child,
    pid: child.pid,
    lines: () => lines,
    /** Resolves with the first line (already printed or to come) matching `re`. */
    waitLine: (re, ms = timeoutMs) =>
      bounded(
        new Promise((resolve) => {
          const hit = lines.find((l) => re.test(l))
          if (hit) return resolve(hit)
          const listener = (line) => {
            if (re.test(line)) {
              listeners.delete(listener)
              resolve(line)
            }
          }
          listeners.add(listener)
        }),
        ms,
        `waiting for ${re} from ${cmd} ${args.slice(0, 2).join(' ')}`,
      ),
    stop: (signal = 'SIGTERM') => stopChild(child, signal),
  }
  if (ready) {
    const exited = new Promise((_, fail) =>
      child.once('exit', (code) => fail(new Error(`${cmd} ${args.join(' ')} exited (${code}) before it was ready:\n${lines.join('\n')}`))),
    )
    exited.catch(() => {})
    proc.readyLine = await Promise.race([proc.waitLine(ready), exited])
  }
  return proc
}

export async function stopChild(child, signal = 'SIGTERM') {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((done) => child.once('exit', done))
  child.kill(signal)
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
  await exited
  clearTimeout(timer)
}

export async function stopAll() {
  await Promise.all([...children].map((child) => stopChild(child, 'SIGKILL')))
}

/** A port free on 127.0.0.1 right now (for servers that cannot report the port they bound: nginx, rsync). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const {port} = server.address()
      server.close(() => resolve(port))
    })
  })
}

export async function waitFor(what, check, timeoutMs = 60_000, intervalMs = 50) {
  const deadline = Date.now() + timeoutMs
  let last
  while (Date.now() < deadline) {
    try {
      const value = await check()
      if (value) return value
    } catch (err) {
      last = err
    }
    await sleep(intervalMs)
  }
  throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}${last ? `: ${last.message}` : ''}`)
}

export async function sha256File(path, pieceSize = 10 * MiB) {
  const hash = createHash('sha256')
  for await (const part of createReadStream(path, {highWaterMark: pieceSize})) hash.update(part)
  return hash.digest('hex')
}

/** Peak resident set (VmHWM) of a running process, in MiB; undefined when /proc is not there. */
export async function peakRssMiB(pid) {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8')
    const kb = Number(/^VmHWM:\s+(\d+)\s+kB/m.exec(status)?.[1])
    return Number.isFinite(kb) ? round(kb / 1024, 1) : undefined
  } catch {
    return undefined
  }
}

/** Whether a program is on the PATH (or at an absolute path). */
export async function which(program) {
  try {
    const {stdout} = await run('sh', ['-c', `command -v ${program}`], {timeoutMs: 5_000})
    return stdout.trim() || undefined
  } catch {
    return undefined
  }
}

/** One tus upload by bench/tus-client.mjs in a process of its own; its seconds (start to success). */
export async function tusUpload({endpoint, file, size, chunkSize, metadata, token}) {
  const args = [join(import.meta.dirname, 'tus-client.mjs'), endpoint, file, String(size), String(chunkSize), JSON.stringify(metadata), ...(token ? [token] : [])]
  const {stdout} = await run(process.execPath, args, {timeoutMs: 300_000})
  return Number(stdout.trim().split('\n').pop())
}
