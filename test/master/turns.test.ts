import {expect, test} from 'vitest'
import {Turns} from '../../src/master/turns.js'

/** Queues `marks.push('other')` as the rest of the master would: a callback of the same turn, queued after the turns began. */
const otherWork = (marks: string[]) => new Promise<void>((resolve) => setImmediate(() => (marks.push('other'), resolve())))

test('with budget left, queued slices run one after another in the same turn', async () => {
  const turns = new Turns(60_000)
  const marks: string[] = []
  for (const name of ['a', 'b', 'c']) turns.run(() => marks.push(name))
  await otherWork(marks)
  expect(marks).toEqual(['a', 'b', 'c', 'other'])
})

test('once a turn has spent its budget, the rest wait for a later turn and other work goes first', async () => {
  const turns = new Turns(0) // every slice spends the whole budget
  const marks: string[] = []
  for (const name of ['a', 'b', 'c']) turns.run(() => marks.push(name))
  const other = otherWork(marks)
  await new Promise<void>((resolve) => turns.run(resolve))
  await other
  expect(marks).toEqual(['a', 'other', 'b', 'c'])
})

test('a caller of next() runs its slice before the turn decides whether another fits', async () => {
  const turns = new Turns(0)
  const marks: string[] = []
  const link = async (name: string) => {
    for (let slice = 1; slice <= 2; slice++) {
      await turns.next()
      marks.push(`${name}${slice}`)
    }
  }
  const links = Promise.all([link('x'), link('y')])
  await otherWork(marks)
  await links
  // One slice a turn, taken in turn: x's second slice queues behind y's first.
  expect(marks).toEqual(['x1', 'other', 'y1', 'x2', 'y2'])
})
