import {describe, expect, it} from 'vitest'
import {withMasterRetry} from '../../src/client/master-retry.js'
import {silentView} from '../../src/client/view.js'
import {ChunkyError} from '../../src/protocol/index.js'

describe('withMasterRetry', () => {
  it('retries a master that gave no answer, with a note each time', async () => {
    const notes: string[] = []
    let calls = 0
    const value = await withMasterRetry(
      async () => {
        if (++calls < 3) throw new ChunkyError('MASTER_UNREACHABLE', 'cannot reach the master at http://m (ECONNREFUSED): is `chunky master` running?')
        return 'planned'
      },
      {view: {...silentView, note: (m) => notes.push(m)}, what: 'planning', baseDelayMs: 1},
    )
    expect(value).toBe('planned')
    expect(calls).toBe(3)
    expect(notes).toHaveLength(2)
    expect(notes[0]).toMatch(/^planning: cannot reach the master at http:\/\/m \(ECONNREFUSED\); try 2 in/)
  })

  it('gives up after a bounded number of tries, and never repeats an answered error', async () => {
    let calls = 0
    const unreachable = () => {
      calls++
      throw new ChunkyError('MASTER_UNREACHABLE', 'down')
    }
    await expect(withMasterRetry(async () => unreachable(), {view: silentView, what: 'x', tries: 3, baseDelayMs: 1})).rejects.toThrow('down')
    expect(calls).toBe(3)
    calls = 0
    const refused = async () => {
      calls++
      throw new ChunkyError('NO_NODES', 'no node')
    }
    await expect(withMasterRetry(refused, {view: silentView, what: 'x', baseDelayMs: 1})).rejects.toThrow('no node')
    expect(calls).toBe(1)
  })

  it('with several masters, waits out a new leader that knows no node yet (NO_NODES); with one, does not', async () => {
    let calls = 0
    const noNodesTwice = async () => {
      if (++calls < 3) throw new ChunkyError('NO_NODES', 'no storage node is alive')
      return 'planned'
    }
    expect(await withMasterRetry(noNodesTwice, {view: silentView, what: 'x', masters: 2, baseDelayMs: 1})).toBe('planned')
    expect(calls).toBe(3)
    calls = 0
    await expect(withMasterRetry(noNodesTwice, {view: silentView, what: 'x', masters: 1, baseDelayMs: 1})).rejects.toMatchObject({code: 'NO_NODES'})
    expect(calls).toBe(1)
  })

  it('an abort during the backoff is an interruption', async () => {
    const controller = new AbortController()
    const pending = withMasterRetry(
      async () => {
        controller.abort()
        throw new ChunkyError('MASTER_UNREACHABLE', 'down')
      },
      {view: silentView, what: 'x', signal: controller.signal, baseDelayMs: 10_000},
    )
    await expect(pending).rejects.toMatchObject({name: 'InterruptedError'})
  })
})
