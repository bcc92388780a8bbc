import {connectLive, errorMessage, type LiveState} from './live.js'
import {refreshAges, renderFiles, renderGrid, renderNodes, renderRepairs, renderSummary} from './render.js'
import type {Cluster, Files, Grid, NodeInfo, Repairs, Update} from './types.js'

// The dashboard page: log in with a credential (typed in, or given once as #token=… in the address,
// which is read and removed at once), then follow the master's live stream. The credential is kept
// in this tab's sessionStorage and sent only to this master, in the Authorization header.

const TOKEN_KEY = 'chunky-token'

const state = {
  token: undefined as string | undefined,
  stopLive: undefined as (() => void) | undefined,
  /** Master clock minus browser clock, from the last update. */
  serverOffset: 0,
  cluster: undefined as Cluster | undefined,
  nodes: [] as NodeInfo[],
  files: undefined as Files | undefined,
  repairs: undefined as Repairs | undefined,
  grid: undefined as Grid | undefined,
  selected: undefined as string | undefined,
}

function byId<T extends HTMLElement>(id: string): T {
  const element = document.getElementById(id)
  if (!element) throw new Error(`the page has no #${id}`)
  return element as T
}

/** A token in the fragment wins (and leaves the address bar); else the one this tab logged in with. */
function startingToken(): string | undefined {
  const fragment = new URLSearchParams(location.hash.slice(1)).get('token')
  if (fragment !== null) {
    history.replaceState(null, '', location.pathname + location.search)
    return fragment.trim() || undefined
  }
  return sessionStorage.getItem(TOKEN_KEY) ?? undefined
}

function showLogin(message = ''): void {
  state.stopLive?.()
  state.stopLive = undefined
  state.token = undefined
  sessionStorage.removeItem(TOKEN_KEY)
  byId('dashboard').hidden = true
  byId('logout').hidden = true
  byId('login').hidden = false
  byId('login-error').textContent = message
  setConnection('off')
  byId('summary').textContent = ''
  byId<HTMLInputElement>('token').focus()
}

/** Checks the credential with one read (GET api/nodes) before showing anything. */
async function logIn(token: string): Promise<void> {
  let res: Response
  try {
    res = await fetch('api/nodes', {headers: {authorization: `Bearer ${token}`}, cache: 'no-store'})
  } catch (err) {
    return showLogin(`Cannot reach the master: ${err instanceof Error ? err.message : String(err)}`)
  }
  if (res.status === 401) {
    return showLogin('Wrong token: this master does not accept it. Use a credential `chunky master` printed (ro-… or rw-…) or the cluster secret.')
  }
  if (res.status === 403) return showLogin(`This credential cannot read the cluster: ${await errorMessage(res)}`)
  if (!res.ok) return showLogin(`The master refused: ${await errorMessage(res)}`)
  state.token = token
  sessionStorage.setItem(TOKEN_KEY, token)
  byId('login').hidden = true
  byId('login-error').textContent = ''
  byId('dashboard').hidden = false
  byId('logout').hidden = false
  follow()
}

/** (Re)opens the live stream, following the selected file's grid. */
function follow(): void {
  state.stopLive?.()
  const token = state.token
  if (!token) return
  state.stopLive = connectLive(token, state.selected, {
    onUpdate: apply,
    onProblem: (message) => {
      const problem = byId('problem')
      problem.textContent = message
      problem.hidden = false
    },
    onState: setConnection,
    onRefused: (message) => showLogin(`The master no longer accepts this credential: ${message}`),
  })
}

function apply(update: Update): void {
  state.serverOffset = update.serverTime - Date.now()
  byId('problem').hidden = true
  if (update.cluster) state.cluster = update.cluster
  if (update.nodes) state.nodes = update.nodes
  if (update.files) state.files = update.files
  if (update.repairs) state.repairs = update.repairs
  if (update.grid) state.grid = update.grid
  if (update.nodes || update.cluster || update.files) renderSummary(state.cluster, state.nodes, state.files)
  if (update.nodes) renderNodes(state.nodes, state.serverOffset)
  if (update.repairs) renderRepairs(update.repairs, state.serverOffset)
  if (state.files && (update.files || update.cluster)) renderFiles(state.files, state.cluster, state.selected, select, play)
  if (update.grid || update.nodes) renderGrid(state.grid, state.selected, state.nodes)
}

function select(name: string): void {
  if (name === state.selected) return
  state.selected = name
  state.grid = undefined
  if (state.files) renderFiles(state.files, state.cluster, state.selected, select, play)
  renderGrid(undefined, name, state.nodes)
  follow() // a new stream that carries this file's grid
}

/**
 * Plays a file in the page: the master signs a share link (an hour, with this tab's credential) and
 * the video element reads it from the first alive node, with ranges, as any player would.
 */
async function play(name: string): Promise<void> {
  const note = byId('player-note')
  const video = byId<HTMLVideoElement>('player-video')
  byId('player').hidden = false
  byId('player-title').textContent = `Playing ${name}`
  note.textContent = 'asking the master for a link…'
  try {
    const node = state.nodes.find((n) => n.alive)
    if (!node) throw new Error('no node is alive')
    const res = await fetch('api/share', {
      method: 'POST',
      headers: {authorization: `Bearer ${state.token ?? ''}`, 'content-type': 'application/json'},
      body: JSON.stringify({name, expiresInMs: 3_600_000}),
      cache: 'no-store',
    })
    if (!res.ok) throw new Error(`the master answered ${res.status}`)
    const {path, expiresAt} = (await res.json()) as {path: string; expiresAt: string}
    video.src = new URL(path, node.url).toString()
    note.textContent = `from ${node.id}, through a link valid until ${new Date(expiresAt).toLocaleTimeString()}`
    await video.play().catch(() => {}) // a browser may want a click on the video first
  } catch (err) {
    note.textContent = `cannot play ${name}: ${(err as Error).message}`
  }
}

function closePlayer(): void {
  const video = byId<HTMLVideoElement>('player-video')
  video.pause()
  video.removeAttribute('src')
  video.load() // drops the connection to the node
  byId('player').hidden = true
}

function setConnection(live: LiveState | 'off', detail?: string): void {
  const element = byId('connection')
  element.dataset.state = live
  const text = {off: '', connecting: 'connecting…', live: '● live', reconnecting: 'reconnecting…'}[live]
  element.textContent = detail ? `${text} (${detail})` : text
}

function main(): void {
  byId('login-form').addEventListener('submit', (event) => {
    event.preventDefault()
    const token = byId<HTMLInputElement>('token').value.trim()
    if (!token) return showLogin('Type a credential first.')
    byId<HTMLInputElement>('token').value = ''
    void logIn(token)
  })
  byId('logout').addEventListener('click', () => showLogin())
  byId('player-close').addEventListener('click', closePlayer)
  setInterval(() => {
    if (!state.token) return
    refreshAges(state.serverOffset)
    if (state.repairs?.running.length) renderRepairs(state.repairs, state.serverOffset)
  }, 1000)
  const token = startingToken()
  if (token) void logIn(token)
  else showLogin()
}

main()
