import {randomBytes} from 'node:crypto'
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, expect, it} from 'vitest'
import {killAll, runCli, startCluster, TOKEN, waitFor, type Cluster} from './harness.js'

// Issue 3 / invariants 1, 2 and 6: `kill -9` the master and restart it on the same data: nodes come
// back by themselves, nothing committed is lost, and versions keep rising (never handed out twice).
const MiB = 1024 * 1024
let cluster: Cluster

beforeAll(async () => {
  cluster = await startCluster({nodes: 3, replicas: 3})
})

afterAll(async () => {
  await cluster?.close()
  await killAll()
})

it('loses nothing committed and keeps versions rising across a kill -9 of the master', async () => {
  const file = join(cluster.dir, 'talk.bin')
  const bytes = randomBytes(2 * MiB + 5)
  await writeFile(file, bytes)
  const upload = (args: string[] = []) => runCli(['upload', file, '--chunk-size', '1MiB', '--json', ...args], cluster.env)
  expect((await upload()).code).toBe(0)
  bytes[10] = bytes[10]! ^ 1
  await writeFile(file, bytes)
  expect((await upload()).code).toBe(0) // chunk 0 is now at version 2
  const before = (await cluster.status('talk.bin')).files[0]!
  expect(before.chunks[0]!.version).toBe(2)

  // A version handed out just before the crash, for an upload that never commits, must not come back.
  const plan = await fetch(`${cluster.master.url}/api/uploads`, {
    method: 'POST',
    headers: {authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json'},
    body: JSON.stringify({name: 'talk.bin', size: 5, chunkSize: MiB, chunks: [{index: 0, size: 5, sha256: 'c'.repeat(64)}]}),
  })
  expect(plan.status).toBe(200)
  const handedOut = ((await plan.json()) as {chunks: {version: number}[]}).chunks[0]!.version
  expect(handedOut).toBe(3)

  await cluster.master.kill9()
  await cluster.restartMaster()
  const back = await waitFor('all three nodes back and reported', async () => {
    const status = await cluster.status('talk.bin')
    return status.summary.aliveNodes === 3 && status.summary.underReplicated === 0 && status
  })
  expect(back.files[0]!.chunks).toEqual(before.chunks.map((c) => expect.objectContaining({id: c.id, version: c.version, sha256: c.sha256})))

  const output = join(cluster.dir, 'talk.copy')
  const down = await runCli(['download', 'talk.bin', '-o', output], cluster.env)
  expect(down.code, down.stderr).toBe(0)
  expect((await readFile(output)).equals(bytes)).toBe(true)

  bytes[20] = bytes[20]! ^ 1 // change chunk 0 again
  await writeFile(file, bytes)
  const third = await upload()
  expect(third.code, third.stderr).toBe(0)
  const after = (await cluster.status('talk.bin')).files[0]!
  expect(after.chunks[0]!.version).toBe(4) // 3 went to the upload that never committed
  expect(after.chunks.slice(1).map((c) => c.version)).toEqual(before.chunks.slice(1).map((c) => c.version))
})
