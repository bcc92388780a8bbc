import {mkdir, mkdtemp, rm, symlink, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {nameUnder, normalizePrefix, sameAsRemote, walkFolder} from '../../src/client/folder.js'

let dir: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chunky-folder-'))
  await mkdir(join(dir, 'b', 'c'), {recursive: true})
  await writeFile(join(dir, 'b', 'c', 'deep.mp4'), 'x')
  await writeFile(join(dir, 'a.mp4'), 'xy')
  await writeFile(join(dir, '.a.mp4.0123456789ab.chunky-tmp'), 'left by an interrupted download')
  await symlink(join(dir, 'a.mp4'), join(dir, 'link.mp4'))
})

afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

describe('folders', () => {
  it('walks regular files only, sorted, with / separated relative paths', async () => {
    expect((await walkFolder(dir)).map((f) => [f.rel, f.size])).toEqual([['a.mp4', 2], ['b/c/deep.mp4', 1]])
    await expect(walkFolder(join(dir, 'a.mp4'))).rejects.toThrow(/is not a directory/)
    await expect(walkFolder(join(dir, 'nope'))).rejects.toThrow(/no such file or directory/)
  })

  it('takes a prefix with or without its trailing slash, and refuses a bad one', () => {
    expect(normalizePrefix('talks/2026/')).toBe('talks/2026')
    expect(normalizePrefix(undefined)).toBeUndefined()
    expect(normalizePrefix('/')).toBeUndefined()
    expect(() => normalizePrefix('a/../b')).toThrow(/bad --prefix "a\/\.\.\/b"/)
    expect(nameUnder('talks', 'x/y.mp4')).toBe('talks/x/y.mp4')
    expect(nameUnder(undefined, 'y.mp4')).toBe('y.mp4')
  })

  it('calls a file unchanged only when size, chunk size and every checksum match', () => {
    const file = {path: '', name: 'n', size: 20, chunkSize: 10, ranges: [], digests: ['a'.repeat(64), 'b'.repeat(64)]}
    const remote = {name: 'n', size: 20, chunkSize: 10, committedAt: '', chunks: ['a'.repeat(64), 'b'.repeat(64)]}
    expect(sameAsRemote(file, remote)).toBe(true)
    expect(sameAsRemote(file, undefined)).toBe(false)
    expect(sameAsRemote(file, {...remote, chunkSize: 20})).toBe(false)
    expect(sameAsRemote(file, {...remote, chunks: ['a'.repeat(64), 'c'.repeat(64)]})).toBe(false)
    expect(sameAsRemote(file, {...remote, size: 19})).toBe(false)
  })
})
