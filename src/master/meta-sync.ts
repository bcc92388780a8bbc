import type {Statement} from 'better-sqlite3'
import type {Db} from './db.js'
import {META_TABLE_NAMES, META_TABLES, type MetaChange, type MetaRow, type MetaStore, type MetaTable} from './meta-store.js'

// With a store other than the master's own SQLite (PostgreSQL), the master still works on its local
// database, a working copy loaded at takeover; temporary triggers record every change to the durable
// tables (same transaction), and flush() ships them, in order, to the store with the leader's epoch.
// A request that changed something answers only after its flush, so nothing acknowledged lives only
// in the working copy.

const CHANGES = 'temp.meta_changes'

/**
 * Replaces the working copy's durable tables with the store's rows, then records every later change.
 * Rows go in page by page as the store yields them, in one transaction: a million chunks never sit
 * in memory at once, and a load that fails leaves the copy as it was. Nothing else uses the copy
 * while this master takes over, so the transaction may stay open across the store's reads.
 */
export async function loadWorkingCopy(db: Db, store: MetaStore): Promise<number> {
  let count = 0
  db.exec('BEGIN IMMEDIATE')
  try {
    dropCapture(db)
    const inserts = new Map<MetaTable, Statement>()
    for (const table of META_TABLE_NAMES) {
      const {columns} = META_TABLES[table]
      db.prepare(`DELETE FROM main.${table}`).run()
      inserts.set(table, db.prepare(`INSERT INTO main.${table} (${columns.map((c) => `"${c}"`).join(', ')}) VALUES (${columns.map((c) => `@${c}`).join(', ')})`))
    }
    await store.load((table, rows) => {
      const insert = inserts.get(table)!
      for (const row of rows) insert.run(row)
      count += rows.length
    })
    createCapture(db)
    db.exec('COMMIT')
  } catch (err) {
    if (db.inTransaction) db.exec('ROLLBACK')
    throw err
  }
  return count
}

function dropCapture(db: Db): void {
  db.exec(`DROP TABLE IF EXISTS ${CHANGES}`)
  for (const table of META_TABLE_NAMES) for (const op of ['insert', 'update', 'delete']) db.exec(`DROP TRIGGER IF EXISTS temp.capture_${table}_${op}`)
}

function createCapture(db: Db): void {
  db.exec(`CREATE TABLE ${CHANGES} (seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, op TEXT NOT NULL, row TEXT NOT NULL)`)
  for (const table of META_TABLE_NAMES) {
    const {key, columns} = META_TABLES[table]
    const json = (of: string, cols: readonly string[]) => `json_object(${cols.map((c) => `'${c}', ${of}."${c}"`).join(', ')})`
    const record = (op: string, of: string, cols: readonly string[]) =>
      `BEGIN INSERT INTO meta_changes (tbl, op, row) VALUES ('${table}', '${op}', ${json(of, cols)}); END`
    db.exec(`CREATE TEMP TRIGGER capture_${table}_insert AFTER INSERT ON main.${table} ${record('put', 'NEW', columns)}`)
    db.exec(`CREATE TEMP TRIGGER capture_${table}_update AFTER UPDATE ON main.${table} ${record('put', 'NEW', columns)}`)
    db.exec(`CREATE TEMP TRIGGER capture_${table}_delete AFTER DELETE ON main.${table} ${record('delete', 'OLD', key)}`)
  }
}

/** Ships the working copy's recorded changes to the store, one flush after the other. */
export class MetaSync {
  private chain: Promise<void> = Promise.resolve()
  private failed: Error | undefined
  private readonly take
  private readonly clear

  constructor(
    db: Db,
    private readonly store: MetaStore,
    private readonly epoch: number,
    /** Called once when a write fails: the working copy may now hold what the store lacks, so this master must stop leading. */
    private readonly onFailure: (err: Error) => void,
  ) {
    this.take = db.prepare(`SELECT seq, tbl, op, row FROM ${CHANGES} ORDER BY seq`)
    this.clear = db.prepare(`DELETE FROM ${CHANGES} WHERE seq <= ?`)
  }

  /** Resolves once every change made before this call is in the store; rejects if any write failed. */
  flush(): Promise<void> {
    const rows = this.take.all() as {seq: number; tbl: MetaTable; op: 'put' | 'delete'; row: string}[]
    if (rows.length > 0) this.clear.run(rows[rows.length - 1]!.seq)
    const changes: MetaChange[] = rows.map((r) => ({table: r.tbl, op: r.op, row: JSON.parse(r.row) as MetaRow}))
    const done = this.chain.then(async () => {
      if (this.failed) throw this.failed
      if (changes.length === 0) return
      try {
        await this.store.apply(this.epoch, changes)
      } catch (err) {
        this.failed = err as Error
        this.onFailure(this.failed)
        throw err
      }
    })
    this.chain = done.catch(() => {})
    return done
  }
}
