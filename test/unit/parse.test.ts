import {describe, expect, it} from 'vitest'
import {formatBytes, parseDuration, parseSize} from '../../src/util/parse.js'

describe('durations', () => {
  it.each([
    ['500ms', 500],
    ['2s', 2000],
    ['10m', 600_000],
    ['24h', 86_400_000],
    ['1.5s', 1500],
    ['0s', 0],
  ])('%s = %d ms', (input, ms) => expect(parseDuration(input)).toBe(ms))
  it.each(['', '10', 'ten seconds', '5 weeks', '-1s', '1e3s'])('refuses %j with an example of what works', (input) => {
    expect(() => parseDuration(input)).toThrow(/like 500ms, 2s, 10m or 24h/)
  })
})

describe('sizes', () => {
  it.each([
    ['10MiB', 10_485_760],
    ['10MB', 10_000_000],
    ['1048576', 1_048_576],
    ['64KiB', 65_536],
    ['1GiB', 1_073_741_824],
    ['10 mib', 10_485_760],
  ])('%s = %d bytes', (input, bytes) => expect(parseSize(input)).toBe(bytes))
  it.each(['', 'MiB', '10 parsecs', '-5MB', '1.5B'])('refuses %j', (input) => expect(() => parseSize(input)).toThrow())
  it('formats bytes for people', () => {
    expect(formatBytes(512)).toBe('512 B')
    expect(formatBytes(10_485_760)).toBe('10.0 MiB')
  })
})
