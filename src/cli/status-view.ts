import type {FileListing} from '../client/index.js'
import type {StatusDoc} from '../protocol/index.js'
import {formatBytes, formatDuration} from '../util/parse.js'
import {table} from './table.js'

// The version report as text: nodes, files, and for one file a chunk-by-node grid of versions.

type StatusFile = StatusDoc['files'][number]
type StatusChunk = StatusFile['chunks'][number]

export function renderStatus(doc: StatusDoc, name?: string): string {
  const parts = [renderNodes(doc)]
  if (name === undefined) parts.push(renderFiles(doc))
  else for (const file of doc.files) parts.push(renderGrid(doc, file))
  parts.push(renderSummary(doc))
  return parts.join('\n\n')
}

export function renderNodes(doc: StatusDoc): string {
  const alive = doc.nodes.filter((node) => node.state === 'alive').length
  if (doc.nodes.length === 0) return 'nodes: none yet (start one with `chunky node --master URL --token T`)'
  const rows = [['NODE', 'ZONE', 'STATE', 'LAST HEARD', 'CHUNKS', 'BYTES', 'URL']]
  for (const node of doc.nodes) {
    rows.push([node.id, node.zone || '-', node.drain ? `${node.state} (${node.drain})` : node.state, `${formatDuration(node.lastHeartbeatMsAgo)} ago`, String(node.chunks), formatBytes(node.bytes), node.url])
  }
  return `nodes: ${doc.nodes.length}, ${alive} alive\n${table(rows)}`
}

/** Fresh copies of a chunk on alive nodes: what counts toward R. */
export function freshCopies(doc: StatusDoc, chunk: StatusChunk): number {
  const alive = new Set(doc.nodes.filter((node) => node.state === 'alive').map((node) => node.id))
  return chunk.replicas.filter((replica) => replica.state === 'fresh' && alive.has(replica.node)).length
}

export function renderFiles(doc: StatusDoc): string {
  if (doc.files.length === 0) return 'files: none yet (upload one with `chunky upload FILE`)'
  const wanted = doc.replicas ? `/${doc.replicas}` : ''
  const rows = [['FILE', 'SIZE', 'CHUNKS', 'FRESH COPIES (LOWEST)']]
  for (const file of doc.files) {
    const lowest = file.chunks.length === 0 ? '-' : `${Math.min(...file.chunks.map((chunk) => freshCopies(doc, chunk)))}${wanted}`
    rows.push([file.name, formatBytes(file.size), String(file.chunks.length), lowest])
  }
  return `files: ${doc.files.length}\n${table(rows)}`
}

/** One line per chunk, one column per node: `v2` fresh, `v1 stale`, `v2 CORRUPT`, `-` none. */
export function renderGrid(doc: StatusDoc, file: StatusFile): string {
  // Only the last chunk is short, except in a file joined from tus partial uploads (each ends in a short one).
  const sizesVary = file.chunks.slice(0, -1).some((chunk) => chunk.size !== file.chunkSize)
  const header = `${file.name}: ${formatBytes(file.size)} in ${file.chunks.length} chunk${file.chunks.length === 1 ? '' : 's'} of ${sizesVary ? 'up to ' : ''}${formatBytes(file.chunkSize)}`
  if (file.chunks.length === 0) return `${header} (empty file)`
  const nodeIds = doc.nodes.map((node) => node.id)
  for (const chunk of file.chunks) for (const r of chunk.replicas) if (!nodeIds.includes(r.node)) nodeIds.push(r.node)
  const dead = new Set(doc.nodes.filter((node) => node.state === 'dead').map((node) => node.id))
  const rows = [['CHUNK', 'VERSION', 'SIZE', ...nodeIds.map((id) => (dead.has(id) ? `${id} (dead)` : id))]]
  for (const chunk of file.chunks) {
    const cells = nodeIds.map((id) => replicaCell(chunk, id))
    rows.push([String(chunk.index), `v${chunk.version}`, formatBytes(chunk.size), ...cells])
  }
  return `${header}\n${table(rows)}`
}

/**
 * What node `nodeId` holds of `chunk`: `v2` fresh, `v1 stale`, `v2 CORRUPT`, or `-`. A node can hold
 * two versions for a moment (the new one written, the old one not yet deleted): `v2 + v1 stale`.
 */
export function replicaCell(chunk: StatusChunk, nodeId: string): string {
  const held = chunk.replicas.filter((r) => r.node === nodeId).sort((a, b) => b.version - a.version)
  if (held.length === 0) return '-'
  return held
    .map((replica) => (replica.state === 'fresh' ? `v${replica.version}` : `v${replica.version} ${replica.state === 'corrupt' ? 'CORRUPT' : 'stale'}`))
    .join(' + ')
}

export function renderSummary(doc: StatusDoc): string {
  const s = doc.summary
  const healthy = s.underReplicated === 0 && s.stale === 0 && s.corrupt === 0
  return (
    `summary: ${s.aliveNodes}/${s.nodes} nodes alive, ${s.files} file${s.files === 1 ? '' : 's'}, ${s.chunks} chunk${s.chunks === 1 ? '' : 's'}; ` +
    `${s.underReplicated} under-replicated, ${s.stale} stale, ${s.corrupt} corrupt${healthy ? ' (healthy)' : ''}`
  )
}

export function renderFileList(list: FileListing): string {
  if (list.files.length === 0) return 'no files yet (upload one with `chunky upload FILE`)'
  const wanted = list.replicas ? `/${list.replicas}` : '' // "3/3", as `chunky status` shows it
  const rows = [['FILE', 'SIZE', 'CHUNKS', 'FRESH COPIES (LOWEST)', 'COMMITTED']]
  for (const file of list.files) rows.push([file.name, formatBytes(file.size), String(file.chunks), `${file.lowestFreshReplicas}${wanted}`, file.committedAt])
  return table(rows)
}
