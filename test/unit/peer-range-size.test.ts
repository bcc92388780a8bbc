import {describe, expect, it} from 'vitest'
import {firstPeerRange, PEER_FIRST_RANGE_BYTES, PEER_RANGE_BYTES} from '../../src/node/serve-files.js'

const MiB = 1024 * 1024

describe('firstPeerRange', () => {
  it('starts a seek small, and a read that has sent more with ranges of a quarter of that, up to the cap', () => {
    expect(firstPeerRange(0)).toBe(PEER_FIRST_RANGE_BYTES)
    expect(firstPeerRange(256 * 1024)).toBe(PEER_FIRST_RANGE_BYTES)
    expect(firstPeerRange(4 * MiB)).toBe(MiB)
    expect(firstPeerRange(10 * MiB)).toBe(2 * MiB)
    expect(firstPeerRange(100 * MiB)).toBe(PEER_RANGE_BYTES)
    // never more than a quarter of what was sent is asked for ahead, beyond the first range
    for (let sent = 0; sent < 64 * MiB; sent += 777_777) expect(firstPeerRange(sent)).toBeLessThanOrEqual(Math.max(PEER_FIRST_RANGE_BYTES, sent / 4))
  })
})
