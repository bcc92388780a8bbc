import {describe, expect, it} from 'vitest'
import {ChunkId, fileNameProblem} from '../../src/protocol/index.js'

describe('file names (SPEC.md "Words")', () => {
  it.each(['keynote.mp4', 'talks/2026/keynote.mp4', 'ünïcødé/видео.mp4', 'a'.repeat(1024), 'x/.hidden', 'a..b'])(
    'accepts %j',
    (name) => expect(fileNameProblem(name)).toBeUndefined(),
  )
  it.each([
    ['', /empty/],
    ['a'.repeat(1025), /1024 bytes/],
    ['é'.repeat(513), /1024 bytes/], // 1026 bytes in UTF-8, only 513 characters
    ['/abs.mp4', /"\/"/],
    ['trailing/', /"\/"/],
    ['a//b', /"\/"/],
    ['./a', /"\."/],
    ['a/../b', /"\.\."/],
    ['..', /"\.\."/],
    ['tab\there', /control/],
    ['nul\u0000', /control/],
    ['lone\uD800surrogate', /UTF-8/],
  ])('refuses %j', (name, reason) => expect(fileNameProblem(name)).toMatch(reason))
})

describe('chunk ids', () => {
  it('are 24 lowercase hex characters and nothing that could become a path', () => {
    expect(ChunkId.safeParse('0123456789abcdef01234567').success).toBe(true)
    for (const bad of ['../../etc/passwd', '0123456789ABCDEF01234567', '0123456789abcdef0123456', 'g'.repeat(24), '']) {
      expect(ChunkId.safeParse(bad).success).toBe(false)
    }
  })
})
