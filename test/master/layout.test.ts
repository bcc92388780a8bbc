import {describe, expect, it} from 'vitest'
import {checkChunkLayout} from '../../src/master/layout.js'

const K = 64 * 1024
const chunks = (...sizes: number[]) => sizes.map((size, index) => ({index, size}))

describe('checkChunkLayout', () => {
  it('accepts an empty file with no chunks, exact multiples and a short last chunk', () => {
    expect(() => checkChunkLayout({size: 0, chunkSize: K, chunks: []})).not.toThrow()
    expect(() => checkChunkLayout({size: 2 * K, chunkSize: K, chunks: chunks(K, K)})).not.toThrow()
    expect(() => checkChunkLayout({size: 2 * K + 1, chunkSize: K, chunks: chunks(K, K, 1)})).not.toThrow()
  })

  it('refuses wrong counts, sizes, order and chunk sizes out of range', () => {
    expect(() => checkChunkLayout({size: 2 * K, chunkSize: K, chunks: chunks(K)})).toThrow('has 2 chunks, not 1')
    expect(() => checkChunkLayout({size: 2 * K + 1, chunkSize: K, chunks: chunks(K, K, 2)})).toThrow('chunk 2 must be 1 bytes')
    expect(() => checkChunkLayout({size: 2 * K, chunkSize: K, chunks: [{index: 1, size: K}, {index: 0, size: K}]})).toThrow('index 1')
    expect(() => checkChunkLayout({size: 10, chunkSize: 1000, chunks: chunks(10)})).toThrow(expect.objectContaining({code: 'BAD_REQUEST'}))
  })
})
