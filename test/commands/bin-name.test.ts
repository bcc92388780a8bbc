import {describe, expect, it} from 'vitest'
import {invokedAs, withInvokedBin} from '../../src/cli/bin-name.js'

describe('hints name the binary as the user ran it', () => {
  it.each([
    ['/usr/local/bin/chunky', '/home/me', 'chunky'], // npm link, a global install
    ['/repo/node_modules/.bin/chunky', '/repo', 'chunky'], // npx
    ['/repo/bin/run.js', '/repo', './bin/run.js'], // from a checkout
    ['/repo/bin/run.js', '/repo/bin', './run.js'],
    ['/repo/bin/run.js', '/elsewhere', '/repo/bin/run.js'], // far away: the whole path
    ['', '/repo', 'chunky'],
  ])('%s run in %s is written %s', (script, cwd, shown) => {
    expect(invokedAs('chunky', script, cwd)).toBe(shown)
  })

  it('rewrites only backquoted hints', () => {
    expect(withInvokedBin('chunky: is `chunky master` running? (`chunky config set master URL`)', 'chunky', './bin/run.js'))
      .toBe('chunky: is `./bin/run.js master` running? (`./bin/run.js config set master URL`)')
    expect(withInvokedBin('is `chunky master` running?', 'chunky', 'chunky')).toBe('is `chunky master` running?')
  })
})
