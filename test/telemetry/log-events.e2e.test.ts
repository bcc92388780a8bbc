import {randomBytes} from 'node:crypto'
import {writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, expect, it} from 'vitest'
import {parseLogLine} from '../../src/util/log.js'
import {killAll, runCli, startCluster, waitFor, type Cluster, type Daemon} from '../e2e/harness.js'

// Issue 7, logs: the daemons' stdout (not a terminal here) is the `listening on` line, then one JSON
// record per line. A stale-chunk repair (node down, file changed, node back) shows up in the master's
// log as the sequence of decisions, each one line with an `event` and the ids involved.
const MiB = 1024 * 1024
let cluster: Cluster

type LogRecord = Record<string, unknown> & {event: string; msg: string; level: string}

/** The JSON records a daemon printed after its `listening on` line; every such line must be one. */
function records(daemon: Daemon): LogRecord[] {
  const lines = daemon.output().split('\n')
  const start = lines.findIndex((line) => line.startsWith('listening on '))
  expect(start).toBeGreaterThanOrEqual(0)
  return lines
    .slice(start + 1)
    .filter((line) => line.startsWith('{')) // stderr is mixed in; it stays empty unless something breaks
    .map((line) => {
      const record = parseLogLine(line)
      expect(record, line).toBeDefined()
      expect(typeof record!.event, line).toBe('string')
      expect(typeof record!.msg, line).toBe('string')
      expect(typeof record!.time, line).toBe('string')
      return record as LogRecord
    })
}

/** Finds each expected record after the previous one; fails naming the first that is missing. */
function expectInOrder(log: LogRecord[], expected: [string, Record<string, unknown>][]): number[] {
  const found: number[] = []
  let from = 0
  for (const [event, fields] of expected) {
    const at = log.findIndex((r, i) => i >= from && r.event === event && Object.entries(fields).every(([k, v]) => JSON.stringify(r[k]) === JSON.stringify(v)))
    expect(at, `${event} ${JSON.stringify(fields)} after record ${from} in:\n${log.map((r) => `${r.event} ${r.msg}`).join('\n')}`).toBeGreaterThanOrEqual(0)
    found.push(at)
    from = at + 1
  }
  return found
}

beforeAll(async () => {
  cluster = await startCluster({nodes: 3, replicas: 3, masterArgs: ['--log-level', 'debug']})
})

afterAll(async () => {
  await cluster?.close()
  await killAll()
})

it('logs a stale-chunk repair: node.dead, version.handed_out, upload.committed, node.back, chunk.stale, delete.sent; repair.started, repair.finished', async () => {
  const file = join(cluster.dir, 'clip.bin')
  const original = randomBytes(3 * MiB + 100) // 4 chunks of 1 MiB
  await writeFile(file, original)
  const upload = () => runCli(['upload', file, '--name', 'clip.bin', '--chunk-size', '1MiB', '--json'], cluster.env)
  expect((await upload()).code).toBe(0)
  const chunk1 = (await cluster.status('clip.bin')).files[0]!.chunks[1]!

  await cluster.nodes.get('n3')!.stop()
  await waitFor('the master to log n3 dead', () => records(cluster.master).some((r) => r.event === 'node.dead' && r.nodeId === 'n3'), 15_000)
  const changed = Buffer.from(original)
  changed.fill(9, MiB + 10, MiB + 20) // bytes inside chunk 1 only
  await writeFile(file, changed)
  expect((await upload()).code).toBe(0)

  await cluster.startNode('n3')
  await waitFor('the repair onto n3 to finish', () => records(cluster.master).some((r) => r.event === 'repair.finished' && r.target === 'n3'), 30_000)

  const log = records(cluster.master)
  const id = chunk1.id
  const [, handedOut, committed, back] = expectInOrder(log, [
    ['node.dead', {nodeId: 'n3'}],
    ['version.handed_out', {count: 1, skipped: 3}],
    ['upload.committed', {name: 'clip.bin', changedChunks: 1}],
    ['node.back', {nodeId: 'n3'}],
    ['chunk.stale', {nodeId: 'n3', chunkId: id, version: 1, committedVersion: 2}],
    ['delete.sent', {nodeId: 'n3', reasons: {stale: 1}}],
  ])
  // The copy to n3 may start before or after its report is judged: the repair loop sees n3 usable and
  // short of version 2 as soon as it is back (both orders were seen).
  expectInOrder(log.slice(back), [
    ['repair.started', {target: 'n3', chunks: [{chunkId: id, version: 2}]}],
    ['repair.finished', {target: 'n3', chunks: 1, failed: 0}],
  ])
  expect(log[handedOut!]!.chunks).toEqual([{index: 1, chunkId: id, version: 2}])
  expect(log[handedOut!]!.uploadId).toBe(log[committed!]!.uploadId)
  expect(log[committed!]!.bytes).toBe(MiB)
  const deleteSent = log.findIndex((r, i) => i > back! && r.event === 'delete.sent' && r.nodeId === 'n3')
  expect(log[deleteSent]!.chunks).toEqual([{chunkId: id, version: 1, reason: 'stale'}])
  await waitFor('n3 to confirm the delete (a debug line)', () =>
    records(cluster.master).some((r, i) => i > deleteSent && r.event === 'delete.confirmed' && r.nodeId === 'n3' && r.chunkId === id && r.level === 'debug'),
  )
  const finished = log.find((r) => r.event === 'repair.finished' && r.target === 'n3')!
  expect(finished.bytes).toBe(MiB)
  expect(typeof finished.ms).toBe('number')

  // The nodes' side: the stale copy deleted on n3, the new version stored on n1.
  const n3 = records(cluster.nodes.get('n3')!)
  expectInOrder(n3, [
    ['master.connected', {}],
    ['chunk.deleted', {chunkId: id, version: 1, reason: 'stale'}],
  ])
  expect(records(cluster.nodes.get('n1')!).some((r) => r.event === 'chunk.stored' && r.chunkId === id && r.version === 2)).toBe(true)
  // info is the default level: the nodes print no debug lines.
  expect(n3.every((r) => r.level !== 'debug')).toBe(true)
})
