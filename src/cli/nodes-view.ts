import {NEVER_HEARD_MS, type NodeInfo} from '../protocol/index.js'
import {formatBytes, formatDuration} from '../util/parse.js'
import {table} from './table.js'

// `chunky nodes` as text: one row per node, then one line per drain under way.

export function renderNodes(nodes: readonly NodeInfo[]): string {
  if (nodes.length === 0) return 'nodes: none yet (start one with `chunky node --master URL`)'
  const rows = [['NODE', 'ZONE', 'STATE', 'LAST HEARD', 'CHUNKS', 'USED', 'FREE', 'REACHABLE', 'URL']]
  for (const node of nodes) {
    const heard = node.lastHeartbeatMsAgo >= NEVER_HEARD_MS ? 'never' : `${formatDuration(node.lastHeartbeatMsAgo)} ago`
    const state = node.state === 'drained' && !node.alive ? 'drained (stopped)' : node.state
    // reachable is what other nodes found copying from it: a dead node's is only its last
    const reachable = !node.alive ? '-' : node.reachable ? 'yes' : 'NO'
    rows.push([node.id, node.zone || '-', state, heard, String(node.chunks), formatBytes(node.bytes), formatBytes(node.freeBytes), reachable, node.url])
  }
  const alive = nodes.filter((node) => node.alive).length
  const drains = nodes.flatMap((node) => (node.drain && node.state !== 'drained' ? [`  ${drainLine(node)}`] : []))
  return [`nodes: ${nodes.length}, ${alive} alive`, table(rows), ...(drains.length > 0 ? ['', 'drains:', ...drains] : [])].join('\n')
}

/** e.g. `n3 draining: 12 chunks left to copy (waiting: …)`. */
export function drainLine(node: NodeInfo): string {
  const drain = node.drain
  if (!drain) return `${node.id} is not being drained`
  if (node.state === 'drained') return `${node.id} drained: every chunk it holds has its fresh copies on other nodes; it can be stopped`
  const parts = [`${drain.chunksLeft} chunk${drain.chunksLeft === 1 ? '' : 's'} left to copy`]
  if (drain.pendingCopies > 0) parts.push(`${drain.pendingCopies} copies of uploads in flight`)
  if (drain.uploadsInFlight > 0) parts.push(`${drain.uploadsInFlight} upload${drain.uploadsInFlight === 1 ? '' : 's'} begun before the drain still open`)
  const dead = node.alive ? '' : ' (the node is dead: its chunks are repaired from other copies)'
  return `${node.id} ${node.state}: ${parts.join(', ')}${drain.waiting ? ` (waiting: ${drain.waiting})` : ''}${dead}`
}
