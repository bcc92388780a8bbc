// A throwaway PostgreSQL server for tests and benchmarks: initdb in a temp dir, a free port on
// 127.0.0.1, its socket in that dir, run as the `postgres` user when we are root (PostgreSQL refuses
// to run as root). Stopped by its pid.
import {execFileSync, spawn} from 'node:child_process'
import {existsSync, readdirSync, readFileSync} from 'node:fs'
import {chown, mkdtemp, rm} from 'node:fs/promises'
import {createServer} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

/** Where a PostgreSQL program is: on PATH, else in Debian's /usr/lib/postgresql/NN/bin (newest first). */
export function postgresBin(name) {
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir && existsSync(join(dir, name))) return join(dir, name)
  const root = '/usr/lib/postgresql'
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : []
  for (const version of versions) if (existsSync(join(root, version, 'bin', name))) return join(root, version, 'bin', name)
  throw new Error(`${name} not found on PATH or in ${root}/*/bin: install PostgreSQL (apt-get install postgresql)`)
}

const asRoot = process.getuid?.() === 0
/** Runs a PostgreSQL program as the postgres user when we are root. */
function command(name, args) {
  const bin = postgresBin(name)
  return asRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args]
}
export function runPostgresTool(name, args) {
  const [cmd, argv] = command(name, args)
  return execFileSync(cmd, argv, {stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8'})
}

export async function freePort() {
  const server = createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

/**
 * Starts a server on a new data dir (or on `dataDir`, e.g. a pg_basebackup copy) and resolves once it
 * takes connections. `url` is postgres://postgres@127.0.0.1:PORT/postgres (trust auth, local only).
 */
export async function startPostgres(opts = {}) {
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'chunky-pg-')))
  if (asRoot) await chown(dir, postgresUid(), postgresGid())
  const dataDir = opts.dataDir ?? join(dir, 'data')
  if (!opts.dataDir) runPostgresTool('initdb', ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C'])
  const port = opts.port ?? (await freePort())
  const [cmd, argv] = command('postgres', ['-D', dataDir, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=100', ...(opts.settings ?? [])])
  const child = spawn(cmd, argv, {stdio: ['ignore', 'ignore', 'pipe']})
  let stderr = ''
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)))
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`
  const deadline = Date.now() + 30_000
  let pid
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`postgres exited (${child.exitCode}): ${stderr}`)
    try {
      pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
      runPostgresTool('pg_isready', ['-h', '127.0.0.1', '-p', String(port), '-q'])
      break
    } catch {
      await sleep(100)
    }
  }
  if (!pid) throw new Error(`postgres did not start within 30 s: ${stderr}`)
  const stop = async () => {
    try {
      process.kill(pid, 'SIGINT') // fast shutdown: ends sessions, checkpoints
    } catch {
      return
    }
    const until = Date.now() + 30_000
    while (Date.now() < until && alive(pid)) await sleep(50)
  }
  return {
    url,
    port,
    dir,
    dataDir,
    pid,
    stderr: () => stderr,
    stop,
    /** Stops it and removes its directory. */
    async destroy() {
      await stop()
      if (!opts.dir) await rm(dir, {recursive: true, force: true})
    },
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
function postgresUid() {
  return Number(execFileSync('id', ['-u', 'postgres'], {encoding: 'utf8'}).trim())
}
function postgresGid() {
  return Number(execFileSync('id', ['-g', 'postgres'], {encoding: 'utf8'}).trim())
}
