import {NODES, R} from './constants.js'
import type {ProxyMode} from './proxy.js'
import type {Rng} from './rng.js'

// The fault plan: every fault event of a run, computed from the seed before the run starts.

export type Fault =
  /** `leftovers`: while it is down, plant what a crash mid-write leaves (a *.tmp, a torn name): its next start must clean them. */
  | {kind: 'kill-node'; node: string; leftovers: boolean}
  /** kill -9 as soon as the master starts a repair transfer from or to the node (or after windowMs). */
  | {kind: 'kill-repairing'; node: string; windowMs: number; delayMs: number}
  | {kind: 'restart-node'; node: string}
  | {kind: 'pause-node'; node: string}
  | {kind: 'resume-node'; node: string}
  | {kind: 'cut-link'; node: string; mode: ProxyMode}
  | {kind: 'heal-link'; node: string}
  | {kind: 'cut-data'; node: string; mode: ProxyMode}
  | {kind: 'heal-data'; node: string}
  | {kind: 'latency'; node: string; ms: number}
  | {kind: 'latency-off'; node: string}
  | {kind: 'client-latency'; ms: number}
  | {kind: 'client-latency-off'}
  /** `master`: which of several masters (0 when there is one). */
  | {kind: 'kill-master'; master: number}
  | {kind: 'restart-master'; master: number}
  | {kind: 'pause-master'; master: number}
  | {kind: 'resume-master'; master: number}
  /** Rot on disk: one byte flipped, the file cut short, or the file gone. */
  | {kind: 'flip'; node: string; how: 'byte' | 'truncate' | 'delete'}

export interface PlannedFault {
  at: number
  fault: Fault
}

/** Which process or proxy an event acts on: events on one target run in order, others at once. */
export function targetOf(f: Fault): string {
  if ('node' in f) return f.node
  if (f.kind === 'client-latency' || f.kind === 'client-latency-off') return 'clients'
  return `master${f.master}`
}

/**
 * The whole fault schedule, from the seed alone: a simulation of which nodes are impaired (down,
 * paused or partitioned; never more than R−1 at once) decides what may happen next. With several
 * masters each master fault picks one (still one master fault at a time); with one the plan is the
 * same as it always was for a seed.
 */
export function planFaults(rng: Rng, seconds: number, masters = 1): PlannedFault[] {
  const end = seconds * 1000
  const plan: PlannedFault[] = []
  const impairedUntil = new Map<string, number>(NODES.map((n) => [n, 0]))
  const latencyUntil = new Map<string, number>(NODES.map((n) => [n, 0]))
  let masterUntil = 0
  let clientsUntil = 0
  const add = (at: number, fault: Fault) => {
    if (at < end) plan.push({at, fault})
  }
  const pickMaster = () => (masters > 1 ? rng.int(0, masters - 1) : 0)
  for (let t = 1500; t < end; t += rng.int(300, 2200)) {
    const free = NODES.filter((n) => impairedUntil.get(n)! <= t)
    const impaired = NODES.length - free.length
    const weights = {
      'kill-node': impaired < R - 1 && free.length > 0 ? 4 : 0,
      'kill-two': impaired === 0 ? 1.5 : 0,
      'kill-repairing': impaired < R - 1 && free.length > 0 ? 3 : 0,
      'pause-node': impaired < R - 1 && free.length > 0 ? 2 : 0,
      'cut-link': impaired < R - 1 && free.length > 0 ? 2 : 0,
      'cut-data': impaired < R - 1 && free.length > 0 ? 2 : 0,
      latency: NODES.some((n) => latencyUntil.get(n)! <= t) ? 1 : 0,
      'client-latency': clientsUntil <= t ? 0.5 : 0,
      'kill-master': masterUntil <= t ? 0.5 : 0,
      'pause-master': masterUntil <= t ? 0.4 : 0,
      flip: 2,
    }
    const choice = rng.weighted(weights)
    const impair = (node: string, duration: number) => impairedUntil.set(node, t + duration + 200)
    switch (choice) {
      case 'kill-node': {
        const node = rng.pick(free)
        const down = rng.int(300, 6000)
        add(t, {kind: 'kill-node', node, leftovers: rng.chance(0.3)})
        add(t + down, {kind: 'restart-node', node})
        impair(node, down)
        break
      }
      case 'kill-repairing': {
        const node = rng.pick(free)
        const windowMs = 4000
        const down = rng.int(1000, 5000)
        add(t, {kind: 'kill-repairing', node, windowMs, delayMs: rng.int(0, 300)})
        add(t + windowMs + down, {kind: 'restart-node', node})
        impair(node, windowMs + down)
        break
      }
      case 'kill-two': {
        const first = rng.pick(free)
        const second = rng.pick(free.filter((n) => n !== first))
        for (const node of [first, second]) {
          const down = rng.int(500, 5000)
          add(t, {kind: 'kill-node', node, leftovers: rng.chance(0.3)})
          add(t + down, {kind: 'restart-node', node})
          impair(node, down)
        }
        break
      }
      case 'pause-node': {
        const node = rng.pick(free)
        const paused = rng.int(200, 4000)
        add(t, {kind: 'pause-node', node})
        add(t + paused, {kind: 'resume-node', node})
        impair(node, paused)
        break
      }
      case 'cut-link':
      case 'cut-data': {
        const node = rng.pick(free)
        const mode: ProxyMode = rng.chance(0.5) ? 'refuse' : 'blackhole'
        const cut = rng.int(500, 6000)
        add(t, choice === 'cut-link' ? {kind: 'cut-link', node, mode} : {kind: 'cut-data', node, mode})
        add(t + cut, choice === 'cut-link' ? {kind: 'heal-link', node} : {kind: 'heal-data', node})
        impair(node, cut)
        break
      }
      case 'latency': {
        const node = rng.pick(NODES.filter((n) => latencyUntil.get(n)! <= t))
        const lasting = rng.int(1000, 8000)
        add(t, {kind: 'latency', node, ms: rng.int(5, 250)})
        add(t + lasting, {kind: 'latency-off', node})
        latencyUntil.set(node, t + lasting + 100)
        break
      }
      case 'client-latency': {
        const lasting = rng.int(1000, 6000)
        add(t, {kind: 'client-latency', ms: rng.int(20, 300)})
        add(t + lasting, {kind: 'client-latency-off'})
        clientsUntil = t + lasting + 100
        break
      }
      case 'kill-master': {
        const master = pickMaster()
        const down = rng.int(100, 3000)
        add(t, {kind: 'kill-master', master})
        add(t + down, {kind: 'restart-master', master})
        masterUntil = t + down + 500
        break
      }
      case 'pause-master': {
        const master = pickMaster()
        const paused = rng.int(200, 3000)
        add(t, {kind: 'pause-master', master})
        add(t + paused, {kind: 'resume-master', master})
        masterUntil = t + paused + 300
        break
      }
      case 'flip':
        add(t, {kind: 'flip', node: rng.pick(NODES), how: rng.weighted({byte: 6, truncate: 2, delete: 2})})
        break
    }
  }
  return plan.sort((a, b) => a.at - b.at)
}

export function describe(f: Fault): string {
  switch (f.kind) {
    case 'cut-link':
    case 'cut-data':
      return `${f.kind} ${f.node} (${f.mode})`
    case 'latency':
      return `latency ${f.node} ${f.ms}ms`
    case 'client-latency':
      return `client-latency ${f.ms}ms`
    case 'kill-node':
      return `kill-node ${f.node}${f.leftovers ? ' (+ crash leftovers)' : ''}`
    case 'flip':
      return `flip ${f.node} (${f.how})`
    case 'kill-repairing':
      return `kill-repairing ${f.node} (within ${f.windowMs} ms, +${f.delayMs} ms)`
    case 'kill-master':
    case 'restart-master':
    case 'pause-master':
    case 'resume-master':
      return f.master === 0 ? f.kind : `${f.kind} ${f.master + 1}`
    default:
      return 'node' in f ? `${f.kind} ${f.node}` : f.kind
  }
}
