import {describe, expect, it} from 'vitest'
import {planChunks} from '../../src/client/plan.js'

describe('planChunks', () => {
  it('plans no chunk for an empty file', () => {
    expect(planChunks(0, 10)).toEqual([])
  })

  it('splits an exact multiple into equal chunks', () => {
    expect(planChunks(30, 10)).toEqual([
      {index: 0, start: 0, end: 10},
      {index: 1, start: 10, end: 20},
      {index: 2, start: 20, end: 30},
    ])
  })

  it('ends with a short chunk when the size is not a multiple', () => {
    const ranges = planChunks(10 * 1024 * 1024 * 2 + 1, 10 * 1024 * 1024)
    expect(ranges).toHaveLength(3)
    expect(ranges[2]).toEqual({index: 2, start: 20 * 1024 * 1024, end: 20 * 1024 * 1024 + 1})
  })

  it('gives a file smaller than a chunk one chunk of its own size', () => {
    expect(planChunks(7, 10)).toEqual([{index: 0, start: 0, end: 7}])
  })

  it('covers every byte exactly once', () => {
    const ranges = planChunks(1_000_003, 65_536)
    expect(ranges.reduce((sum, r) => sum + r.end - r.start, 0)).toBe(1_000_003)
    ranges.forEach((r, i) => i > 0 && expect(r.start).toBe(ranges[i - 1]!.end))
  })

  it('refuses nonsense sizes', () => {
    expect(() => planChunks(-1, 10)).toThrow(RangeError)
    expect(() => planChunks(10, 0)).toThrow(RangeError)
  })
})
