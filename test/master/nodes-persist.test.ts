import {afterEach, expect, it} from 'vitest'
import {testContext} from './helpers.js'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup()
})

const rowOf = (setup: Awaited<ReturnType<typeof testContext>>, id: string) =>
  setup.db.prepare('SELECT free_bytes, last_heartbeat_ms FROM nodes WHERE id = ?').get(id) as {free_bytes: number; last_heartbeat_ms: number}

// Thousands of idle nodes must not cost a write each every few seconds; changed space and shutdown still do.
it('persists a node again only when its space changed, its stored heartbeat is a minute old, or on shutdown', async () => {
  const setup = await testContext()
  cleanups.push(setup.cleanup)
  setup.addNode('n1', 'z', 1000)
  const space = {freeBytes: 1000, usedBytes: 0, chunkCount: 0}
  setup.nodes.persist()
  const first = rowOf(setup, 'n1').last_heartbeat_ms

  setup.clock.t += 5_000
  setup.nodes.heartbeat('n1', space)
  setup.nodes.persist()
  expect(rowOf(setup, 'n1').last_heartbeat_ms).toBe(first)

  setup.clock.t += 5_000
  setup.nodes.heartbeat('n1', {...space, freeBytes: 900})
  setup.nodes.persist()
  expect(rowOf(setup, 'n1')).toEqual({free_bytes: 900, last_heartbeat_ms: setup.clock.t})

  const changedAt = setup.clock.t
  setup.clock.t += 5_000
  setup.nodes.heartbeat('n1', {...space, freeBytes: 900})
  setup.nodes.persist(true)
  expect(rowOf(setup, 'n1').last_heartbeat_ms).toBe(changedAt + 5_000)

  setup.clock.t += 61_000
  setup.nodes.heartbeat('n1', {...space, freeBytes: 900})
  setup.nodes.persist()
  expect(rowOf(setup, 'n1').last_heartbeat_ms).toBe(setup.clock.t)
})
