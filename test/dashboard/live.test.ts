import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {startMaster, type RunningMaster} from '../../src/master/index.js'
import {deriveCredentials} from '../../src/protocol/index.js'
import {FakeNode, until} from '../master/fake-node.js'

// The dashboard's server side over real HTTP: the page without a credential, /api/live with one,
// sections sent only when they change, keep-alives, the stream limit, and shutdown.

const SECRET = 'dashboard-test-secret'
const {ro, node: NODE_TOKEN} = deriveCredentials(SECRET)

interface LiveEvent {
  type: string
  data: any
}

/** A /api/live stream read like the page reads it: fetch + the event-stream text format. */
async function openLive(master: RunningMaster, opts: {token?: string | null; file?: string} = {}) {
  const abort = new AbortController()
  const query = opts.file === undefined ? '' : `?file=${encodeURIComponent(opts.file)}`
  const token = opts.token === undefined ? ro : opts.token
  const res = await fetch(`${master.url}/api/live${query}`, {headers: token ? {authorization: `Bearer ${token}`} : {}, signal: abort.signal})
  const events: LiveEvent[] = []
  const comments: string[] = []
  let ended = false
  if (res.ok && res.body) {
    void (async () => {
      const decoder = new TextDecoder()
      let buffer = ''
      try {
        for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
          buffer += decoder.decode(part, {stream: true})
          let end: number
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end)
            buffer = buffer.slice(end + 2)
            if (block.startsWith(':')) comments.push(block)
            const type = /^event: (.*)$/m.exec(block)?.[1]
            const data = /^data: (.*)$/m.exec(block)?.[1]
            if (type && data) events.push({type, data: JSON.parse(data)})
          }
        }
      } catch {
        // aborted by close()
      }
      ended = true
    })()
  }
  return {
    res,
    events,
    comments,
    ended: () => ended,
    /** The first event from index `from` on that matches. */
    next: (match: (e: LiveEvent) => boolean, from = 0, timeoutMs = 5000) =>
      until(() => events.slice(from).find(match), timeoutMs, 'a live event'),
    close: () => abort.abort(),
  }
}

describe('dashboard server side', () => {
  let dir: string
  let master: RunningMaster
  const nodes: FakeNode[] = []
  const streams: {close(): void}[] = []

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'chunky-dashboard-'))
    master = await startMaster({
      host: '127.0.0.1', port: 0, dataDir: join(dir, 'm'), replicas: 3, minReplicas: 2,
      nodeTimeoutMs: 600, repairIntervalMs: 200, token: SECRET,
      live: {tickMs: 50, keepAliveMs: 300, maxStreams: 3},
    })
  })
  afterAll(async () => {
    for (const stream of streams) stream.close()
    for (const node of nodes) await node.close()
    await master?.close()
    await rm(dir, {recursive: true, force: true})
  })

  it('serves the page and its assets without a credential, with a strict content security policy', async () => {
    const page = await fetch(`${master.url}/`)
    expect(page.status).toBe(200)
    expect(page.headers.get('content-type')).toMatch(/^text\/html/)
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'")
    expect(page.headers.get('content-security-policy')).toContain("connect-src 'self'")
    const html = await page.text()
    expect(html).toContain('dashboard/app.js')
    expect(html).not.toMatch(/https?:\/\//) // nothing from another host: works offline
    const script = await fetch(`${master.url}/dashboard/app.js`)
    expect(script.status).toBe(200)
    expect(script.headers.get('content-type')).toMatch(/^text\/javascript/)
    expect(await script.text()).toContain("from './live.js'")
    expect((await fetch(`${master.url}/dashboard/app.css`)).status).toBe(200)
  })

  it('serves nothing else without a credential', async () => {
    expect((await fetch(`${master.url}/dashboard/no-such.js`)).status).toBe(404)
    expect((await fetch(`${master.url}/dashboard/..%2f..%2fpackage.json`)).status).toBe(404) // only built names, never a path
    expect((await fetch(`${master.url}/dashboard/a/b.js`)).status).toBe(401)
    expect((await fetch(`${master.url}/favicon.ico`)).status).toBe(401)
    expect((await fetch(`${master.url}/api/status`)).status).toBe(401)
  })

  it('refuses /api/live without a credential (401), with a node credential (403) and with a bad file name (400)', async () => {
    const none = await openLive(master, {token: null})
    expect(none.res.status).toBe(401)
    expect(((await none.res.json()) as any).error.code).toBe('UNAUTHORIZED')
    const wrong = await openLive(master, {token: 'ro-not-this-clusters'})
    expect(wrong.res.status).toBe(401)
    await wrong.res.body?.cancel()
    const nodeCredential = await openLive(master, {token: NODE_TOKEN})
    expect(nodeCredential.res.status).toBe(403)
    await nodeCredential.res.body?.cancel()
    const badName = await openLive(master, {file: '../etc/passwd'})
    expect(badName.res.status).toBe(400)
    await badName.res.body?.cancel()
  })

  it('sends every section at once, then only what changed, and keep-alives while nothing does', async () => {
    const live = await openLive(master, {file: 'no/such/file.mp4'})
    streams.push(live)
    expect(live.res.status).toBe(200)
    expect(live.res.headers.get('content-type')).toMatch(/^text\/event-stream/)
    const first = await live.next((e) => e.type === 'update')
    expect(Object.keys(first.data).sort()).toEqual(['cluster', 'files', 'grid', 'nodes', 'repairs', 'serverTime'])
    expect(first.data.cluster).toEqual({replicas: 3, minReplicas: 2, health: {underReplicated: 0, stale: 0, corrupt: 0}})
    expect(first.data.files).toEqual({total: 0, limit: 500, files: []})
    expect(first.data.grid).toEqual({name: 'no/such/file.mp4', found: false, totalChunks: 0, chunks: []})
    expect(first.data.repairs).toEqual({running: [], bytesRepaired: 0, bytesPerSecond: 0})

    await until(() => live.comments.length > 0, 5000, 'a keep-alive comment')
    expect(live.events.filter((e) => e.type === 'update')).toHaveLength(1) // quiet cluster: nothing re-sent

    const seen = live.events.length
    nodes.push(await FakeNode.connect(master.url, NODE_TOKEN, 'n1', {zone: 'a', heartbeatMs: 100}))
    const joined = await live.next((e) => e.type === 'update' && e.data.nodes?.some((n: any) => n.id === 'n1'), seen)
    expect(joined.data.nodes).toEqual([expect.objectContaining({id: 'n1', zone: 'a', state: 'alive', freeBytes: 1e12})])
    expect(joined.data.cluster).toBeUndefined() // unchanged sections are not sent again
    expect(joined.data.grid).toBeUndefined()

    const before = live.events.length
    nodes[0]!.stopHeartbeats()
    const dead = await live.next((e) => e.type === 'update' && e.data.nodes?.some((n: any) => n.id === 'n1' && n.state === 'dead'), before)
    expect(dead.data.serverTime - dead.data.nodes[0].lastHeartbeatMs).toBeGreaterThanOrEqual(600)
  })

  it('allows a bounded number of streams and frees a slot when one closes', async () => {
    // The previous test's stream is still open: two more fill the three slots.
    const second = await openLive(master)
    const third = await openLive(master)
    streams.push(second, third)
    expect([second.res.status, third.res.status]).toEqual([200, 200])
    const fourth = await openLive(master)
    expect(fourth.res.status).toBe(503)
    expect(((await fourth.res.json()) as any).error.code).toBe('BUSY')
    third.close()
    const again = await until(async () => {
      const attempt = await openLive(master)
      if (attempt.res.status === 200) return attempt
      await attempt.res.body?.cancel()
      return undefined
    }, 5000, 'a free slot after closing a stream')
    streams.push(again)
    await again.next((e) => e.type === 'update')
  })

  it('ends the open streams when the master shuts down', async () => {
    for (const stream of streams.splice(0)) stream.close()
    const live = await until(async () => {
      const attempt = await openLive(master)
      if (attempt.res.status === 200) return attempt
      await attempt.res.body?.cancel()
      return undefined
    }, 5000, 'a free slot')
    await live.next((e) => e.type === 'update')
    await master.close()
    await until(() => live.ended(), 5000, 'the stream to end')
  }, 20_000)
})
