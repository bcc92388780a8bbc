import {describe, expect, it} from 'vitest'
import {findNearestNode, matchNode, measureNodes, median, pickNearest, type Probe} from '../../src/client/nearest.js'
import type {NodeSummary} from '../../src/protocol/index.js'

const node = (id: string, state: 'alive' | 'dead' = 'alive', zone = ''): NodeSummary => ({id, url: `http://${id}.test:7401`, zone, state})

/** A probe that answers from a table of RTT samples per node URL; a missing entry fails like a dead host. */
function fakeProbe(samples: Record<string, number[]>): Probe {
  const left = new Map(Object.entries(samples).map(([id, rtts]) => [`http://${id}.test:7401`, [...rtts]]))
  return async (url) => {
    const next = left.get(url)?.shift()
    if (next === undefined) throw new Error('ECONNREFUSED')
    return next
  }
}

describe('nearest node', () => {
  it('takes the median, so one slow probe does not decide', () => {
    expect(median([3, 400, 4])).toBe(4)
    expect(median([1, 2])).toBe(1.5)
    expect(median([])).toBeUndefined()
  })

  it('ranks the nodes that answered by median RTT for the master to order each chain, the picked node first', async () => {
    const nodes = [node('a', 'alive', 'eu'), node('b', 'alive', 'us'), node('c', 'alive', 'eu'), node('d')]
    const nearest = await findNearestNode(nodes, {probe: fakeProbe({a: [9, 9, 9], b: [5, 5, 5], c: [20, 20, 20]})})
    expect(nearest.byRtt).toEqual(['b', 'a', 'c']) // d never answered
    // --zone picks a near-equal node of that zone over the fastest: it leads the order
    const inZone = await findNearestNode(nodes, {zone: 'eu', probe: fakeProbe({a: [5.5, 5.5, 5.5], b: [5, 5, 5], c: [20, 20, 20]})})
    expect(inZone.byRtt).toEqual(['a', 'b', 'c'])
    expect((await findNearestNode(nodes, {override: 'c', probe: fakeProbe({})})).byRtt).toEqual([])
  })

  it('picks the lowest median RTT, ignoring an outlier', async () => {
    const nodes = [node('a'), node('b'), node('c')]
    // a has the single fastest probe but a slow median; b is steadily fast.
    const measured = await measureNodes(nodes, fakeProbe({a: [1, 90, 80], b: [5, 6, 7], c: [20, 21, 22]}))
    expect(measured.map((m) => m.rttMs)).toEqual([80, 6, 21])
    expect(pickNearest(measured)?.node.id).toBe('b')
  })

  it('stops probing a node at its first unanswered probe, keeping the samples it has', async () => {
    const calls = new Map<string, number>()
    const probe: Probe = async (url) => {
      const n = (calls.get(url) ?? 0) + 1
      calls.set(url, n)
      if (url.includes('//a.') && n === 2) throw new Error('ETIMEDOUT')
      if (url.includes('//b.')) throw new Error('ETIMEDOUT')
      return 10 * n
    }
    const measured = await measureNodes([node('a'), node('b'), node('c')], probe)
    expect(measured.map((m) => m.rttMs)).toEqual([10, undefined, 20])
    expect(Object.fromEntries([...calls].map(([url, n]) => [url.slice(7, 8), n]))).toEqual({a: 2, b: 1, c: 3})
  })

  it('skips nodes that do not answer and dead nodes', async () => {
    const nodes = [node('a', 'dead'), node('b'), node('c')]
    const nearest = await findNearestNode(nodes, {probe: fakeProbe({a: [1, 1, 1], c: [9, 9, 9]})})
    expect(nearest.node.id).toBe('c')
  })

  it('fails clearly when no alive node answers', async () => {
    await expect(findNearestNode([node('a')], {probe: fakeProbe({})})).rejects.toMatchObject({code: 'NODE_UNREACHABLE'})
    await expect(findNearestNode([node('a', 'dead')], {probe: fakeProbe({})})).rejects.toMatchObject({code: 'NO_NODES'})
  })

  it('lets --node choose by id or URL without probing', async () => {
    const nodes = [node('a'), node('b')]
    const probe: Probe = async () => {
      throw new Error('must not probe')
    }
    expect((await findNearestNode(nodes, {override: 'b', probe})).node.id).toBe('b')
    expect((await findNearestNode(nodes, {override: 'http://a.test:7401/', probe})).node.id).toBe('a')
    expect(matchNode(nodes, 'zzz')).toBeUndefined()
    await expect(findNearestNode(nodes, {override: 'zzz', probe})).rejects.toThrow(/no node matches --node zzz \(known nodes: a, b\)/)
    await expect(findNearestNode([node('a', 'dead')], {override: 'a', probe})).rejects.toThrow(/dead/)
  })

  it('--zone breaks near-ties only: within 20% (or 2 ms) of the lowest, a node of that zone wins', async () => {
    const nodes = [node('a', 'alive', 'west'), node('b', 'alive', 'east'), node('c', 'alive', 'east')]
    const rtts = (a: number, b: number, c: number) => fakeProbe({a: [a, a, a], b: [b, b, b], c: [c, c, c]})
    expect((await findNearestNode(nodes, {zone: 'east', probe: rtts(50, 58, 59)})).node.id).toBe('b') // 16% slower: a tie
    expect((await findNearestNode(nodes, {zone: 'east', probe: rtts(50, 70, 59)})).node.id).toBe('c') // the nearer of the zone
    expect((await findNearestNode(nodes, {zone: 'east', probe: rtts(50, 61, 90)})).node.id).toBe('a') // 22% slower: the measurement decides
    expect((await findNearestNode(nodes, {zone: 'east', probe: rtts(0.4, 1.9, 9)})).node.id).toBe('b') // LAN: within 2 ms
    expect((await findNearestNode(nodes, {zone: 'north', probe: rtts(50, 58, 59)})).node.id).toBe('a') // no such zone
    expect((await findNearestNode(nodes, {probe: rtts(50, 58, 59)})).node.id).toBe('a')
  })
})
