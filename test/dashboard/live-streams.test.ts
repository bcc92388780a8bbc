import {createServer, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {afterEach, expect, it} from 'vitest'
import {LiveStreams} from '../../src/master/dashboard/live.js'
import type {DashboardData} from '../../src/master/dashboard/snapshot.js'
import {until} from '../master/fake-node.js'

// LiveStreams on a plain HTTP server with a data source the test controls: what a page sees when
// building the data fails, and when it works again.

let server: Server | undefined
let streams: LiveStreams | undefined
afterEach(async () => {
  streams?.closeAll()
  server?.closeAllConnections()
  await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined))
})

function fakeData(state: {failing: boolean; nodes: unknown[]; builds: number}): DashboardData {
  return {
    now: () => 1234,
    cluster: () => ({replicas: 3, minReplicas: 2}),
    nodes: () => {
      state.builds++
      if (state.failing) throw new Error('database is locked')
      return state.nodes
    },
    files: () => ({total: 0, limit: 500, files: []}),
    repairs: () => ({running: [], bytesRepaired: 0, bytesPerSecond: 0}),
    grid: (name: string) => ({name, found: false, totalChunks: 0, chunks: []}),
  } as unknown as DashboardData
}

/** Every event block the stream has sent so far, as raw text. */
async function read(url: string): Promise<{blocks: string[]; stop: () => void}> {
  const abort = new AbortController()
  const res = await fetch(url, {signal: abort.signal})
  const blocks: string[] = []
  void (async () => {
    let buffer = ''
    try {
      for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += Buffer.from(part).toString()
        let end: number
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          blocks.push(buffer.slice(0, end))
          buffer = buffer.slice(end + 2)
        }
      }
    } catch {
      // stopped
    }
  })()
  return {blocks, stop: () => abort.abort()}
}

it('sends a problem once while the data cannot be built, then an update that clears it', async () => {
  const state = {failing: true, nodes: [] as unknown[], builds: 0}
  streams = new LiveStreams(fakeData(state), {tickMs: 20, keepAliveMs: 10_000})
  server = createServer((req, res) => streams!.open(req, res, undefined))
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve))
  const live = await read(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`)
  try {
    await until(() => live.blocks.length >= 1, 5000, 'the problem event')
    expect(live.blocks[0]).toBe(`event: problem\ndata: "the master could not build the dashboard's data: database is locked"`)
    const builds = state.builds
    await until(() => state.builds >= builds + 10, 5000, 'ten more ticks of the same failure')
    expect(live.blocks).toHaveLength(1) // sent once, not every tick

    state.failing = false
    await until(() => live.blocks.length >= 2, 5000, 'an update')
    const update = JSON.parse(live.blocks[1]!.replace(/^event: update\ndata: /, ''))
    expect(update).toEqual({
      serverTime: 1234,
      cluster: {replicas: 3, minReplicas: 2},
      nodes: [],
      files: {total: 0, limit: 500, files: []},
      repairs: {running: [], bytesRepaired: 0, bytesPerSecond: 0},
    })
  } finally {
    live.stop()
  }
  await until(() => streams!.size === 0, 5000, 'the closed stream to be dropped')
})
