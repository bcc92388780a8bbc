import {describe, expect, it} from 'vitest'
import {planExcess, planReplication, type RepairChunk, type RepairNode} from '../../src/master/repair.js'

const node = (id: string, zone: string, freeBytes = 1000, state: 'usable' | 'dead' | 'unlinked' = 'usable'): RepairNode => ({
  id, zone, freeBytes, alive: state !== 'dead', usable: state === 'usable',
})
const chunk = (n: number, holders: string[], extra: Partial<RepairChunk> = {}): RepairChunk => ({
  chunkId: n.toString(16).padStart(24, '0'),
  version: 2,
  size: 10,
  sha256: 'a'.repeat(64),
  replicas: holders.map((nodeId) => ({nodeId, version: 2, state: 'fresh' as const})),
  ...extra,
})
const plan = (chunks: RepairChunk[], nodes: RepairNode[], more: {running?: Map<string, number>; busy?: Set<string>; R?: number} = {}) =>
  planReplication({chunks, nodes, replicas: more.R ?? 3, running: more.running ?? new Map(), busyChunks: more.busy ?? new Set()})

describe('planReplication', () => {
  it('does not count a draining node\'s copies toward R nor copy onto it, but copies from it', () => {
    const draining = {...node('a', 'z1'), draining: true}
    const nodes = [draining, node('b', 'z2'), node('c', 'z3'), node('d', 'z4')]
    // held on a (draining) and b: one copy counts, so with R=2 one more goes to c or d, never to a
    const {tasks} = plan([chunk(1, ['a', 'b'])], nodes, {R: 2})
    expect(tasks.flatMap((t) => t.replicas)).toHaveLength(1)
    expect(['c', 'd']).toContain(tasks[0]!.target)
    // held only on the draining node: it is the source, not "nothing to copy from"
    const only = plan([chunk(2, ['a'])], nodes, {R: 2})
    expect(only.unrepairable).toEqual([])
    expect(only.tasks.map((t) => t.source)).toEqual(['a', 'a'])
    const targets = only.tasks.map((t) => t.target)
    expect(new Set(targets).size).toBe(2)
    expect(targets).not.toContain('a')
  })

  it('copies an under-replicated chunk from a fresh holder to a node on a new zone with the most room', () => {
    const nodes = [node('a', 'z1'), node('b', 'z2'), node('c', 'z1', 5000), node('d', 'z3', 100), node('x', 'z1', 9000, 'dead')]
    const {tasks} = plan([chunk(1, ['a', 'b', 'x'])], nodes)
    expect(tasks).toHaveLength(1)
    expect(tasks[0]).toMatchObject({target: 'd'}) // zone z3 is new for this chunk, even with less room than c
    expect(['a', 'b']).toContain(tasks[0]!.source)
    expect(tasks[0]!.replicas).toEqual([{chunkId: chunk(1, []).chunkId, version: 2, size: 10, sha256: 'a'.repeat(64)}])
  })

  it('does not count stale or corrupt replicas, and never targets a node holding the chunk at that version', () => {
    const nodes = [node('a', 'z1'), node('b', 'z2'), node('c', 'z3')]
    const c = chunk(1, ['a'], {
      replicas: [
        {nodeId: 'a', version: 2, state: 'fresh'},
        {nodeId: 'b', version: 2, state: 'corrupt'}, // delete pending: not a target yet
        {nodeId: 'c', version: 1, state: 'stale'}, // stale: a fine target
      ],
    })
    const {tasks} = plan([c], nodes)
    expect(tasks.map((t) => [t.source, t.target])).toEqual([['a', 'c']])
  })

  it('repairs the chunks with the fewest fresh copies first and caps transfers per node', () => {
    const nodes = [node('a', 'z1'), node('b', 'z2'), node('c', 'z3'), node('d', 'z4')]
    const chunks = [chunk(1, ['a', 'b']), chunk(2, ['a']), chunk(3, ['c'])]
    const {tasks} = plan(chunks, nodes, {running: new Map([['a', 2]])}) // a is saturated: it cannot be a source now
    const planned = tasks.flatMap((t) => t.replicas.map((r) => parseInt(r.chunkId, 16)))
    expect(planned).toContain(3)
    expect(planned).toContain(1)
    expect(planned).not.toContain(2) // its only source is busy
    expect(tasks.every((t) => t.source !== 'a' && t.target !== 'a')).toBe(true)
    const perNode = new Map<string, number>()
    for (const t of tasks) for (const id of [t.source, t.target]) perNode.set(id, (perNode.get(id) ?? 0) + 1)
    expect(Math.max(...perNode.values())).toBeLessThanOrEqual(2)
  })

  it('groups many chunks between the same two nodes into transfers of at most 64', () => {
    const nodes = [node('a', 'z1', 1e9), node('b', 'z2', 1e9)]
    const chunks = Array.from({length: 100}, (_, i) => chunk(i + 1, ['a']))
    const {tasks} = plan(chunks, nodes, {R: 2})
    expect(tasks.map((t) => [t.source, t.target, t.replicas.length])).toEqual([['a', 'b', 64], ['a', 'b', 36]])
  })

  it('skips chunks already in a running transfer, and reports chunks with no fresh replica on an alive node', () => {
    const nodes = [node('a', 'z1'), node('b', 'z2'), node('x', 'z3', 1000, 'dead')]
    const busy = chunk(1, ['a'])
    const lost = chunk(2, ['x'])
    const result = plan([busy, lost], nodes, {busy: new Set([`${busy.chunkId}.${busy.version}`])})
    expect(result.tasks).toEqual([])
    expect(result.unrepairable).toEqual([lost.chunkId])
  })

  it('does not pair a source and target that are blocked, and takes another source instead', () => {
    const nodes = [node('a', 'z1'), node('b', 'z2'), node('c', 'z3')]
    const c = chunk(1, ['a', 'b'])
    const {tasks} = planReplication({chunks: [c], nodes, replicas: 3, running: new Map(), busyChunks: new Set(), blocked: (s, t) => s === 'a' && t === 'c'})
    expect(tasks.map((t) => [t.source, t.target])).toEqual([['b', 'c']])
    const none = planReplication({chunks: [c], nodes, replicas: 3, running: new Map(), busyChunks: new Set(), blocked: () => true})
    expect(none.tasks).toEqual([])
  })

  it('a newer version of a chunk in a running transfer is not blocked by the older one', () => {
    const nodes = [node('a', 'z1'), node('b', 'z2')]
    const c = chunk(1, ['a'])
    const {tasks} = plan([c], nodes, {R: 2, busy: new Set([`${c.chunkId}.1`])})
    expect(tasks).toHaveLength(1)
  })
})

describe('planExcess', () => {
  it('keeps a draining node\'s copies: they do not count, so R others are not a surplus', () => {
    const nodes = [{...node('a', 'z1'), draining: true}, node('b', 'z2'), node('c', 'z3')]
    expect(planExcess([chunk(1, ['a', 'b', 'c'])], nodes, 2)).toEqual([])
    // taken back: three counting copies for R=2, one goes (not necessarily a's)
    expect(planExcess([chunk(1, ['a', 'b', 'c'])], nodes.map((n) => ({...n, draining: false})), 2)).toHaveLength(1)
  })

  it('trims fresh replicas beyond R from the fullest usable holders', () => {
    const nodes = [node('a', 'z1', 100), node('b', 'z1', 50), node('c', 'z1', 900), node('d', 'z1', 10, 'unlinked'), node('e', 'z1', 500)]
    const deletes = planExcess([chunk(1, ['a', 'b', 'c', 'd', 'e'])], nodes, 3)
    expect(deletes.map((d) => d.nodeId)).toEqual(['b', 'a']) // d is fullest but has no link to take the command
    expect(planExcess([chunk(1, ['a', 'b', 'c'])], nodes, 3)).toEqual([])
  })

  it('keeps the widest zone spread: a zone\'s last copy goes only when every zone holds one', () => {
    // the fullest holders a and b are the only copies on z1 and z2; the three on z3 have the most room
    const nodes = [node('a', 'z1', 10), node('b', 'z2', 20), node('c', 'z3', 900), node('d', 'z3', 800), node('e', 'z3', 700)]
    const deletes = planExcess([chunk(1, ['a', 'b', 'c', 'd', 'e'])], nodes, 3)
    expect(deletes.map((d) => d.nodeId)).toEqual(['e', 'd']) // fullest first within z3; a, b and c stay
    // equal free space everywhere: still one copy per zone survives, not the lowest ids
    const even = [node('n1', 'z0'), node('n2', 'z0'), node('n3', 'z0'), node('n4', 'z1'), node('n5', 'z2')]
    const kept = new Set(['n1', 'n2', 'n3', 'n4', 'n5'])
    for (const d of planExcess([chunk(2, [...kept])], even, 3)) kept.delete(d.nodeId)
    expect(kept.size).toBe(3)
    expect(new Set([...kept].map((id) => even.find((n) => n.id === id)!.zone))).toEqual(new Set(['z0', 'z1', 'z2']))
  })

  it('trims the node a chunk moved away from first, even its zone\'s only copy (the rebalancer\'s move)', () => {
    const nodes = [node('a', 'z1', 900), node('b', 'z2'), node('c', 'z3'), node('d', 'z3', 10)]
    const moved = (from: string) => new Map([[chunk(1, []).chunkId, from]])
    expect(planExcess([chunk(1, ['a', 'b', 'c', 'd'])], nodes, 3, moved('a')).map((d) => d.nodeId)).toEqual(['a'])
    // without a move, z1's only copy stays and the surplus comes off z3 (its fullest node, d)
    expect(planExcess([chunk(1, ['a', 'b', 'c', 'd'])], nodes, 3).map((d) => d.nodeId)).toEqual(['d'])
  })
})
