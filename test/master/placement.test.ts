import {describe, expect, it} from 'vitest'
import {placeChunk, type PlacementCandidate} from '../../src/master/placement.js'

const node = (id: string, zone: string, freeBytes = 1000): PlacementCandidate => ({id, zone, freeBytes})
const ids = (placed: PlacementCandidate[]) => placed.map((n) => n.id)

describe('placeChunk', () => {
  it('picks R distinct nodes, one per zone before reusing a zone, most free bytes first', () => {
    const candidates = [node('a', 'eu', 900), node('b', 'eu', 1000), node('c', 'us', 500), node('d', 'ap', 100)]
    expect(ids(placeChunk({candidates, size: 10, replicas: 3, minReplicas: 2}))).toEqual(['b', 'c', 'd'])
  })

  it('gives the entry node no copy for being near: it leads the chain when balance chose it, else a node in its zone does', () => {
    const candidates = [node('a', 'eu', 900), node('b', 'eu', 1000), node('c', 'us', 500)]
    expect(ids(placeChunk({candidates, size: 10, replicas: 2, minReplicas: 1, entryNode: 'a'}))).toEqual(['b', 'c']) // b: same zone as a
    expect(ids(placeChunk({candidates, size: 10, replicas: 2, minReplicas: 1, entryNode: 'c'}))).toEqual(['c', 'b']) // chosen: first
    expect(ids(placeChunk({candidates, size: 10, replicas: 2, minReplicas: 1, entryNode: 'a', exclude: ['a']}))).toEqual(['b', 'c'])
  })

  it("starts each chain at the chosen node nearest the writer by the round trips it measured", () => {
    const candidates = [node('a', 'eu', 900), node('b', 'eu', 1000), node('c', 'us', 500), node('d', 'ap', 100)]
    // balance chooses b, c, d whatever the writer measured; only their order follows the round trips
    expect(ids(placeChunk({candidates, size: 10, replicas: 3, minReplicas: 2, byRtt: ['a', 'd', 'b', 'c']}))).toEqual(['d', 'b', 'c'])
    expect(ids(placeChunk({candidates, size: 10, replicas: 3, minReplicas: 2, byRtt: ['c'], entryNode: 'c'}))).toEqual(['c', 'b', 'd'])
    // nodes the writer did not measure come after, by the entry node's zone
    expect(ids(placeChunk({candidates, size: 10, replicas: 3, minReplicas: 2, byRtt: ['d'], entryNode: 'a'}))).toEqual(['d', 'b', 'c'])
  })

  it('prefers the least full node over the one with the most free bytes', () => {
    const candidates = [{...node('big', 'z', 5000), usedBytes: 5000}, {...node('small', 'z', 900), usedBytes: 100}]
    expect(ids(placeChunk({candidates, size: 10, replicas: 1, minReplicas: 1}))).toEqual(['small'])
  })

  it('never places on excluded nodes or nodes without room', () => {
    const candidates = [node('a', 'eu', 5), node('b', 'eu', 1000), node('c', 'us', 500)]
    expect(ids(placeChunk({candidates, size: 10, replicas: 3, minReplicas: 1, exclude: ['c']}))).toEqual(['b'])
  })

  it('places on what there is between W and R nodes', () => {
    const candidates = [node('a', 'eu'), node('b', 'us')]
    expect(placeChunk({candidates, size: 10, replicas: 3, minReplicas: 2})).toHaveLength(2)
  })

  it('refuses with NO_NODES and a message saying what to do when fewer than W nodes are eligible', () => {
    const attempt = () => placeChunk({candidates: [node('a', 'eu')], size: 10, replicas: 3, minReplicas: 2})
    expect(attempt).toThrow(expect.objectContaining({code: 'NO_NODES'}))
    expect(attempt).toThrow('only 1 node is alive; 2 are needed (W): start more nodes or lower --min-replicas')
  })

  it('spreads a big file when the planner subtracts what it placed', () => {
    const candidates = [node('a', 'z', 100), node('b', 'z', 100), node('c', 'z', 100), node('d', 'z', 100)]
    const counts = new Map<string, number>()
    for (let i = 0; i < 8; i++) {
      for (const placed of placeChunk({candidates, size: 10, replicas: 1, minReplicas: 1})) {
        placed.freeBytes -= 10
        counts.set(placed.id, (counts.get(placed.id) ?? 0) + 1)
      }
    }
    expect([...counts.values()]).toEqual([2, 2, 2, 2])
  })
})
