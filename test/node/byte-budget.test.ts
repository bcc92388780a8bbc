import {describe, expect, it} from 'vitest'
import {ByteBudget} from '../../src/node/byte-budget.js'

/** Whether `promise` has settled once the microtasks queued so far have run. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false
  void promise.then(() => (done = true))
  await new Promise((resolve) => setImmediate(resolve))
  return done
}

describe('ByteBudget (the memory all tus PATCHes of a node share)', () => {
  it('grants while there is room, makes the rest wait in order, and never holds more than its capacity', async () => {
    const budget = new ByteBudget(20)
    await budget.acquire(10)
    await budget.acquire(10)
    const third = budget.acquire(10)
    const small = budget.acquire(1) // asked after the third: it waits behind it, though 1 byte alone would not fit either
    expect(await settled(third)).toBe(false)
    expect(budget.held).toBe(20)
    budget.release(10)
    expect(await settled(third)).toBe(true)
    expect(await settled(small)).toBe(false)
    budget.release(10)
    expect(await settled(small)).toBe(true)
    expect(budget.held).toBe(11)
    expect(budget.peak).toBe(20)
    budget.release(11)
    expect(budget.held).toBe(0)
  })

  it('a waiter that fits is not passed over by a later small one (no starvation of whole chunks)', async () => {
    const budget = new ByteBudget(10)
    await budget.acquire(9)
    const chunk = budget.acquire(10)
    const crumb = budget.acquire(1) // would fit now, but the chunk asked first
    expect(await settled(crumb)).toBe(false)
    budget.release(9)
    expect(await settled(chunk)).toBe(true)
    expect(await settled(crumb)).toBe(false)
    budget.release(10)
    expect(await settled(crumb)).toBe(true)
  })

  it('refuses what can never fit and a release of more than it holds', async () => {
    expect(() => new ByteBudget(0)).toThrow(/positive/)
    const budget = new ByteBudget(10)
    expect(() => budget.acquire(11)).toThrow(/cannot reserve 11 bytes of a 10-byte budget/)
    expect(() => budget.release(1)).toThrow(/only 0 reserved/)
  })
})
