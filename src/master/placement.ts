import {ChunkyError} from '../protocol/index.js'
import {compareText} from '../util/compare.js'

export interface PlacementCandidate {
  id: string
  zone: string
  /** Free bytes as the planner sees them now (it subtracts what it already placed). */
  freeBytes: number
  /** Bytes of chunks held (the planner adds what it placed); with freeBytes, how full the node is. */
  usedBytes?: number
}

export interface PlacementRequest {
  /** Alive nodes with an open link. */
  candidates: readonly PlacementCandidate[]
  size: number
  replicas: number
  minReplicas: number
  entryNode?: string
  /** The writer's nodes by measured round trip, nearest first: the chain starts at the nearest chosen one. */
  byRtt?: readonly string[]
  exclude?: readonly string[]
}

/**
 * Chooses the nodes for one chunk, for balance, and orders them as a chain starting near the writer.
 * Up to R distinct nodes with room for it and not excluded: nodes on zones this chunk does not use yet
 * first, then the least full (used ÷ (used + free)), then the most free bytes. The writer's nearest node
 * (entryNode) gets no copy for being near, or one site's node would hold everything uploaded there
 * while the rest sit empty; the chain starts at the chosen node nearest the writer (by the round trips
 * it measured, else the entry node when chosen, else a chosen node in its zone), and the writer sends
 * to the first (it forwards down the chain). Fewer than W such nodes is
 * NO_NODES; between W and R it places on what there is and the repair loop fills the rest later.
 */
export function placeChunk(request: PlacementRequest): PlacementCandidate[] {
  const excluded = new Set(request.exclude ?? [])
  const notExcluded = request.candidates.filter((node) => !excluded.has(node.id))
  const eligible = notExcluded.filter((node) => node.freeBytes >= request.size)
  if (eligible.length < request.minReplicas) {
    const which = [excluded.size > 0 ? 'not excluded' : '', eligible.length < notExcluded.length ? 'with room for the chunk' : '']
    throw noNodes(eligible.length, request.minReplicas, which.filter(Boolean).join(' and '))
  }

  const chosen: PlacementCandidate[] = []
  const usedZones = new Set<string>()
  while (chosen.length < request.replicas) {
    const rest = eligible.filter((node) => !chosen.includes(node))
    if (rest.length === 0) break
    rest.sort((a, b) => zoneRank(a) - zoneRank(b) || fill(a) - fill(b) || b.freeBytes - a.freeBytes || compareText(a.id, b.id))
    chosen.push(rest[0]!)
    usedZones.add(rest[0]!.zone)
  }
  const entry = request.candidates.find((node) => node.id === request.entryNode)
  const rank = new Map((request.byRtt ?? []).map((id, i) => [id, i]))
  if (!entry && rank.size === 0) return chosen
  const unmeasured = rank.size
  const nearness = (node: PlacementCandidate) => rank.get(node.id) ?? unmeasured + (node.id === entry?.id ? 0 : node.zone === entry?.zone ? 1 : 2)
  return chosen.map((node, i) => ({node, i})).sort((a, b) => nearness(a.node) - nearness(b.node) || a.i - b.i).map(({node}) => node)

  function zoneRank(node: PlacementCandidate): number {
    return usedZones.has(node.zone) ? 1 : 0
  }
}

/** How full a node is, 0 to 1. */
function fill(node: {freeBytes: number; usedBytes?: number}): number {
  const used = node.usedBytes ?? 0
  const total = used + node.freeBytes
  return total > 0 ? used / total : 1
}

function noNodes(eligible: number, needed: number, which: string): ChunkyError {
  const is = eligible === 1 ? 'node is' : 'nodes are'
  const alive = which ? `alive, ${which}` : 'alive'
  return new ChunkyError(
    'NO_NODES',
    `only ${eligible} ${is} ${alive}; ${needed} are needed (W): start more nodes or lower --min-replicas`,
  )
}
