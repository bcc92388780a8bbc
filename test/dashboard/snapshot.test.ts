import {afterEach, describe, expect, it} from 'vitest'
import type {RepairProgress} from '../../src/master/repair-loop.js'
import {type Cached, DashboardData, FILES_SHOWN, rebuilt} from '../../src/master/dashboard/snapshot.js'
import {Drains} from '../../src/master/drain.js'
import {until} from '../master/fake-node.js'
import {testContext} from '../master/helpers.js'

const noTrouble = () => ({underReplicated: 0, stale: 0, corrupt: 0})

// The dashboard's sections built straight from the master's database (rows written by hand).

type Setup = Awaited<ReturnType<typeof testContext>>
let setup: Setup | undefined
afterEach(async () => setup?.cleanup())

/** A committed file of `chunks` chunks at version 1; replicas[i] = [node, version, sha, corrupt?] of chunk i. */
function addFile(s: Setup, name: string, committedAt: string, replicas: [string, number, string, number?][][]) {
  s.db.prepare('INSERT INTO files VALUES (?, ?, 10, ?, ?)').run(name, replicas.length * 10, replicas.length, committedAt)
  replicas.forEach((held, i) => {
    const id = `${name}-${i}`
    s.db.prepare('INSERT INTO chunk_ids VALUES (?, ?, ?)').run(name, i, id)
    s.db.prepare("INSERT INTO chunks VALUES (?, 1, 1, 10, 'good')").run(id)
    for (const [node, version, sha, corrupt] of held) {
      s.db.prepare('INSERT INTO replicas (chunk_id, node_id, version, sha256, corrupt) VALUES (?, ?, ?, ?, ?)').run(id, node, version, sha, corrupt ?? 0)
    }
  })
}

describe('DashboardData', () => {
  it('lists the most recent files first, each with its lowest count of fresh replicas on alive nodes', async () => {
    const s = (setup = await testContext({replicas: 3}))
    for (const id of ['n1', 'n2', 'n3']) s.addNode(id)
    const data = new DashboardData(s.ctx, {repairProgress: () => ({running: [], bytesRepaired: 0}), health: noTrouble, nodeState: (id: string) => new Drains(s.ctx).state(id)}, 0)
    addFile(s, 'old.mp4', '2026-01-01T00:00:00.000Z', [[['n1', 1, 'good'], ['n2', 1, 'good'], ['n3', 1, 'good']]])
    addFile(s, 'new.mp4', '2026-02-01T00:00:00.000Z', [
      [['n1', 1, 'good'], ['n2', 1, 'good'], ['n3', 1, 'good']],
      // stale (v0 < v1), corrupt (flag), wrong checksum: none counts
      [['n1', 1, 'good'], ['n2', 0, 'good'], ['n3', 1, 'good', 1]],
      [['n1', 1, 'good'], ['n2', 1, 'bad']],
    ])
    const files = data.files()
    expect(files.total).toBe(2)
    expect(files.files.map((f) => [f.name, f.chunks, f.minReplicas])).toEqual([['new.mp4', 3, 1], ['old.mp4', 1, 3]])

    s.clock.t += 11_000 // n3 falls silent: its copies stop counting
    s.nodes.heartbeat('n1', {freeBytes: 1, usedBytes: 2, chunkCount: 3})
    s.nodes.heartbeat('n2', {freeBytes: 1, usedBytes: 2, chunkCount: 3})
    s.nodes.sweep()
    expect(data.files().files.map((f) => f.minReplicas)).toEqual([1, 2])
    expect(data.nodes().map((n) => [n.id, n.state, n.usedBytes])).toEqual([['n1', 'alive', 2], ['n2', 'alive', 2], ['n3', 'dead', 0]])

    // n1 drains: its copies stop counting, so its chunks are short of R elsewhere (n3 is dead): draining
    s.nodes.drain('n1')
    expect(data.nodes().map((n) => [n.id, n.state, n.alive])).toEqual([['n1', 'draining', true], ['n2', 'alive', true], ['n3', 'dead', false]])
  })

  it(`shows at most ${FILES_SHOWN} files and says how many there are`, async () => {
    const s = (setup = await testContext())
    const data = new DashboardData(s.ctx, {repairProgress: () => ({running: [], bytesRepaired: 0}), health: noTrouble, nodeState: (id: string) => new Drains(s.ctx).state(id)}, 0)
    const insert = s.db.prepare("INSERT INTO files VALUES (?, 0, 10, 0, ?)")
    s.db.transaction(() => {
      for (let i = 0; i < FILES_SHOWN + 20; i++) insert.run(`f${String(i).padStart(4, '0')}`, new Date(1e12 + i * 1000).toISOString())
    })()
    const files = data.files()
    expect(files.total).toBe(FILES_SHOWN + 20)
    expect(files.files).toHaveLength(FILES_SHOWN)
    expect(files.files[0]!.name).toBe(`f${String(FILES_SHOWN + 19).padStart(4, '0')}`)
    expect(files.files[0]!.minReplicas).toBe(3) // no chunks: nothing missing
  })

  it('gives a file grid from the version report, and found: false for a file that is not there', async () => {
    const s = (setup = await testContext())
    for (const id of ['n1', 'n2']) s.addNode(id)
    const data = new DashboardData(s.ctx, {repairProgress: () => ({running: [], bytesRepaired: 0}), health: noTrouble, nodeState: (id: string) => new Drains(s.ctx).state(id)}, 0)
    // n2 holds v0 (stale) and v2 of an upload in flight (pending: not in the version report)
    addFile(s, 'a.mp4', '2026-01-01T00:00:00.000Z', [[['n1', 1, 'good'], ['n2', 0, 'good'], ['n2', 2, 'next']]])
    const grid = data.grid('a.mp4')
    expect(grid).toMatchObject({name: 'a.mp4', found: true, totalChunks: 1})
    expect(grid.chunks[0]!.replicas).toEqual([{node: 'n1', version: 1, state: 'fresh'}, {node: 'n2', version: 0, state: 'stale'}])
    expect(data.grid('nope.mp4')).toEqual({name: 'nope.mp4', found: false, totalChunks: 0, chunks: []})
  })

  it('rebuilds a slow section on a change, but no sooner than ten times its build time after the last build', async () => {
    let builds = 0
    const slowBuild = () => {
      builds++
      const end = performance.now() + 30 // a big file's grid
      while (performance.now() < end);
      return builds
    }
    let entry: Cached<number> = rebuilt(undefined, 'state 1', 10, slowBuild)
    entry = rebuilt(entry, 'state 1', 10, slowBuild)
    expect(builds).toBe(1) // nothing changed: cached
    const changedAt = performance.now()
    entry = rebuilt(entry, 'state 2', 10, slowBuild)
    expect([builds, entry.value]).toEqual([1, 1]) // changed, but too soon after a 30 ms build: the old value
    await until(() => (entry = rebuilt(entry, 'state 2', 10, slowBuild)).value === 2, 5000, 'the rebuild')
    expect(performance.now() - changedAt).toBeGreaterThanOrEqual(250)
    expect(rebuilt(entry, 'state 2', 10, slowBuild).value).toBe(2) // and kept
  })

  it('reports repairs in flight and the bytes repaired per second over the last 10 s', async () => {
    const s = (setup = await testContext())
    let progress: RepairProgress = {running: [], bytesRepaired: 0}
    const data = new DashboardData(s.ctx, {repairProgress: () => progress, health: noTrouble, nodeState: (id: string) => new Drains(s.ctx).state(id)}, 0)
    expect(data.repairs().bytesPerSecond).toBe(0)
    s.clock.t += 2_000
    progress = {running: [{id: 't1', source: 'n1', target: 'n4', chunks: 2, bytes: 20, startedMs: s.clock.t}], bytesRepaired: 50_000}
    expect(data.repairs()).toEqual({...progress, bytesPerSecond: 5_000})
    s.clock.t += 9_000 // the first sample (0 bytes) is 11 s old and still the window's start
    expect(data.repairs().bytesPerSecond).toBe(Math.round(50_000 / 11))
    s.clock.t += 3_000 // now the 50,000 bytes are the window's start: nothing new since
    expect(data.repairs().bytesPerSecond).toBe(0)
  })
})
