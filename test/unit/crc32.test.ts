import {randomBytes} from 'node:crypto'
import {crc32 as zlibCrc32} from 'node:zlib'
import {describe, expect, it} from 'vitest'
import {crc32, nativeCrc32Path} from '../../src/util/crc32.js'

describe('crc32', () => {
  it('gives zlib\'s CRC-32, in one piece and carried across pieces, so sidecars already on disk stay valid', () => {
    for (const size of [0, 1, 7, 4096, 65536, 65536 + 13]) {
      const data = randomBytes(size)
      expect(crc32(data)).toBe(zlibCrc32(data))
      const cut = Math.floor(size / 3)
      expect(crc32(data.subarray(cut), crc32(data.subarray(0, cut)))).toBe(zlibCrc32(data))
    }
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926)
  })

  it.runIf(process.platform === 'linux' && process.arch === 'x64')('uses the native build where the package ships one', () => {
    expect(nativeCrc32Path).toMatch(/@node-rs[/\\]crc32/)
  })
})
