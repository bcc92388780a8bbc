import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, beforeEach, expect, it} from 'vitest'
import {openDatabase, type Db} from '../../src/master/db.js'
import type {MetaStore} from '../../src/master/meta-store.js'
import {loadWorkingCopy} from '../../src/master/meta-sync.js'
import {SqliteMetaStore} from '../../src/master/sqlite-meta-store.js'

// A new leader's working copy is loaded from the store page by page in one transaction: all of it,
// or (when the store fails halfway) none of it, with the copy as it was.
let dir: string
let source: Db
let copy: Db

const names = (db: Db) => (db.prepare('SELECT name FROM files ORDER BY name').all() as {name: string}[]).map((r) => r.name)

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chunky-meta-sync-'))
  source = openDatabase(join(dir, 'source'))
  copy = openDatabase(join(dir, 'copy'))
  const file = source.prepare("INSERT INTO files (name, size, chunk_size, chunk_count, committed_at) VALUES (?, 0, 1048576, 0, '2026-12-01T00:00:00.000Z')")
  for (let i = 0; i < 5; i++) file.run(`f${i}`)
  copy.prepare("INSERT INTO files (name, size, chunk_size, chunk_count, committed_at) VALUES ('old', 0, 1048576, 0, '2026-11-30T00:00:00.000Z')").run()
})

afterEach(async () => {
  source.close()
  copy.close()
  await rm(dir, {recursive: true, force: true})
})

it('replaces the durable tables with every page the store gives', async () => {
  const rows = await loadWorkingCopy(copy, new SqliteMetaStore(source))
  expect(names(copy)).toEqual(['f0', 'f1', 'f2', 'f3', 'f4'])
  expect(rows).toBe((source.prepare('SELECT COUNT(*) AS n FROM files').get() as {n: number}).n + (source.prepare('SELECT COUNT(*) AS n FROM meta').get() as {n: number}).n)
  expect(copy.inTransaction).toBe(false)
})

it('leaves the copy as it was when the store fails after a page', async () => {
  const store = new SqliteMetaStore(source)
  const failing = {
    load: (onRows) =>
      store.load((table, rows) => {
        onRows(table, rows)
        throw new Error('connection lost mid-load')
      }),
  } as Pick<MetaStore, 'load'> as MetaStore
  await expect(loadWorkingCopy(copy, failing)).rejects.toThrow('connection lost mid-load')
  expect(copy.inTransaction).toBe(false)
  expect(names(copy)).toEqual(['old'])
})
