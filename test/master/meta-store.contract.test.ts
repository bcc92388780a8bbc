import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest'
import {openDatabase, type Db} from '../../src/master/db.js'
import {StaleEpochError, type MetaRow, type MetaStore, type MetaTable} from '../../src/master/meta-store.js'
import {PostgresMetaStore} from '../../src/master/postgres-meta-store.js'
import {SqliteMetaStore} from '../../src/master/sqlite-meta-store.js'
import {silentLogger} from '../../src/util/log.js'
import {startPostgres, type PostgresServer} from '../../scripts/postgres-server.mjs'
import pg from 'pg'

/** One kind of store: `open()` gives another handle (another master) on the same store. */
interface StoreKind {
  name: string
  setup(): Promise<void>
  open(): Promise<MetaStore>
  /** Ends a leader's hold as a pause past its lease would (its handle stays, as a paused process's does). */
  endLease(store: MetaStore): Promise<void>
  /** Takes `column` out of `table` as a store made by an older version, before the column existed, would have it. */
  dropColumn(table: MetaTable, column: string): Promise<void>
  /** Only one handle leads at a time (PostgreSQL); SQLite's one master per data dir is the data dir lock's job. */
  exclusive: boolean
  teardown(): Promise<void>
}

function sqliteKind(): StoreKind {
  let dir = ''
  const handles: Db[] = []
  return {
    name: 'sqlite',
    async setup() {
      dir = await mkdtemp(join(tmpdir(), 'chunky-meta-'))
    },
    async open() {
      const db = openDatabase(dir) // as a master's start does, with its upgrade step
      handles.push(db)
      return new SqliteMetaStore(db)
    },
    async endLease() {},
    async dropColumn(table, column) {
      const db = openDatabase(dir)
      db.exec(`ALTER TABLE ${table} DROP COLUMN "${column}"`)
      db.close()
    },
    exclusive: false,
    async teardown() {
      for (const db of handles.splice(0)) db.close()
      await rm(dir, {recursive: true, force: true})
    },
  }
}

function postgresKind(): StoreKind {
  let server: PostgresServer | undefined
  return {
    name: 'postgres',
    async setup() {
      server = await startPostgres()
    },
    async open() {
      const store = new PostgresMetaStore(server!.url, {leaseMs: 3000, retryMs: 100, log: silentLogger})
      await store.init()
      return store
    },
    async endLease() {
      const admin = new pg.Client({connectionString: server!.url})
      await admin.connect()
      await admin.query("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()")
      await admin.end()
    },
    async dropColumn(table, column) {
      const admin = new pg.Client({connectionString: server!.url})
      await admin.connect()
      await admin.query(`ALTER TABLE chunky_${table} DROP COLUMN "${column}"`)
      await admin.end()
    },
    exclusive: true,
    async teardown() {
      await server?.destroy()
    },
  }
}

export const STORE_KINDS: StoreKind[] = [sqliteKind(), postgresKind()]

async function loaded(store: MetaStore): Promise<Map<MetaTable, MetaRow[]>> {
  const tables = new Map<MetaTable, MetaRow[]>()
  await store.load((table, rows) => tables.set(table, [...(tables.get(table) ?? []), ...rows]))
  return tables
}

const sortBy = (key: string) => (a: MetaRow, b: MetaRow) => String(a[key]).localeCompare(String(b[key]))

describe.each(STORE_KINDS)('the $name metadata store', (kind) => {
  const opened: MetaStore[] = []
  const open = async () => {
    const store = await kind.open()
    opened.push(store)
    return store
  }
  beforeAll(() => kind.setup(), 60_000)
  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close() // each test's leaders let go
  })
  afterAll(() => kind.teardown(), 60_000)

  it('raises the epoch at every takeover, keeps one store id, and says who leads', async () => {
    const a = await open()
    const first = await a.lead('http://a', AbortSignal.timeout(20_000))
    expect(await a.leader()).toEqual({epoch: first.epoch, url: 'http://a'})
    await a.close()
    const b = await open()
    const second = await b.lead('http://b', AbortSignal.timeout(20_000))
    expect(second.epoch).toBeGreaterThan(first.epoch)
    expect(second.storeId).toBe(first.storeId)
    expect(await b.leader()).toEqual({epoch: second.epoch, url: 'http://b'})
  })

  it('keeps what the leader writes, the last change of a row winning, with whole numbers as numbers', async () => {
    const store = await open()
    const {epoch} = await store.lead('http://c', AbortSignal.timeout(20_000))
    const big = 2 ** 40 + 7 // sizes and times go past 32 bits
    await store.apply(epoch, [
      {table: 'files', op: 'put', row: {name: 'a.mp4', size: big, chunk_size: 10, chunk_count: 1, committed_at: '2026-01-01T00:00:00.000Z'}},
      {table: 'files', op: 'put', row: {name: 'b.mp4', size: 1, chunk_size: 10, chunk_count: 1, committed_at: 'x'}},
      {table: 'chunks', op: 'put', row: {chunk_id: 'c1', committed_version: 0, max_version: 1, size: 0, sha256: ''}},
      {table: 'chunks', op: 'put', row: {chunk_id: 'c1', committed_version: 1, max_version: 2, size: 5, sha256: 'ab'}},
      {table: 'chunk_ids', op: 'put', row: {name: 'a.mp4', idx: 0, chunk_id: 'c1'}},
      {table: 'planned', op: 'put', row: {chunk_id: 'c1', version: 2, size: 5, sha256: 'ab', upload_id: 'u1'}},
      {table: 'meta', op: 'put', row: {key: 'grant_key', value: 'k'}},
      {table: 'tus_sessions', op: 'put', row: {id: 't1', upload_id: 'u1', name: 'a.mp4', length: null, offset: 0, chunk_size: 10, metadata: '', max_size: null, creator: 'n1', created_ms: big, expires_ms: big, holder: null, epoch: 1, state: 'open', parts: null}},
      {table: 'node_drains', op: 'put', row: {node_id: 'n2', started_ms: big}},
    ])
    await store.apply(epoch, [
      {table: 'files', op: 'delete', row: {name: 'b.mp4'}},
      {table: 'planned', op: 'delete', row: {chunk_id: 'c1', version: 2}},
      {table: 'planned', op: 'put', row: {chunk_id: 'c1', version: 3, size: 5, sha256: 'cd', upload_id: 'u2'}},
      {table: 'uploads', op: 'put', row: {upload_id: 'u2', name: 'a.mp4', size: 5, chunk_size: 10, chunk_count: 1, created_ms: big}},
      {table: 'upload_chunks', op: 'put', row: {upload_id: 'u2', idx: 0, chunk_id: 'c1', version: 3, size: 5, sha256: 'cd', skip: 0}},
      {table: 'upload_chunks', op: 'delete', row: {upload_id: 'u2', idx: 0}},
      {table: 'upload_chunks', op: 'put', row: {upload_id: 'u2', idx: 0, chunk_id: 'c1', version: 3, size: 5, sha256: 'cd', skip: 1}},
    ])
    const other = await open() // what another master loads
    const tables = await loaded(other)
    expect(tables.get('files')).toEqual([{name: 'a.mp4', size: big, chunk_size: 10, chunk_count: 1, committed_at: '2026-01-01T00:00:00.000Z'}])
    expect(tables.get('chunks')).toEqual([{chunk_id: 'c1', committed_version: 1, max_version: 2, size: 5, sha256: 'ab'}])
    expect(tables.get('chunk_ids')).toEqual([{name: 'a.mp4', idx: 0, chunk_id: 'c1'}])
    expect(tables.get('planned')).toEqual([{chunk_id: 'c1', version: 3, size: 5, sha256: 'cd', upload_id: 'u2'}])
    expect(tables.get('uploads')).toEqual([{upload_id: 'u2', name: 'a.mp4', size: 5, chunk_size: 10, chunk_count: 1, created_ms: big}])
    expect(tables.get('upload_chunks')).toEqual([{upload_id: 'u2', idx: 0, chunk_id: 'c1', version: 3, size: 5, sha256: 'cd', skip: 1}])
    expect(tables.get('meta')?.sort(sortBy('key'))).toEqual([{key: 'grant_key', value: 'k'}])
    expect(tables.get('tus_sessions')).toEqual([{id: 't1', upload_id: 'u1', name: 'a.mp4', length: null, offset: 0, chunk_size: 10, metadata: '', max_size: null, creator: 'n1', created_ms: big, expires_ms: big, holder: null, epoch: 1, state: 'open', parts: null}])
    expect(tables.get('node_drains')).toEqual([{node_id: 'n2', started_ms: big}])
  })

  // Only a shared store can have two masters at once: on SQLite one master per data dir is the
  // data-dir lock's rule (replica-faults.integration.test.ts), so this case exists for PostgreSQL alone.
  if (kind.exclusive) it('lets one master lead at a time; the next one leads once the first lets go', async () => {
    const first = await open()
    await first.lead('http://first', AbortSignal.timeout(20_000))
    const second = await open()
    await expect(second.lead('http://second', AbortSignal.timeout(800))).rejects.toThrow()
    await first.close()
    await second.lead('http://second', AbortSignal.timeout(20_000))
    expect((await second.leader())?.url).toBe('http://second')
  })

  it('refuses a write with an old epoch and changes nothing, once another master took over', async () => {
    const old = await open()
    const {epoch: oldEpoch} = await old.lead('http://old', AbortSignal.timeout(20_000))
    const lost: string[] = []
    old.onLost((reason) => lost.push(reason))
    await kind.endLease(old) // it is paused, say: it still thinks it leads
    const next = await open()
    const {epoch} = await next.lead('http://new', AbortSignal.timeout(20_000))
    const before = await loaded(next)
    const write = old.apply(oldEpoch, [{table: 'files', op: 'put', row: {name: 'late.mp4', size: 1, chunk_size: 1, chunk_count: 1, committed_at: 'x'}}])
    await expect(write).rejects.toBeInstanceOf(StaleEpochError)
    await expect(write).rejects.toThrow(`epoch ${oldEpoch} is no longer the current one (${epoch})`)
    expect(await loaded(next)).toEqual(before)
    await next.apply(epoch, [{table: 'files', op: 'put', row: {name: 'ok.mp4', size: 1, chunk_size: 1, chunk_count: 1, committed_at: 'x'}}])
    expect((await loaded(next)).get('files')?.map((f) => f.name).sort()).toEqual(['a.mp4', 'ok.mp4'])
    if (kind.exclusive) expect(lost.length).toBe(1) // and it knows it no longer leads
  })

  it('gives a table an older version made the nullable column added since, keeping its rows (the upgrade at start)', async () => {
    const final = {id: 't2', upload_id: '', name: 'joined.mp4', length: 6, offset: 6, chunk_size: 10, metadata: '', max_size: null, creator: 'n1', created_ms: 1, expires_ms: 2, holder: null, epoch: 1, state: 'done'}
    const old = await open()
    const {epoch} = await old.lead('http://old-version', AbortSignal.timeout(20_000))
    await old.apply(epoch, [{table: 'tus_sessions', op: 'put', row: {...final, parts: 'p1 p2'}}])
    await old.close()
    await kind.dropColumn('tus_sessions', 'parts') // the table as a version before that column left it
    const upgraded = await open() // the next master's start
    expect((await loaded(upgraded)).get('tus_sessions')).toContainEqual({...final, parts: null})
    const next = await upgraded.lead('http://new-version', AbortSignal.timeout(20_000))
    await upgraded.apply(next.epoch, [{table: 'tus_sessions', op: 'put', row: {...final, parts: 'p1 p2'}}])
    expect((await loaded(await open())).get('tus_sessions')).toContainEqual({...final, parts: 'p1 p2'})
  })

  it('writes a batch all or nothing', async () => {
    const store = await open()
    const {epoch} = await store.lead('http://d', AbortSignal.timeout(20_000))
    const before = await loaded(store)
    const bad = store.apply(epoch, [
      {table: 'files', op: 'put', row: {name: 'half.mp4', size: 1, chunk_size: 1, chunk_count: 1, committed_at: 'x'}},
      {table: 'chunk_ids', op: 'put', row: {name: 'z', idx: 0}}, // lacks chunk_id
    ])
    await expect(bad).rejects.toThrow(/chunk_id/)
    expect(await loaded(store)).toEqual(before)
  })
})
