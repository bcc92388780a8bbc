import {randomBytes} from 'node:crypto'
import {mkdirSync} from 'node:fs'
import {join} from 'node:path'
import Database from 'better-sqlite3'
import {columnsToAdd, META_TABLE_NAMES, META_TABLES} from './meta-store.js'
import {REPLICA_STATES_VIEW} from './replica-state.js'
import {TUS_SESSIONS_SCHEMA} from './tus-sessions.js'

export type Db = Database.Database

// The master's metadata. A chunk's identity is (file name, index) -> chunk_id, stable across
// re-uploads so its versions keep rising on the same id. chunks.max_version is the highest version
// ever handed out (invariant 2); committed_version 0 means "never committed".
// A replica's state is derived, never stored: version == committed and not corrupt -> fresh,
// version < committed -> stale, corrupt = 1 -> corrupt, version > committed -> pending.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leader (
  id INTEGER PRIMARY KEY CHECK (id = 1), store_id TEXT NOT NULL, epoch INTEGER NOT NULL, url TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (
  id TEXT PRIMARY KEY, url TEXT NOT NULL, zone TEXT NOT NULL,
  free_bytes INTEGER NOT NULL DEFAULT 0, used_bytes INTEGER NOT NULL DEFAULT 0,
  chunk_count INTEGER NOT NULL DEFAULT 0, last_heartbeat_ms INTEGER
);
CREATE TABLE IF NOT EXISTS chunk_ids (
  name TEXT NOT NULL, idx INTEGER NOT NULL, chunk_id TEXT NOT NULL UNIQUE, PRIMARY KEY (name, idx)
);
CREATE TABLE IF NOT EXISTS chunks (
  chunk_id TEXT PRIMARY KEY, committed_version INTEGER NOT NULL DEFAULT 0,
  max_version INTEGER NOT NULL DEFAULT 0, size INTEGER NOT NULL DEFAULT 0, sha256 TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS planned (
  chunk_id TEXT NOT NULL, version INTEGER NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
  upload_id TEXT NOT NULL, PRIMARY KEY (chunk_id, version)
);
CREATE INDEX IF NOT EXISTS planned_upload ON planned (upload_id);
CREATE TABLE IF NOT EXISTS uploads (
  upload_id TEXT PRIMARY KEY, name TEXT NOT NULL, size INTEGER NOT NULL, chunk_size INTEGER NOT NULL,
  chunk_count INTEGER NOT NULL, created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_name ON uploads (name);
CREATE TABLE IF NOT EXISTS upload_chunks (
  upload_id TEXT NOT NULL, idx INTEGER NOT NULL, chunk_id TEXT NOT NULL, version INTEGER NOT NULL,
  size INTEGER NOT NULL, sha256 TEXT NOT NULL, skip INTEGER NOT NULL, PRIMARY KEY (upload_id, idx)
);
CREATE TABLE IF NOT EXISTS files (
  name TEXT PRIMARY KEY, size INTEGER NOT NULL, chunk_size INTEGER NOT NULL,
  chunk_count INTEGER NOT NULL, committed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS replicas (
  chunk_id TEXT NOT NULL, node_id TEXT NOT NULL, version INTEGER NOT NULL, sha256 TEXT NOT NULL,
  corrupt INTEGER NOT NULL DEFAULT 0,
  seen TEXT, -- who last wrote this row: the id of a chunk report, or link:N for a stored message on link N (replicas.ts)
  PRIMARY KEY (chunk_id, node_id, version)
);
-- Nodes being drained (nodes.ts owns it): no new chunks go there; started_ms tells which uploads may still write there.
CREATE TABLE IF NOT EXISTS node_drains (node_id TEXT PRIMARY KEY, started_ms INTEGER NOT NULL);
DROP INDEX IF EXISTS replicas_node;
CREATE INDEX IF NOT EXISTS replicas_node_chunk ON replicas (node_id, chunk_id);
`

/**
 * Claims dataDir for this process: one master per data dir. The claim is an exclusive SQLite lock on
 * DATA_DIR/master.lock, held for as long as the returned handle is open; the operating system drops it
 * when the process ends in any way (kill -9 included), so there is no stale lock to clean up.
 */
export function lockDataDir(dataDir: string): {release(): void} {
  mkdirSync(dataDir, {recursive: true})
  const path = join(dataDir, 'master.lock')
  const lock = new Database(path, {timeout: 0})
  try {
    lock.pragma('journal_mode = MEMORY') // nothing in it to keep: no journal file beside it
    lock.pragma('locking_mode = EXCLUSIVE')
    lock.exec('BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS held (pid INTEGER); COMMIT')
  } catch (err) {
    lock.close()
    if ((err as {code?: string}).code === 'SQLITE_BUSY') {
      throw new Error(`another master is running on the data dir ${dataDir} (${path} is locked): stop it first, or give this one another --data-dir`)
    }
    throw err
  }
  return {release: () => lock.close()}
}

/**
 * Opens (creating when missing) the master's SQLite database in dataDir. `workingCopy`: the metadata
 * lives in another store (PostgreSQL) and this is the master's copy of it, loaded again from that
 * store whenever the process starts, so its commits need no fsync of their own (the store's do).
 */
export function openDatabase(dataDir: string, opts: {workingCopy?: boolean} = {}): Db {
  mkdirSync(dataDir, {recursive: true})
  const db = new Database(join(dataDir, 'master.sqlite'))
  db.pragma('journal_mode = WAL')
  // FULL: a version is on disk before it is handed out (invariant 2). NORMAL in WAL mode: a commit
  // reaches the WAL file without an fsync, and a power cut may lose the last ones, never corrupt it.
  db.pragma(`synchronous = ${opts.workingCopy ? 'NORMAL' : 'FULL'}`)
  db.pragma('foreign_keys = OFF')
  db.pragma('busy_timeout = 5000')
  // 64 MiB of page cache (the default is 2 MiB): a million chunks' indexes stay in memory, so a
  // 100,000-entry report or a status summary does not read pages back from the OS one by one.
  db.pragma('cache_size = -65536')
  db.exec(SCHEMA)
  db.exec(TUS_SESSIONS_SCHEMA)
  addMissingColumns(db)
  db.exec(REPLICA_STATES_VIEW)
  return db
}

/** A database an older version made gets the columns added since (meta-store.ts columnsToAdd). */
function addMissingColumns(db: Db): void {
  for (const table of META_TABLE_NAMES) {
    const present = new Set((db.pragma(`table_info(${table})`) as {name: string}[]).map((column) => column.name))
    for (const column of columnsToAdd(table, present)) {
      const type = (META_TABLES[table].ints as readonly string[]).includes(column) ? 'INTEGER' : 'TEXT'
      db.exec(`ALTER TABLE ${table} ADD COLUMN "${column}" ${type}`)
    }
  }
}

/** The HMAC key for write grants: made once, kept in the database so grants survive a restart. */
export function grantKey(db: Db): string {
  const row = db.prepare('SELECT value FROM meta WHERE key = ?').get('grant_key') as {value: string} | undefined
  if (row) return row.value
  const key = randomBytes(32).toString('hex')
  db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('grant_key', key)
  return key
}

/**
 * Runs `work` with synchronous=NORMAL: its commits reach the WAL file but are not fsynced at once.
 * Only for rows the master can learn again from the nodes (replica rows: a node reports everything it
 * holds on every reconnect). Nothing handed out depends on them without a later synchronous=FULL
 * commit: planning a version and committing a file are FULL transactions, and their fsync of the WAL
 * file also makes every earlier frame durable, so invariant 2 holds. A power cut can lose the last
 * relaxed rows, never corrupt the database (WAL).
 */
export function relaxedDurability<T>(db: Db, work: () => T): T {
  const before = db.pragma('synchronous', {simple: true}) as number
  if (before <= SYNCHRONOUS_NORMAL) return work() // a working copy (openDatabase) is relaxed throughout
  db.pragma('synchronous = NORMAL')
  try {
    return work()
  } finally {
    db.pragma(`synchronous = ${before}`)
  }
}

/** PRAGMA synchronous reads back as a number: OFF 0, NORMAL 1, FULL 2, EXTRA 3. */
const SYNCHRONOUS_NORMAL = 1
