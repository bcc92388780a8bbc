import {performance} from 'node:perf_hooks'
import {ChunkyError, Health, type NodeSummary} from '../protocol/index.js'
import {sendForText} from './http.js'

// Finding the nearest storage node: time GET /healthz a few times on every alive node, in parallel,
// and take the lowest median round trip. The median ignores one slow outlier (a GC pause, a cold
// connection).

/** Times one GET /healthz; resolves to milliseconds, rejects if the node does not answer as a node. */
export type Probe = (nodeUrl: string) => Promise<number>

export const PROBES_PER_NODE = 3
export const PROBE_TIMEOUT_MS = 1_000

export const httpProbe: Probe = async (nodeUrl) => {
  const started = performance.now()
  const answer = await sendForText(new URL('/healthz', nodeUrl), {method: 'GET', totalTimeoutMs: PROBE_TIMEOUT_MS})
  const elapsed = performance.now() - started
  if (answer.statusCode !== 200) throw new Error(`HTTP ${answer.statusCode}`)
  Health.parse(JSON.parse(answer.body))
  return elapsed
}

export interface NodeRtt {
  node: NodeSummary
  /** Median round trip in ms, or undefined when no probe succeeded. */
  rttMs: number | undefined
}

export function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1]! + sorted[middle]!) / 2
}

/**
 * Probes every node (in parallel; a node's probes one after another, stopping at its first failure)
 * and returns each one's median RTT.
 */
export async function measureNodes(nodes: NodeSummary[], probe: Probe = httpProbe, probes = PROBES_PER_NODE): Promise<NodeRtt[]> {
  return Promise.all(
    nodes.map(async (node) => {
      const rtts: number[] = []
      for (let i = 0; i < probes; i++) {
        try {
          rtts.push(await probe(node.url))
        } catch {
          // No answer (refused, or PROBE_TIMEOUT_MS passed): asking again would mostly add another
          // timeout to every upload's critical path, so the node keeps the samples it has.
          break
        }
      }
      return {node, rttMs: median(rtts)}
    }),
  )
}

/** RTTs this close to the lowest count as a tie that `--zone` may break: within 20%, or 2 ms on a fast LAN. */
export const NEAR_EQUAL_RATIO = 1.2
export const NEAR_EQUAL_SLACK_MS = 2

/**
 * The node with the lowest median RTT (ties keep the master's order); undefined if none answered.
 * With `zone`, a node of that zone whose RTT is near-equal to the lowest wins over a slightly faster
 * node elsewhere: the measurement decides, the zone only breaks ties.
 */
export function pickNearest(measured: NodeRtt[], zone?: string): NodeRtt | undefined {
  let best: NodeRtt | undefined
  for (const entry of measured) {
    if (entry.rttMs === undefined) continue
    if (!best || entry.rttMs < best.rttMs!) best = entry
  }
  if (!best || !zone || best.node.zone === zone) return best
  const limit = Math.max(best.rttMs! * NEAR_EQUAL_RATIO, best.rttMs! + NEAR_EQUAL_SLACK_MS)
  let inZone: NodeRtt | undefined
  for (const entry of measured) {
    if (entry.rttMs === undefined || entry.node.zone !== zone || entry.rttMs > limit) continue
    if (!inZone || entry.rttMs < inZone.rttMs!) inZone = entry
  }
  return inZone ?? best
}

/** The node `--node` names: by id first, then by URL (trailing slashes ignored). */
export function matchNode(nodes: NodeSummary[], idOrUrl: string): NodeSummary | undefined {
  const byId = nodes.find((node) => node.id === idOrUrl)
  if (byId) return byId
  const trim = (url: string) => url.replace(/\/+$/, '')
  return nodes.find((node) => trim(node.url) === trim(idOrUrl))
}

export interface NearestOptions {
  /** `--node ID|URL`: skip the measurement and use this node. */
  override?: string
  /** `--zone Z`: prefer a node of this zone among near-equal RTTs. */
  zone?: string
  probe?: Probe
}

/** The entry node, and the ids of the nodes that answered in round-trip order, nearest first (none with `--node`). */
export interface Nearest extends NodeRtt {
  byRtt: string[]
}

/** The ids of the nodes that answered, lowest median RTT first. */
export function rankByRtt(measured: NodeRtt[]): string[] {
  return measured.filter((entry) => entry.rttMs !== undefined).sort((a, b) => a.rttMs! - b.rttMs!).map((entry) => entry.node.id)
}

/** The entry node for an upload: the `--node` one, else the nearest alive node that answers. */
export async function findNearestNode(nodes: NodeSummary[], opts: NearestOptions = {}): Promise<Nearest> {
  const alive = nodes.filter((node) => node.state === 'alive')
  if (opts.override !== undefined) {
    const chosen = matchNode(nodes, opts.override)
    if (!chosen) {
      const known = nodes.map((node) => node.id).join(', ') || 'none'
      throw new ChunkyError('NO_NODES', `no node matches --node ${opts.override} (known nodes: ${known})`)
    }
    if (chosen.state !== 'alive') throw new ChunkyError('NO_NODES', `node ${chosen.id} (--node) is dead: pick another or leave --node out`)
    return {node: chosen, rttMs: undefined, byRtt: []}
  }
  if (alive.length === 0) {
    throw new ChunkyError('NO_NODES', 'no storage node is alive: start one with `chunky node --master URL --token T`')
  }
  const measured = await measureNodes(alive, opts.probe)
  const nearest = pickNearest(measured, opts.zone)
  if (!nearest) {
    const urls = alive.map((node) => node.url).join(', ')
    throw new ChunkyError('NODE_UNREACHABLE', `none of the alive nodes answered from here (${urls}): check the network or their --public-url`)
  }
  // --zone may have picked a near-equal node over the fastest: it leads the order too
  return {...nearest, byRtt: [nearest.node.id, ...rankByRtt(measured).filter((id) => id !== nearest.node.id)]}
}
