import {ChunkyError} from '../protocol/index.js'

export interface PlacementCandidate {
  id: string
  zone: string
  /** Free bytes as the planner sees them now (it subtracts what it already placed). */
  freeBytes: number
}

export interface PlacementRequest {
  /** Alive nodes with an open link. */
  candidates: readonly PlacementCandidate[]
  size: number
  replicas: number
  minReplicas: number
  entryNode?: string
  exclude?: readonly string[]
}

/**
 * Chooses the nodes for one chunk, in chain order: up to R distinct nodes with room for it and not
 * excluded; the entry node first when it is one of them; then nodes on zones this chunk does not use
 * yet, most free bytes first. Fewer than W such nodes is NO_NODES; between W and R it places on what
 * there is and the repair loop fills the rest later.
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
  const take = (node: PlacementCandidate) => {
    chosen.push(node)
    usedZones.add(node.zone)
  }
  const entry = eligible.find((node) => node.id === request.entryNode)
  if (entry) take(entry)
  while (chosen.length < request.replicas) {
    const rest = eligible.filter((node) => !chosen.includes(node))
    if (rest.length === 0) break
    rest.sort((a, b) => zoneRank(a) - zoneRank(b) || b.freeBytes - a.freeBytes || a.id.localeCompare(b.id))
    take(rest[0]!)
  }
  return chosen

  function zoneRank(node: PlacementCandidate): number {
    return usedZones.has(node.zone) ? 1 : 0
  }
}

function noNodes(eligible: number, needed: number, which: string): ChunkyError {
  const is = eligible === 1 ? 'node is' : 'nodes are'
  const alive = which ? `alive, ${which}` : 'alive'
  return new ChunkyError(
    'NO_NODES',
    `only ${eligible} ${is} ${alive}; ${needed} are needed (W): start more nodes or lower --min-replicas`,
  )
}
