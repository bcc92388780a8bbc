import {createHash, randomBytes} from 'node:crypto'
import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import pg from 'pg'
import {afterAll, beforeAll, expect, it} from 'vitest'
import {runPostgresTool, startPostgres, type PostgresServer} from '../../scripts/postgres-server.mjs'
import {MasterHealth, StatusDoc} from '../../src/protocol/index.js'
import {killAll, runCli, startDaemon, tempDir, TOKEN, waitFor, type Daemon} from './harness.js'

// Issue 15: PostgreSQL's own failover. A primary with a synchronous streaming standby; two masters
// given both hosts in one URL. The primary is killed -9 and the standby promoted: a master leads again
// on the new primary, every acknowledged upload reads back identical, new uploads work, versions rise.
// Synchronous replication is what makes "acknowledged" mean "on the standby too".
const NODE_TIMEOUT_MS = 2000
let primary: PostgresServer
let standby: PostgresServer
let dir: {path: string; remove: () => Promise<void>}
const masters: Daemon[] = []
let env: Record<string, string>

const health = async (master: Daemon) => MasterHealth.parse(await (await fetch(`${master.url}/healthz`, {signal: AbortSignal.timeout(1000)})).json())
const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex')

async function sql<T extends pg.QueryResultRow>(url: string, text: string): Promise<T[]> {
  const client = new pg.Client({connectionString: url})
  await client.connect()
  try {
    return (await client.query<T>(text)).rows
  } finally {
    await client.end()
  }
}

async function leaders(): Promise<{master: Daemon; epoch: number}[]> {
  const found: {master: Daemon; epoch: number}[] = []
  for (const master of masters) {
    const h = await health(master).catch(() => undefined)
    if (h?.role === 'leader') found.push({master, epoch: h.epoch})
  }
  return found
}

async function status(name: string) {
  const result = await runCli(['status', name, '--json'], env)
  if (result.code !== 0) throw new Error(`status exited ${result.code}: ${result.stderr}`)
  return StatusDoc.parse(JSON.parse(result.stdout)).files[0]!
}

beforeAll(async () => {
  primary = await startPostgres()
  // The copy lives in the primary's directory (owned by the postgres user) and is removed with it.
  const standbyData = join(primary.dir, 'standby')
  runPostgresTool('pg_basebackup', ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-D', standbyData, '-R', '-X', 'stream', '--no-sync'])
  standby = await startPostgres({dir: primary.dir, dataDir: standbyData})
  await waitFor('the standby to stream from the primary', async () => (await sql(primary.url, 'SELECT 1 FROM pg_stat_replication')).length === 1)
  // A commit returns only once the standby has flushed it.
  await sql(primary.url, "ALTER SYSTEM SET synchronous_standby_names = '*'")
  await sql(primary.url, 'SELECT pg_reload_conf()')
  await waitFor('the standby to be synchronous', async () => (await sql<{sync_state: string}>(primary.url, 'SELECT sync_state FROM pg_stat_replication'))[0]?.sync_state === 'sync')

  dir = await tempDir()
  const meta = `postgres://postgres@127.0.0.1:${primary.port},127.0.0.1:${standby.port}/postgres`
  for (const i of [0, 1]) {
    masters.push(await startDaemon(['master', '--port', '0', '--data-dir', join(dir.path, `master${i}`), '--token', TOKEN, '--meta', meta,
      '--node-timeout', `${NODE_TIMEOUT_MS}ms`, '--repair-interval', '300ms', '--replicas', '2']))
  }
  await waitFor('one master to lead', async () => (await leaders()).length === 1)
  const list = masters.map((m) => m.url).join(',')
  env = {CHUNKY_MASTER: list, CHUNKY_TOKEN: TOKEN}
  for (const id of ['n1', 'n2']) {
    await startDaemon(['node', '--master', list, '--port', '0', '--id', id, '--zone', id, '--data-dir', join(dir.path, id), '--token', TOKEN, '--heartbeat-interval', '200ms'])
  }
  await waitFor('two nodes alive', async () => {
    const result = await runCli(['status', '--json'], env)
    return result.code === 0 && StatusDoc.parse(JSON.parse(result.stdout)).summary.aliveNodes === 2
  })
}, 90_000)

afterAll(async () => {
  await killAll()
  await standby?.stop()
  await primary?.destroy()
  await dir?.remove()
})

it('primary killed, standby promoted: a master leads on it, nothing acknowledged is lost, uploads go on, versions rise', async () => {
  const files = new Map<string, Buffer>()
  const source = join(dir.path, 'source')
  await mkdir(source)
  for (const name of ['a.bin', 'b.bin', 'c.bin']) {
    const bytes = randomBytes(300 * 1024 + files.size)
    await writeFile(join(source, name), bytes)
    files.set(name, bytes)
  }
  const up = await runCli(['upload', source, '--prefix', 'p', '--chunk-size', '64KiB'], env)
  expect(up.code, up.stderr).toBe(0)
  const before = await status('p/a.bin')
  const epochBefore = (await leaders())[0]!.epoch

  const stoppedAt = Date.now()
  process.kill(primary.pid, 'SIGKILL')
  await waitFor('the primary to be gone', async () => {
    try {
      process.kill(primary.pid, 0)
      return false
    } catch {
      return true
    }
  })
  runPostgresTool('pg_ctl', ['promote', '-D', standby.dataDir, '-w'])
  await waitFor('a master to lead on the promoted standby', async () => {
    const now = await leaders()
    return now.length === 1 && now[0]!.epoch > epochBefore
  }, 30_000)
  console.log(`primary killed and standby promoted: a master led again after ${Date.now() - stoppedAt} ms`)

  const copies = join(dir.path, 'copies')
  const down = await runCli(['download', '--prefix', 'p', '-o', copies], env)
  expect(down.code, down.stderr).toBe(0)
  for (const [name, bytes] of files) expect(sha(await readFile(join(copies, name))), name).toBe(sha(bytes))
  expect((await status('p/a.bin')).chunks.map((c) => c.version)).toEqual(before.chunks.map((c) => c.version))

  // A changed chunk gets a higher version than any handed out before the switch; the others keep theirs.
  const a = files.get('a.bin')!
  a[10] = a[10]! ^ 1
  await writeFile(join(source, 'a.bin'), a)
  await writeFile(join(source, 'd.bin'), randomBytes(200 * 1024))
  const again = await runCli(['upload', source, '--prefix', 'p', '--chunk-size', '64KiB'], env)
  expect(again.code, again.stderr).toBe(0)
  const after = await status('p/a.bin')
  expect(after.chunks[0]!.version).toBeGreaterThan(before.chunks[0]!.version)
  expect(after.chunks.slice(1).map((c) => c.version)).toEqual(before.chunks.slice(1).map((c) => c.version))
  const d = await runCli(['download', 'p/d.bin', '-o', join(dir.path, 'd.copy')], env)
  expect(d.code, d.stderr).toBe(0)
  expect(sha(await readFile(join(dir.path, 'd.copy')))).toBe(sha(await readFile(join(source, 'd.bin'))))
  // The promoted standby has what the masters wrote after the switch: it is the one they write to now.
  expect((await sql<{name: string}>(standby.url, "SELECT name FROM chunky_files WHERE name = 'p/d.bin'")).length).toBe(1)
}, 120_000)
