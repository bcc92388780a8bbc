import {PassThrough} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'
import {describe, expect, it} from 'vitest'
import {transferView} from '../../src/cli/transfer-view.js'

// The terminal view loads its drawing modules (ora, cli-progress) on first use: what was said while
// they loaded is drawn once they are there, and a view stopped before that draws nothing.
function terminal(): {stream: NodeJS.WriteStream; text: () => string} {
  const stream = Object.assign(new PassThrough(), {isTTY: true, columns: 100, rows: 40, cursorTo: () => true, moveCursor: () => true, clearLine: () => true})
  let text = ''
  stream.on('data', (d: Buffer) => (text += d.toString()))
  return {stream: stream as unknown as NodeJS.WriteStream, text: () => text}
}

async function until(what: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!what()) {
    if (Date.now() > deadline) throw new Error('timed out')
    await sleep(10)
  }
}

describe('terminal view, loaded on first use', () => {
  it('replays what was said while it loaded', async () => {
    const out = terminal()
    const view = transferView({interactive: true, stream: out.stream})
    view.step('asking the master')
    view.note('node n2 failed, trying the next copy')
    await until(() => out.text().includes('node n2 failed, trying the next copy'))
    view.stop()
  })

  it('draws nothing when stopped before it loaded', async () => {
    const out = terminal()
    const view = transferView({interactive: true, stream: out.stream})
    view.start('uploading', 1024)
    view.overall(512)
    view.stop()
    // a second view proves the module has loaded by now; the first must still have said nothing
    const other = terminal()
    const second = transferView({interactive: true, stream: other.stream})
    second.note('loaded')
    await until(() => other.text().includes('loaded'))
    second.stop()
    expect(out.text()).toBe('')
  })
})
