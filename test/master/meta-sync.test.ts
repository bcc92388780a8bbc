import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import pg from 'pg'
import {afterAll, afterEach, beforeAll, beforeEach, describe, expect, it} from 'vitest'
import {startPostgres, type PostgresServer} from '../../scripts/postgres-server.mjs'
import {openDatabase, type Db} from '../../src/master/db.js'
import {StaleEpochError, type MetaChange, type MetaStore} from '../../src/master/meta-store.js'
import {loadWorkingCopy, WarmCopy} from '../../src/master/meta-sync.js'
import {PostgresMetaStore} from '../../src/master/postgres-meta-store.js'
import {SqliteMetaStore} from '../../src/master/sqlite-meta-store.js'
import {silentLogger} from '../../src/util/log.js'

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
  const {rows} = await loadWorkingCopy(copy, new SqliteMetaStore(source))
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

// A standby's copy follows the leader's writes through the store's change log, and at takeover
// applies only what it has not seen; behind the log's trim, or with no position, it loads everything.
describe('a warm copy on PostgreSQL', () => {
  let server: PostgresServer
  const stores: PostgresMetaStore[] = []
  const open = async (opts: {keepChangesMs?: number} = {}) => {
    const store = new PostgresMetaStore(server.url, {leaseMs: 3000, retryMs: 100, log: silentLogger, ...opts})
    await store.init()
    stores.push(store)
    return store
  }
  const file = (name: string): MetaChange => ({table: 'files', op: 'put', row: {name, size: 0, chunk_size: 1048576, chunk_count: 0, committed_at: 'x'}})
  const gone = (name: string): MetaChange => ({table: 'files', op: 'delete', row: {name}})

  beforeAll(async () => {
    server = await startPostgres()
  }, 60_000)
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close()
    const admin = new pg.Client({connectionString: server.url})
    await admin.connect()
    await admin.query('DELETE FROM chunky_files')
    await admin.end()
  })
  afterAll(async () => {
    await server?.destroy()
  }, 60_000)

  it("loads everything first, then applies only the leader's later writes, in order", async () => {
    const leader = await open()
    const {epoch} = await leader.lead('http://leader', AbortSignal.timeout(20_000))
    await leader.apply(epoch, [file('a')])
    const warm = new WarmCopy(copy, await open(), silentLogger)
    const first = await warm.catchUp()
    expect(first).toMatchObject({full: true})
    expect(names(copy)).toEqual(['a'])
    await leader.apply(epoch, [file('b'), file('c')])
    await leader.apply(epoch, [gone('a'), file('d')])
    await leader.apply(epoch, [gone('d')])
    expect(await warm.catchUp()).toEqual({full: false, rows: 5, position: first.position + 3})
    expect(names(copy)).toEqual(['b', 'c'])
    expect(await warm.catchUp()).toEqual({full: false, rows: 0, position: first.position + 3})
    warm.forget() // it led and wrote to the copy: the next catch-up cannot trust it
    expect(await warm.catchUp()).toMatchObject({full: true, position: first.position + 3})
    expect(names(copy)).toEqual(['b', 'c'])
  })

  it('loads everything when the log no longer holds the next write it needs', async () => {
    const leader = await open({keepChangesMs: 0}) // every write trims the ones before it
    const {epoch} = await leader.lead('http://leader', AbortSignal.timeout(20_000))
    await leader.apply(epoch, [file('a')])
    const warm = new WarmCopy(copy, await open(), silentLogger)
    await warm.catchUp()
    await leader.apply(epoch, [file('b')])
    await leader.apply(epoch, [file('c')])
    expect(await warm.catchUp()).toMatchObject({full: true})
    expect(names(copy)).toEqual(['a', 'b', 'c'])
    await leader.apply(epoch, [file('d')])
    expect(await warm.catchUp()).toMatchObject({full: false, rows: 1}) // the next write is still there
    expect(names(copy)).toEqual(['a', 'b', 'c', 'd'])
  })

  it('loads everything when the log holds another history than the copy saw (a promoted standby that missed the last write)', async () => {
    const old = await open()
    const {epoch: oldEpoch} = await old.lead('http://old', AbortSignal.timeout(20_000))
    await old.apply(oldEpoch, [file('a')])
    await old.apply(oldEpoch, [file('lost')])
    const warm = new WarmCopy(copy, await open(), silentLogger)
    await warm.catchUp()
    expect(names(copy)).toEqual(['a', 'lost'])
    await old.close()
    // What the promoted standby has: everything but the last write.
    const admin = new pg.Client({connectionString: server.url})
    await admin.connect()
    await admin.query("DELETE FROM chunky_files WHERE name = 'lost'")
    await admin.query('DELETE FROM chunky_changes WHERE seq = (SELECT log_seq FROM chunky_leader)')
    await admin.query('UPDATE chunky_leader SET log_seq = log_seq - 1')
    await admin.end()
    const next = await open()
    const {epoch} = await next.lead('http://next', AbortSignal.timeout(20_000))
    await next.apply(epoch, [file('b')]) // at the position the lost write had
    expect(await warm.catchUp()).toMatchObject({full: true})
    expect(names(copy)).toEqual(['a', 'b'])
  })

  it('loads everything after a leader of an older version, which wrote without logging', async () => {
    const leader = await open()
    const {epoch} = await leader.lead('http://new', AbortSignal.timeout(20_000))
    await leader.apply(epoch, [file('a')])
    const warm = new WarmCopy(copy, await open(), silentLogger)
    await warm.catchUp()
    await leader.close()
    // What an older master does when it leads and commits: its own epoch, its rows, nothing logged.
    const admin = new pg.Client({connectionString: server.url})
    await admin.connect()
    await admin.query('UPDATE chunky_leader SET epoch = epoch + 1')
    await admin.query("INSERT INTO chunky_files (name, size, chunk_size, chunk_count, committed_at) VALUES ('unlogged', 0, 1048576, 0, 'x')")
    await admin.end()
    expect(await warm.catchUp()).toMatchObject({full: false, rows: 0}) // nothing it could know of
    const next = await open()
    await next.lead('http://next', AbortSignal.timeout(20_000))
    expect(await warm.catchUp()).toMatchObject({full: true}) // taking over: after the raise of the epoch
    expect(names(copy)).toEqual(['a', 'unlogged'])
  })

  it('a master that stops cuts a full load short and leaves the copy as it was', async () => {
    const leader = await open()
    const {epoch} = await leader.lead('http://leader', AbortSignal.timeout(20_000))
    await leader.apply(epoch, [file('a')])
    const warm = new WarmCopy(copy, await open(), silentLogger)
    const loading = warm.catchUp()
    await warm.stop(true)
    await expect(loading).rejects.toThrow('the master is stopping')
    expect(copy.inTransaction).toBe(false)
    expect(names(copy)).toEqual(['old'])
  })

  it('never applies a write of a leader whose epoch was raised past', async () => {
    const old = await open()
    const {epoch: oldEpoch} = await old.lead('http://old', AbortSignal.timeout(20_000))
    await old.apply(oldEpoch, [file('a')])
    const warm = new WarmCopy(copy, await open(), silentLogger)
    await warm.catchUp()
    const admin = new pg.Client({connectionString: server.url}) // it is paused, say: its lock session ends, it still thinks it leads
    await admin.connect()
    await admin.query("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()")
    await admin.end()
    const next = await open()
    const {epoch} = await next.lead('http://next', AbortSignal.timeout(20_000))
    await expect(old.apply(oldEpoch, [file('late')])).rejects.toBeInstanceOf(StaleEpochError)
    await next.apply(epoch, [file('b')])
    expect(await warm.catchUp()).toMatchObject({full: false, rows: 1})
    expect(names(copy)).toEqual(['a', 'b'])
  })
})
