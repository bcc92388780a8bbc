// The sections of GET /api/live `update` events, as the master sends them. They mirror
// src/master/dashboard/snapshot.ts (the browser build cannot import server code): keep the two in step.

export interface Cluster {
  replicas: number
  minReplicas: number
  health: {underReplicated: number; stale: number; corrupt: number}
}

export interface NodeInfo {
  id: string
  url: string
  zone: string
  /** draining: taking no new chunks while its chunks are copied away; drained: done, it can be stopped. */
  state: 'alive' | 'dead' | 'draining' | 'drained'
  alive: boolean
  /** Epoch ms on the master's clock; null if never heard from. */
  lastHeartbeatMs: number | null
  usedBytes: number
  freeBytes: number
  chunks: number
}

export interface FileInfo {
  name: string
  size: number
  chunks: number
  minReplicas: number
  committedAt: string
}

export interface Files {
  total: number
  limit: number
  files: FileInfo[]
}

export interface RunningRepair {
  id: string
  source: string
  target: string
  chunks: number
  bytes: number
  startedMs: number
}

export interface Repairs {
  running: RunningRepair[]
  bytesRepaired: number
  bytesPerSecond: number
}

export type ReplicaState = 'fresh' | 'stale' | 'corrupt'

export interface GridChunk {
  index: number
  id: string
  version: number
  size: number
  replicas: {node: string; version: number; state: ReplicaState}[]
}

export interface Grid {
  name: string
  found: boolean
  totalChunks: number
  chunks: GridChunk[]
}

/** One `update` event: the master's clock, and every section that changed since the last event. */
export interface Update {
  serverTime: number
  cluster?: Cluster
  nodes?: NodeInfo[]
  files?: Files
  repairs?: Repairs
  grid?: Grid
}
