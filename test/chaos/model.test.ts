import {expect, it} from 'vitest'
import {ABSENT, LATE_COMMIT_SLACK_MS, Model} from './model.js'

// The campaign's judge of downloads, on timelines written by hand: what it must accept and what it must flag.

const A = 'a'.repeat(64)
const B = 'b'.repeat(64)
const C = 'c'.repeat(64)

function model(): Model {
  const m = new Model()
  for (const [sha, chunks] of [[A, ['a0', 'a1']], [B, ['b0', 'b1']], [C, ['c0', 'c1']]] as const) m.addContent({sha256: sha, size: 2, path: '', chunkShas: [...chunks]})
  return m
}

it('accepts the last committed content, and an older one while the newer upload still runs', () => {
  const m = model()
  m.finish(m.begin('f', A, 0), 'ok', 100)
  const b = m.begin('f', B, 200)
  expect(m.judgeDownload('f', A, 300, 400, ['a0', 'a1'])).toBeUndefined() // B not finished: A may be current
  expect(m.judgeDownload('f', B, 300, 400, ['b0', 'b1'])).toBeUndefined() // B may have committed already
  m.finish(b, 'ok', 500)
  expect(m.judgeDownload('f', B, 600, 700, ['b0', 'b1'])).toBeUndefined()
})

it('flags a content overwritten by an upload that exited 0 before the read began', () => {
  const m = model()
  m.finish(m.begin('f', A, 0), 'ok', 100)
  m.finish(m.begin('f', B, 200), 'ok', 300)
  expect(m.judgeDownload('f', A, 400, 500, ['a0', 'a1'])).toMatch(/overwritten/)
  // a read that began before B exited 0 may still see A
  expect(m.judgeDownload('f', A, 250, 500, ['a0', 'a1'])).toBeUndefined()
})

it('lets a failed or killed upload commit a little after it ended, not much later', () => {
  const m = model()
  m.finish(m.begin('f', A, 0), 'ok', 100)
  m.finish(m.begin('f', B, 200), 'killed', 300)
  expect(m.judgeDownload('f', B, 400, 500, ['b0', 'b1'])).toBeUndefined()
  // C started after B's last possible commit and exited 0: B is overwritten for later reads
  m.finish(m.begin('f', C, 300 + LATE_COMMIT_SLACK_MS + 1), 'ok', 400 + LATE_COMMIT_SLACK_MS)
  expect(m.judgeDownload('f', B, 500 + LATE_COMMIT_SLACK_MS, 600 + LATE_COMMIT_SLACK_MS, ['b0', 'b1'])).toMatch(/overwritten/)
})

it('flags a mix of two contents, unknown bytes, another name\'s content and a name nobody uploaded', () => {
  const m = model()
  m.finish(m.begin('f', A, 0), 'ok', 100)
  m.finish(m.begin('f', B, 200), 'ok', 300)
  m.finish(m.begin('g', C, 0), 'ok', 100)
  expect(m.judgeDownload('f', 'd'.repeat(64), 400, 500, ['a0', 'b1'])).toMatch(/nobody uploaded.*a mix/)
  expect(m.judgeDownload('f', 'd'.repeat(64), 400, 500, ['x', 'y'])).toMatch(/nobody uploaded.*no chunk matches/)
  expect(m.judgeDownload('f', C, 400, 500, ['c0', 'c1'])).toMatch(/uploaded as g/)
  expect(m.judgeDownload('h', A, 400, 500, ['a0', 'a1'])).toMatch(/not uploaded under this name/)
  // a content uploaded only after the read ended cannot have been read
  expect(m.judgeDownload('g', A, 0, 50, ['a0', 'a1'])).toMatch(/not uploaded under this name/)
})

it('knows which contents may be current once everything has ended', () => {
  const m = model()
  m.finish(m.begin('f', A, 0), 'ok', 100)
  m.finish(m.begin('f', B, 200), 'failed', 300)
  expect([...m.mayBeCurrent('f', 10_000)].sort()).toEqual([A, B].sort())
  m.finish(m.begin('f', C, 300 + LATE_COMMIT_SLACK_MS + 1), 'ok', 20_000)
  expect([...m.mayBeCurrent('f', 30_000)]).toEqual([C])
  expect(m.mustExist('f', 30_000)).toBe(true)
})

it('treats a removal as a content: "absent"', () => {
  const m = model()
  m.begin('f', A, 0) // still running: f may or may not exist
  expect(m.mustExist('f', 10)).toBe(false)
  const removal = m.begin('g', ABSENT, 0)
  m.finish(m.begin('h', A, 0), 'ok', 100)
  m.finish(m.begin('h', ABSENT, 200), 'ok', 300)
  expect(m.mustExist('h', 400)).toBe(false)
  expect(m.judgeDownload('h', A, 400, 500, ['a0', 'a1'])).toMatch(/overwritten/)
  m.finish(m.begin('h', B, 600), 'ok', 700)
  expect(m.mustExist('h', 800)).toBe(true)
  m.finish(removal, 'failed', 10)
})
