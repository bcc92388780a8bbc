import {formatAge, formatBytes, formatTime} from './format.js'
import type {Cluster, Files, Grid, NodeInfo, Repairs} from './types.js'

// Turns the live sections into DOM. Text goes in through textContent only (file names come from
// users), and data-* attributes say what each row and cell is (the browser test reads them).

type Child = Node | string
function el(tag: string, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElement {
  const element = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) {
    if (name === 'class') element.className = value
    else element.setAttribute(name, value)
  }
  element.append(...children)
  return element
}

function byId(id: string): HTMLElement {
  const element = document.getElementById(id)
  if (!element) throw new Error(`the page has no #${id}`)
  return element
}

/** Milliseconds since `epochMs` on the master's clock (serverOffset = master clock − browser clock). */
export function ageOf(epochMs: number | null, serverOffset: number): string {
  return epochMs === null ? 'never' : `${formatAge(Date.now() + serverOffset - epochMs)} ago`
}

export function renderSummary(cluster: Cluster | undefined, nodes: NodeInfo[], files: Files | undefined): void {
  const alive = nodes.filter((n) => n.alive).length
  const parts = [`${alive} of ${nodes.length} node${nodes.length === 1 ? '' : 's'} alive`]
  for (const taken of ['draining', 'drained'] as const) {
    const n = nodes.filter((node) => node.state === taken).length
    if (n > 0) parts.push(`${n} ${taken}`)
  }
  if (files) parts.push(`${files.total} file${files.total === 1 ? '' : 's'}`)
  if (cluster) {
    parts.push(`R=${cluster.replicas}, W=${cluster.minReplicas}`)
    const {underReplicated, stale, corrupt} = cluster.health
    parts.push(`${underReplicated} under-replicated, ${stale} stale, ${corrupt} corrupt`)
  }
  const summary = byId('summary')
  summary.textContent = parts.join(' · ')
  const troubled = cluster !== undefined && cluster.health.underReplicated + cluster.health.stale + cluster.health.corrupt > 0
  summary.dataset.health = troubled ? 'repairing' : 'healthy'
}

export function renderNodes(nodes: NodeInfo[], serverOffset: number): void {
  const rows = nodes.map((node) => {
    const total = node.usedBytes + node.freeBytes
    const bar = el('span', {class: 'bar-fill'})
    bar.style.width = `${total > 0 ? Math.min(100, (node.usedBytes / total) * 100) : 0}%`
    return el(
      'tr',
      {'data-node-id': node.id, 'data-state': node.state, class: node.state},
      el('td', {title: node.url}, node.id),
      el('td', {}, node.zone),
      el('td', {}, el('span', {class: `badge ${node.state}`}, node.state)),
      el('td', {class: 'age', 'data-heartbeat': String(node.lastHeartbeatMs ?? '')}, ageOf(node.lastHeartbeatMs, serverOffset)),
      el(
        'td',
        {class: 'space'},
        el('span', {class: 'bar', title: `${formatBytes(node.usedBytes)} used of ${formatBytes(total)}`}, bar),
        el('span', {class: 'bar-text'}, `${formatBytes(node.usedBytes)} used · ${formatBytes(node.freeBytes)} free`),
      ),
      el('td', {class: 'num'}, String(node.chunks)),
    )
  })
  if (rows.length === 0) rows.push(el('tr', {}, el('td', {colspan: '6', class: 'empty'}, 'no node has joined yet')))
  byId('nodes').replaceChildren(...rows)
}

/** Re-ages the heartbeat cells once a second, between updates. */
export function refreshAges(serverOffset: number): void {
  for (const cell of document.querySelectorAll<HTMLElement>('#nodes td.age')) {
    const at = cell.dataset.heartbeat
    cell.textContent = ageOf(at ? Number(at) : null, serverOffset)
  }
}

export function renderRepairs(repairs: Repairs, serverOffset: number): void {
  byId('repair-rate').textContent =
    `${formatBytes(repairs.bytesPerSecond)}/s over the last 10 s · ${formatBytes(repairs.bytesRepaired)} repaired since the master started`
  const rows = repairs.running.map((task) =>
    el(
      'tr',
      {'data-repair': task.id},
      el('td', {}, `${task.source} → ${task.target}`),
      el('td', {class: 'num'}, String(task.chunks)),
      el('td', {class: 'num'}, formatBytes(task.bytes)),
      el('td', {class: 'num'}, formatAge(Date.now() + serverOffset - task.startedMs)),
    ),
  )
  if (rows.length === 0) rows.push(el('tr', {}, el('td', {colspan: '4', class: 'empty'}, 'no repair running')))
  byId('repairs').replaceChildren(...rows)
}

export function renderFiles(files: Files, cluster: Cluster | undefined, selected: string | undefined, onSelect: (name: string) => void, onPlay?: (name: string) => void): void {
  byId('files-note').textContent =
    files.total > files.files.length
      ? `Showing the ${files.files.length} most recently changed of ${files.total} files.`
      : files.total === 0
        ? 'No files yet: chunky upload FILE puts one here.'
        : ''
  const wanted = cluster?.replicas ?? 0
  const rows = files.files.map((file) => {
    const row = el(
      'tr',
      {'data-file': file.name, tabindex: '0', class: file.name === selected ? 'selected' : ''},
      el('td', {class: 'name'}, file.name),
      el('td', {class: 'num'}, formatBytes(file.size)),
      el('td', {class: 'num'}, String(file.chunks)),
      el('td', {class: `num ${file.minReplicas < wanted ? 'under' : ''}`}, wanted ? `${file.minReplicas} of ${wanted}` : String(file.minReplicas)),
      el('td', {}, formatTime(file.committedAt)),
      el('td', {}, onPlay ? playButton(file.name, onPlay) : ''),
    )
    row.addEventListener('click', () => onSelect(file.name))
    row.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault()
        onSelect(file.name)
      }
    })
    return row
  })
  byId('files').replaceChildren(...rows)
}

/** A file row's play button: opens the file in the page through a share link (app.ts). */
function playButton(name: string, onPlay: (name: string) => void): HTMLElement {
  const button = el('button', {type: 'button', class: 'play', 'data-play': name, title: `play ${name} here`}, '▶ play')
  button.addEventListener('click', (event) => {
    event.stopPropagation() // not a click on the row (which selects the file)
    onPlay(name)
  })
  return button
}

/** Chunks down, nodes across; each cell the replica's version, coloured by its state. */
export function renderGrid(grid: Grid | undefined, selected: string | undefined, nodes: NodeInfo[]): void {
  const title = byId('grid-title')
  const note = byId('grid-note')
  const table = byId('grid')
  title.textContent = selected ? `Chunk versions of ${selected}` : 'Chunk versions'
  if (!selected) {
    note.textContent = 'Click a file to see each chunk\'s version on each node.'
    return void table.replaceChildren()
  }
  if (!grid || grid.name !== selected) {
    note.textContent = 'Loading…'
    return void table.replaceChildren()
  }
  if (!grid.found) {
    note.textContent = 'This file is gone (removed since it was chosen).'
    return void table.replaceChildren()
  }
  note.textContent =
    grid.chunks.length < grid.totalChunks ? `Showing the first ${grid.chunks.length} of ${grid.totalChunks} chunks.` : `${grid.totalChunks} chunks.`
  // Every node the master knows, and any other node a replica names (a node removed since).
  const columns = nodes.map((n) => ({id: n.id, dead: n.state === 'dead'}))
  for (const chunk of grid.chunks) {
    for (const replica of chunk.replicas) if (!columns.some((c) => c.id === replica.node)) columns.push({id: replica.node, dead: true})
  }
  const head = el('tr', {}, el('th', {}, 'chunk'), el('th', {class: 'num'}, 'version'),
    ...columns.map((c) => el('th', {class: c.dead ? 'dead' : '', 'data-node': c.id, title: c.dead ? `${c.id} is dead` : ''}, c.id)))
  const rows = grid.chunks.map((chunk) => {
    const cells = columns.map((column) => {
      // A node may hold an old copy and the current one for a moment: show the best of them.
      const held = chunk.replicas.filter((r) => r.node === column.id)
      const replica = held.find((r) => r.state === 'fresh') ?? held.find((r) => r.state === 'corrupt') ?? held[0]
      const state = replica?.state ?? 'missing'
      return el(
        'td',
        {class: `cell ${state}${column.dead ? ' dead' : ''}`, 'data-node': column.id, 'data-chunk': String(chunk.index), 'data-state': state,
          title: `chunk ${chunk.index} on ${column.id}: ${replica ? `v${replica.version} ${state}` : 'no copy'}${column.dead ? ' (node dead)' : ''}`},
        replica ? `v${replica.version}` : '–',
      )
    })
    return el('tr', {}, el('th', {class: 'num'}, String(chunk.index)), el('td', {class: 'num'}, `v${chunk.version}`), ...cells)
  })
  table.replaceChildren(el('thead', {}, head), el('tbody', {}, ...rows))
}
