import {createHash, randomBytes} from 'node:crypto'
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, expect, it} from 'vitest'
import type {PostgresServer} from '../../scripts/postgres-server.mjs'
import {MasterHealth} from '../../src/protocol/index.js'
import {killAll, runCli, spawnCli, waitFor, type Daemon} from './harness.js'
import {type MasterPair, startMasterPair} from './master-pair.js'

// Issue 15: an upload or a download running through a kill -9 of the leader finishes by itself (the
// client waits the failover out and asks the new leader), and what it wrote reads back identical.
// The kill comes at three moments of an upload: before the client asked the master anything, just
// after the plan, and with chunks in flight; each time the killed master comes back as a standby, so
// the next round kills the other one.
const MiB = 1024 * 1024
const NODE_TIMEOUT_MS = 2000
let pg: PostgresServer
let dir: {path: string; remove: () => Promise<void>}
const masters: Daemon[] = []
let env: Record<string, string>
let startMaster: MasterPair['startMaster']

const role = async (master: Daemon) =>
  MasterHealth.parse(await (await fetch(`${master.url}/healthz`, {signal: AbortSignal.timeout(1000)})).json()).role
const roleOrNone = (master: Daemon) => role(master).catch(() => undefined)
const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex')

/** Kills the leader with kill -9 once `when` resolves; resolves once the other master leads. Returns the killed one's index. */
async function killLeader(when: Promise<unknown>): Promise<number> {
  const leader = (await roleOrNone(masters[0]!)) === 'leader' ? 0 : 1
  await when
  await masters[leader]!.kill9()
  const other = masters[1 - leader]!
  await waitFor('the standby to lead', async () => (await roleOrNone(other)) === 'leader', NODE_TIMEOUT_MS + 10_000)
  return leader
}

/** The killed master back on its port, as a standby. */
async function restart(killed: number): Promise<void> {
  const master = await startMaster(killed, new URL(masters[killed]!.url).port)
  await waitFor('the killed master back as a standby', async () => (await roleOrNone(master)) === 'standby')
}

async function readsBackIdentical(name: string, bytes: Buffer): Promise<void> {
  const out = join(dir.path, `${name}.copy`)
  const down = await runCli(['download', name, '-o', out], env)
  expect(down.code, down.stderr).toBe(0)
  expect(sha(await readFile(out)), name).toBe(sha(bytes))
}

beforeAll(async () => {
  ;({pg, dir, env, startMaster} = await startMasterPair({nodeTimeoutMs: NODE_TIMEOUT_MS, masters}))
  await waitFor('three nodes alive', async () => {
    const result = await runCli(['status', '--json'], env)
    return result.code === 0 && (JSON.parse(result.stdout) as {summary: {aliveNodes: number}}).summary.aliveNodes === 3
  })
}, 90_000)

afterAll(async () => {
  await killAll()
  await pg?.destroy()
  await dir?.remove()
})

const moments: [string, (name: string) => Promise<unknown>][] = [
  ['before the client asked the master anything', async () => {}],
  ['just after the plan', (name) => planned(name)],
  ['with chunks in flight', async (name) => {
    await planned(name)
    await new Promise((r) => setTimeout(r, 150)) // chunks of 1 MiB: some stored, some on their way
  }],
]

/** Resolves once a master printed that it handed out the versions of an upload of `name` (read as it is printed). */
function planned(name: string): Promise<void> {
  const handedOut = new RegExp(`of ${name}: \\d+ versions? handed out`)
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no plan of ${name} within 20 s`)), 20_000)
    const check = () => {
      if (!masters.some((m) => handedOut.test(m.output()))) return
      clearTimeout(timer)
      for (const m of masters) for (const stream of [m.child.stdout, m.child.stderr]) stream?.off('data', check)
      resolve()
    }
    for (const m of masters) for (const stream of [m.child.stdout, m.child.stderr]) stream?.on('data', check)
    check()
  })
}

it.each(moments)('an upload through a kill -9 of the leader %s finishes by itself, and reads back identical', async (_moment, moment) => {
  const name = `up-${moments.findIndex(([m]) => m === _moment)}.bin`
  const bytes = randomBytes(16 * MiB + 123)
  const path = join(dir.path, name)
  await writeFile(path, bytes)
  const running = spawnCli(['upload', path, '--chunk-size', '1MiB', '--concurrency', '2', '--json'], env)
  const killed = await killLeader(moment(name))
  const result = await running.result
  const output = masters.map((m) => m.output()).join('\n')
  const uploadId = new RegExp(`upload (\\w+) of ${name}: `).exec(output)?.[1]
  const replanned = uploadId ? output.split(`upload ${uploadId}: chunk `).length - 1 : 0
  console.log(`upload, kill ${_moment}: exit ${result.code}, ${replanned} chunk${replanned === 1 ? '' : 's'} re-planned${result.code === 0 ? '' : `: ${result.stderr.trim()}`}`)
  expect(result.code, result.stderr).toBe(0)
  expect(JSON.parse(result.stdout)).toMatchObject({name, size: bytes.length, chunks: 17})
  await readsBackIdentical(name, bytes)
  await restart(killed)
}, 120_000)

it('a download through a kill -9 of the leader finishes by itself, byte-identical', async () => {
  const name = 'down.bin'
  const bytes = randomBytes(12 * MiB + 7)
  const path = join(dir.path, name)
  await writeFile(path, bytes)
  const up = await runCli(['upload', path, '--chunk-size', '1MiB', '--json'], env)
  expect(up.code, up.stderr).toBe(0)
  const out = join(dir.path, `${name}.through-kill`)
  const running = spawnCli(['download', name, '-o', out, '--json'], env)
  const killed = await killLeader(Promise.resolve()) // before the client asked for the manifest
  const result = await running.result
  expect(result.code, result.stderr).toBe(0)
  expect(sha(await readFile(out))).toBe(sha(bytes))
  await restart(killed)
}, 120_000)
