import {createHash, randomBytes} from 'node:crypto'
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import Database from 'better-sqlite3'
import pgDriver from 'pg'
import {afterAll, beforeAll, expect, it} from 'vitest'
import type {PostgresServer} from '../../scripts/postgres-server.mjs'
import {MasterHealth, StatusDoc} from '../../src/protocol/index.js'
import {killAll, runCli, spawnCli, TOKEN, waitFor, type Daemon} from './harness.js'
import {type MasterPair, startMasterPair} from './master-pair.js'

// Issue 15: two masters on one PostgreSQL. kill -9 the leader: the standby leads, an upload carries
// on (or succeeds when run again), committed files read back identical, versions keep rising, the
// old leader comes back as a standby. SIGSTOP the leader: the standby leads, never two at once, the
// paused one hands out nothing when it wakes, and nodes refuse its grants. A standby keeps its
// working copy current from the leader's writes, so it takes over without loading everything; one
// started after the change log was trimmed loads everything while it stands by.
const MiB = 1024 * 1024
const NODE_TIMEOUT_MS = 2000
let pg: PostgresServer
let dir: {path: string; remove: () => Promise<void>}
const masters: Daemon[] = []
const nodes: Daemon[] = []
let env: Record<string, string>
let startMaster: MasterPair['startMaster']

// A paused master does not answer: each ask gives up after a second (the poller counts it as no answer).
const health = async (master: Daemon) => MasterHealth.parse(await (await fetch(`${master.url}/healthz`, {signal: AbortSignal.timeout(1000)})).json())
const role = async (master: Daemon) => (await health(master).catch(() => undefined))?.role
const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex')
/** Every file committed so far, as uploaded. */
const committed = new Map<string, Buffer>()

/** Whether master i's working copy (its local SQLite) holds the committed file `name`. */
function copyHolds(i: number, name: string): boolean {
  const copy = new Database(join(dir.path, `master${i}`, 'master.sqlite'), {readonly: true, fileMustExist: true})
  try {
    return copy.prepare('SELECT 1 FROM files WHERE name = ?').get(name) !== undefined
  } finally {
    copy.close()
  }
}

async function uploadNew(name: string, bytes: Buffer): Promise<void> {
  const path = join(dir.path, name)
  await writeFile(path, bytes)
  const result = await runCli(['upload', path, '--chunk-size', '1MiB', '--json'], env)
  expect(result.code, result.stderr).toBe(0)
  committed.set(name, bytes)
}

async function downloadsIdentical(): Promise<void> {
  for (const [name, bytes] of committed) {
    const out = join(dir.path, `${name}.copy`)
    const down = await runCli(['download', name, '-o', out], env)
    expect(down.code, down.stderr).toBe(0)
    expect(sha(await readFile(out)), name).toBe(sha(bytes))
  }
}

async function status(name?: string) {
  const result = await runCli(['status', ...(name ? [name] : []), '--json'], env)
  if (result.code !== 0) throw new Error(`status exited ${result.code}: ${result.stderr}`)
  return StatusDoc.parse(JSON.parse(result.stdout))
}

beforeAll(async () => {
  ;({pg, dir, env, startMaster} = await startMasterPair({nodeTimeoutMs: NODE_TIMEOUT_MS, masters, nodes}))
  await waitFor('three nodes alive', async () => (await status()).summary.aliveNodes === 3)
}, 90_000)

afterAll(async () => {
  await killAll()
  await pg?.destroy()
  await dir?.remove()
})

it('a standby answers where the leader is and refuses the rest with that hint', async () => {
  expect(await health(masters[1]!)).toEqual({ok: true, role: 'standby', epoch: expect.any(Number), leader: masters[0]!.url})
  const refused = await fetch(`${masters[1]!.url}/api/status`, {headers: {authorization: `Bearer ${TOKEN}`}})
  expect(refused.status).toBe(503)
  expect(((await refused.json()) as {error: {code: string; message: string}}).error).toEqual({code: 'NOT_LEADER', message: `this master is a standby: the leader is ${masters[0]!.url}`})
})

it('kill -9 of the leader: the standby leads, uploads carry on, nothing committed is lost, versions rise', async () => {
  const first = join(dir.path, 'first.bin')
  const firstBytes = randomBytes(2 * MiB + 5)
  await writeFile(first, firstBytes)
  const upload = (file: string) => runCli(['upload', file, '--chunk-size', '1MiB', '--json'], env)
  expect((await upload(first)).code).toBe(0)
  committed.set('first.bin', firstBytes)
  const before = (await status('first.bin')).files[0]!
  await waitFor("the standby's working copy to hold first.bin before any takeover", async () => copyHolds(1, 'first.bin'))

  const second = join(dir.path, 'second.bin')
  const secondBytes = randomBytes(6 * MiB)
  await writeFile(second, secondBytes)
  const running = spawnCli(['upload', second, '--chunk-size', '1MiB', '--json'], env)
  await new Promise((r) => setTimeout(r, 300)) // let it start: plan, and maybe some chunks
  const epochBefore = (await health(masters[0]!)).epoch
  const killedAt = Date.now()
  await masters[0]!.kill9()
  await waitFor('the standby to lead', async () => (await role(masters[1]!)) === 'leader', 30_000)
  const tookOverMs = Date.now() - killedAt
  console.log(`kill -9 of the leader: the standby led after ${tookOverMs} ms (node timeout ${NODE_TIMEOUT_MS} ms)`)
  expect(tookOverMs).toBeLessThan(NODE_TIMEOUT_MS + 8000)
  expect((await health(masters[1]!)).epoch).toBeGreaterThan(epochBefore)
  expect(masters[1]!.output()).toMatch(/leading \(epoch \d+\): applied \d+ changes the standby had not seen yet/)

  const result = await running.result
  const retried = result.code === 0 ? result : await upload(second) // a running upload may have to be run again
  expect(retried.code, retried.stderr).toBe(0)
  committed.set('second.bin', secondBytes)
  console.log(`the upload running through the kill ${result.code === 0 ? 'finished by itself' : `failed (${result.stderr.trim().split('\n').pop()}) and succeeded when run again`}`)

  await downloadsIdentical()
  expect((await status('first.bin')).files[0]!.chunks.map((c) => c.version)).toEqual(before.chunks.map((c) => c.version))
  firstBytes[10] = firstBytes[10]! ^ 1
  await writeFile(first, firstBytes)
  expect((await upload(first)).code).toBe(0)
  committed.set('first.bin', Buffer.from(firstBytes))
  expect((await status('first.bin')).files[0]!.chunks[0]!.version).toBeGreaterThan(before.chunks[0]!.version)

  await startMaster(0, new URL(masters[0]!.url).port)
  await waitFor('the old leader back as a standby that names the new leader', async () => {
    const h = await health(masters[0]!)
    return h.role === 'standby' && h.leader === masters[1]!.url
  })
}, 120_000)

it('SIGSTOP of the leader: the standby leads, never two leaders, the paused one hands out nothing after SIGCONT and nodes refuse its grants', async () => {
  const [standby, leader] = [masters[0]!, masters[1]!]
  expect(await role(leader)).toBe('leader')
  // A grant from the leader before it pauses, to show to a node afterwards.
  const bytes = randomBytes(1000)
  const planned = await fetch(`${leader.url}/api/uploads`, {
    method: 'POST',
    headers: {authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json'},
    body: JSON.stringify({name: 'paused.bin', size: bytes.length, chunkSize: MiB, chunks: [{index: 0, size: bytes.length, sha256: sha(bytes)}]}),
  })
  expect(planned.status).toBe(200)
  const oldChunk = ((await planned.json()) as {chunks: {chunkId: string; version: number; grant: string; targets: {url: string}[]}[]}).chunks[0]!

  let bothLeading = 0
  let bothAnswered = 0 // polls where both masters answered: a moment when two leaders would have shown
  let polling = true
  const poller = (async () => {
    while (polling) {
      const [a, b] = await Promise.all([role(standby), role(leader)])
      if (a !== undefined && b !== undefined) bothAnswered++
      if (a === 'leader' && b === 'leader') bothLeading++
      await new Promise((r) => setTimeout(r, 50))
    }
  })()

  const pausedAt = Date.now()
  let late: Promise<Response> | undefined
  leader.child.kill('SIGSTOP')
  try {
    await waitFor('the standby to lead', async () => (await role(standby)) === 'leader', 30_000)
    console.log(`SIGSTOP of the leader: the standby led after ${Date.now() - pausedAt} ms (node timeout ${NODE_TIMEOUT_MS} ms)`)
    // Sent while it is paused: the kernel queues it, the master reads it when it wakes.
    late = fetch(`${leader.url}/api/uploads`, {
      method: 'POST',
      headers: {authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json'},
      body: JSON.stringify({name: 'late.bin', size: 5, chunkSize: MiB, chunks: [{index: 0, size: 5, sha256: 'd'.repeat(64)}]}),
    })
    const nodesBack = Date.now()
    await waitFor('the nodes to link to the new leader', async () => (await status()).summary.aliveNodes === 3, 40_000)
    console.log(`nodes linked to the new leader ${Date.now() - pausedAt} ms after the pause (${Date.now() - nodesBack} ms after it led)`)
  } finally {
    leader.child.kill('SIGCONT')
  }
  // It answers NOT_LEADER, or its edge timeouts cut the request that waited through the pause: either way no plan.
  const answer = await late!.catch((err: Error) => err)
  if (answer instanceof Response) {
    expect(answer.status).toBe(503)
    expect(((await answer.json()) as {error: {code: string}}).error.code).toBe('NOT_LEADER')
  } else {
    expect(answer.message).toBe('fetch failed')
  }
  await waitFor('the woken master to stand by', async () => (await role(leader)) === 'standby', 20_000)
  // The poller must have seen both masters answer after the wake (a poll that waited on the paused one
  // takes its 1 s timeout, and a quick failover leaves few polls in all).
  const answeredBeforeWake = bothAnswered
  await waitFor('the poller to see both masters answer after the wake', async () => bothAnswered > answeredBeforeWake, 10_000)
  polling = false
  await poller
  expect(bothLeading).toBe(0)
  // Nothing of the late plan was recorded: the new leader hands out late.bin's first version as 1.
  const fresh = await fetch(`${standby.url}/api/uploads`, {
    method: 'POST',
    headers: {authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json'},
    body: JSON.stringify({name: 'late.bin', size: 5, chunkSize: MiB, chunks: [{index: 0, size: 5, sha256: 'd'.repeat(64)}]}),
  })
  expect(((await fresh.json()) as {chunks: {version: number}[]}).chunks[0]!.version).toBe(1)

  // The node now knows the new epoch: the old leader's grant is refused.
  const put = await fetch(`${oldChunk.targets[0]!.url}/chunks/${oldChunk.chunkId}/${oldChunk.version}`, {
    method: 'PUT',
    headers: {authorization: `Bearer ${TOKEN}`, 'x-chunky-grant': oldChunk.grant, 'content-length': String(bytes.length)},
    body: bytes,
  })
  expect(put.status).toBe(409)
  expect(((await put.json()) as {error: {code: string}}).error.code).toBe('STALE_LEADER')
}, 120_000)

it('a standby started after the change log was trimmed loads everything, follows on, and takes over with every file', async () => {
  const [leader, standby] = [masters[0]!, masters[1]!]
  expect(await role(leader)).toBe('leader')
  await standby.stop()
  await uploadNew('third.bin', randomBytes(3 * MiB + 1))
  const admin = new pgDriver.Client({connectionString: pg.url})
  await admin.connect()
  try {
    await admin.query('DELETE FROM chunky_changes') // what the leader's trim does once writes are old enough
  } finally {
    await admin.end()
  }
  const restarted = await startMaster(1, new URL(standby.url).port)
  await waitFor('the restarted master to stand by', async () => (await role(restarted)) === 'standby')
  await waitFor('its working copy to hold third.bin (loaded whole while standing by)', async () => copyHolds(1, 'third.bin'), 30_000)
  await uploadNew('fourth.bin', randomBytes(MiB + 7))
  await waitFor('its working copy to hold fourth.bin (from the change log)', async () => copyHolds(1, 'fourth.bin'))

  await leader.kill9()
  await waitFor('the restarted standby to lead', async () => (await role(restarted)) === 'leader', 30_000)
  expect(restarted.output()).toMatch(/leading \(epoch \d+\): applied \d+ changes the standby had not seen yet/)
  await waitFor('three nodes alive', async () => (await status()).summary.aliveNodes === 3, 40_000)
  await downloadsIdentical()
}, 120_000)
