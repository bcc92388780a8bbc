import {expect, test} from 'vitest'
import {NodeLiveness} from '../../src/master/liveness.js'

test('a node is declared dead only once it has been silent longer than the timeout, and comes back on touch', () => {
  let now = 1_000
  const liveness = new NodeLiveness({now: () => now}, 15_000)
  expect(liveness.touch('node-a')).toBe(true) // joined
  now += 15_000
  expect(liveness.sweep()).toEqual([]) // exactly at the limit: still alive
  expect(liveness.touch('node-a')).toBe(false) // was alive
  now += 15_001
  expect(liveness.sweep()).toEqual(['node-a'])
  expect(liveness.sweep()).toEqual([]) // reported once, not on every sweep
  expect(liveness.isAlive('node-a')).toBe(false)
  expect(liveness.touch('node-a')).toBe(true) // back
})
