// The cluster the campaign runs and the timings it judges by.

export const MiB = 1024 * 1024
/** --chunk-size of every upload: small, so files stay small and chunk boundaries are many. */
export const CHUNK = MiB
export const R = 3
export const W = 2
export const NODES = ['n1', 'n2', 'n3', 'n4', 'n5'] as const
export const ZONES: Record<string, string> = {n1: 'z1', n2: 'z2', n3: 'z3', n4: 'z1', n5: 'z2'}
export const NODE_TIMEOUT_MS = 2000
export const REPAIR_INTERVAL_MS = 500
export const HEARTBEAT_MS = 200
export const SCRUB_INTERVAL_MS = 5000
