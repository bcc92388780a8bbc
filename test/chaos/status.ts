import {NODES, R} from './constants.js'

// The parts of `chunky status --json` (SPEC.md) the campaign reads, and how it judges them.

export interface StatusReplica {
  node: string
  version: number
  state: 'fresh' | 'stale' | 'corrupt'
}
export interface StatusChunk {
  index: number
  id: string
  version: number
  size: number
  sha256: string
  replicas: StatusReplica[]
}
export interface StatusFile {
  name: string
  size: number
  chunkSize: number
  chunks: StatusChunk[]
}
export interface StatusNode {
  id: string
  state: string
}
export interface StatusDoc {
  nodes: StatusNode[]
  files: StatusFile[]
  summary: {nodes: number; aliveNodes: number; files: number; chunks: number; underReplicated: number; stale: number; corrupt: number}
}

export function isStatusDoc(value: unknown): value is StatusDoc {
  const doc = value as StatusDoc
  return typeof doc === 'object' && doc !== null && Array.isArray(doc.nodes) && Array.isArray(doc.files) && typeof doc.summary?.underReplicated === 'number'
}

/** Every node alive, nothing under-replicated, stale or corrupt. */
export function isHealthy(s: StatusDoc): boolean {
  return (
    s.summary.aliveNodes === NODES.length &&
    s.nodes.length === NODES.length &&
    s.nodes.every((n) => n.state === 'alive') &&
    s.summary.underReplicated === 0 &&
    s.summary.stale === 0 &&
    s.summary.corrupt === 0
  )
}

/** What is still wrong, chunk by chunk (the first 12), for a violation message. */
export function describeUnhealthy(s: StatusDoc): string {
  const bad: string[] = []
  for (const f of s.files) {
    for (const c of f.chunks) {
      const fresh = c.replicas.filter((r) => r.state === 'fresh').map((r) => r.node)
      const other = c.replicas.filter((r) => r.state !== 'fresh').map((r) => `${r.node}:${r.state}@v${r.version}`)
      if (fresh.length < R || other.length > 0) bad.push(`${f.name}#${c.index} v${c.version} fresh [${fresh.join(',')}]${other.length ? ` other [${other.join(',')}]` : ''}`)
    }
  }
  const dead = s.nodes.filter((n) => n.state !== 'alive').map((n) => n.id)
  return `summary ${JSON.stringify(s.summary)}${dead.length ? `; not alive: ${dead.join(', ')}` : ''}; chunks: ${bad.slice(0, 12).join('; ')}${bad.length > 12 ? ` … ${bad.length - 12} more` : ''}`
}
