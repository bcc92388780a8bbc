import {PassThrough} from 'node:stream'
import {describe, expect, it} from 'vitest'
import {PlainView, transferView} from '../../src/cli/transfer-view.js'

// Progress on a standard error that is not a terminal: a plain line at most every interval, none
// for a short phase, nothing at all with --json.
const MiB = 1024 * 1024

function capture(): {stream: PassThrough; text: () => string} {
  const stream = new PassThrough()
  let text = ''
  stream.on('data', (d: Buffer) => (text += d.toString()))
  return {stream, text: () => text}
}

describe('plain progress lines', () => {
  it('prints at most one line per interval with percent, rate and ETA, then a closing line', () => {
    const out = capture()
    let now = 0
    const view = new PlainView(out.stream, 3_000, () => now)
    view.start('uploading', 100 * MiB)
    for (let t = 0; t <= 10_000; t += 100) {
      now = t
      view.overall((t / 10_000) * 50 * MiB) // 5 MiB/s
    }
    view.step('committing')
    const lines = out.text().trim().split('\n')
    expect(lines).toEqual([
      'uploading  15%  15.0 MiB / 100.0 MiB  5.0 MiB/s  ETA 17s',
      'uploading  30%  30.0 MiB / 100.0 MiB  5.0 MiB/s  ETA 14s',
      'uploading  45%  45.0 MiB / 100.0 MiB  5.0 MiB/s  ETA 11s',
      'uploading  50%  50.0 MiB / 100.0 MiB in 10.0s',
    ])
  })

  it('counts the rate from where a resumed phase started', () => {
    const out = capture()
    let now = 0
    const view = new PlainView(out.stream, 3_000, () => now)
    view.start('uploading', 100 * MiB)
    view.overall(60 * MiB) // already stored
    now = 4_000
    view.overall(80 * MiB)
    expect(out.text()).toBe('uploading  80%  80.0 MiB / 100.0 MiB  5.0 MiB/s  ETA 4s\n')
  })

  it('says nothing for a short phase; notes go out as they happen', () => {
    const out = capture()
    let now = 0
    const view = new PlainView(out.stream, 3_000, () => now)
    view.start('hashing', 10 * MiB)
    now = 500
    view.overall(10 * MiB)
    view.note('chunk 3: n2 failed, retrying')
    view.stop()
    expect(out.text()).toBe('chunky: chunk 3: n2 failed, retrying\n')
  })

  it('with --json (quiet) prints nothing at all', () => {
    const out = capture()
    const view = transferView({interactive: false, quiet: true, stream: out.stream as unknown as NodeJS.WriteStream, lineIntervalMs: 0})
    view.start('uploading', 10)
    view.overall(5)
    view.note('something')
    view.stop()
    expect(out.text()).toBe('')
  })
})
