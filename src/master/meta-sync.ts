import type {Statement} from 'better-sqlite3'
import type {Logger} from '../util/log.js'
import {relaxedDurability, type Db} from './db.js'
import {META_TABLE_NAMES, META_TABLES, type ChangeLog, type LogPosition, type MetaChange, type MetaRow, type MetaStore, type MetaTable} from './meta-store.js'
import {writeChanges} from './sqlite-meta-store.js'

// With a store other than the master's own SQLite (PostgreSQL), the master still works on its local
// database, a working copy. A standby keeps it current from the store's change log (WarmCopy); at
// takeover it applies what it has not seen yet. While leading, temporary triggers record every change
// to the durable tables (same transaction), and flush() ships them, in order, to the store with the
// leader's epoch. A request that changed something answers only after its flush, so nothing
// acknowledged lives only in the working copy.

const CHANGES = 'temp.meta_changes'

/**
 * Replaces the working copy's durable tables with the store's rows (and stops recording changes).
 * Rows go in page by page as the store yields them, in one transaction: a million chunks never sit
 * in memory at once, and a load that fails leaves the copy as it was. Nothing else uses the copy
 * while this master stands by or takes over, so the transaction may stay open across the store's
 * reads. `position` is the change log position the rows stand at, when the store keeps a log.
 */
export async function loadWorkingCopy(db: Db, store: Pick<MetaStore, 'load'>): Promise<{rows: number; position: LogPosition | undefined}> {
  let count = 0
  let position: LogPosition | void
  db.exec('BEGIN IMMEDIATE')
  try {
    dropCapture(db)
    const inserts = new Map<MetaTable, Statement>()
    for (const table of META_TABLE_NAMES) {
      const {columns} = META_TABLES[table]
      db.prepare(`DELETE FROM main.${table}`).run()
      inserts.set(table, db.prepare(`INSERT INTO main.${table} (${columns.map((c) => `"${c}"`).join(', ')}) VALUES (${columns.map((c) => `@${c}`).join(', ')})`))
    }
    position = await store.load((table, rows) => {
      const insert = inserts.get(table)!
      for (const row of rows) insert.run(row)
      count += rows.length
    })
    db.exec('COMMIT')
  } catch (err) {
    if (db.inTransaction) db.exec('ROLLBACK')
    throw err
  }
  return {rows: count, position: position ?? undefined}
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

/** Writes of the change log read per query. */
const FOLLOW_PAGE = 100

/** What one catch-up did: a full load, or the writes the copy had not seen. */
export interface CatchUp {
  full: boolean
  /** Rows loaded (full) or changes applied. */
  rows: number
  /** The log position (seq) the copy now stands at. */
  position: number
}

/**
 * A standby's working copy kept current from the store's change log. It knows the log position it
 * stands at; with none (just started, or it led and wrote to the copy) or one the log no longer
 * holds, it loads everything. One step at a time: following and taking over never overlap.
 */
export class WarmCopy {
  private position: LogPosition | undefined
  private step: Promise<unknown> = Promise.resolve()
  private timer: NodeJS.Timeout | undefined
  private lastProblem = ''
  private abandoned = false

  constructor(
    private readonly db: Db,
    private readonly store: ChangeLog,
    private readonly log: Logger,
  ) {}

  /** Starts catching up every `intervalMs` (standing by). */
  follow(intervalMs: number): void {
    if (this.timer) return
    let busy = false
    const tick = () => {
      if (busy) return
      busy = true
      const started = Date.now()
      this.catchUp().then(
        (caught) => {
          this.lastProblem = ''
          if (caught.full) this.log.info({event: 'meta.copy_loaded', rows: caught.rows, position: caught.position, ms: Date.now() - started}, `standing by: working copy loaded (${caught.rows} metadata rows) in ${Date.now() - started} ms; following the leader's writes`)
        },
        (err: Error) => {
          if (err.message !== this.lastProblem) this.log.warn({event: 'meta.follow_failed', error: err.message}, `following the metadata store failed: ${err.message}; trying again`)
          this.lastProblem = err.message
        },
      ).finally(() => (busy = false))
    }
    this.timer = setInterval(tick, intervalMs)
    tick()
  }

  /**
   * Stops following; resolves once the step under way has ended. Taking over waits for a full load
   * under way (it would only start another); `abandon` (the master stops) cuts it short.
   */
  async stop(abandon = false): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    this.abandoned ||= abandon
    await this.step.catch(() => {})
  }

  /** The copy will be written by this master (it leads): it no longer stands at any log position. */
  forget(): void {
    this.position = undefined
  }

  /**
   * Brings the copy to the log's end as the store sees it now. Taking over, this runs after the
   * epoch was raised, so no older leader can write past that end.
   */
  catchUp(): Promise<CatchUp> {
    const done = this.step.catch(() => {}).then(() => this.advance())
    this.step = done
    return done
  }

  private async advance(): Promise<CatchUp> {
    let applied = 0
    while (this.position !== undefined) {
      const page = await this.store.changesAfter(this.position, FOLLOW_PAGE)
      if (page === 'lost') {
        this.log.info({event: 'meta.behind_log', position: this.position.seq}, `the change log cannot bring the working copy on from ${this.position.seq} (trimmed past it, or another history): loading it all`)
        this.position = undefined
        break
      }
      if (page.batches.length > 0) {
        // The copy is rebuilt from the store whenever this process starts: its own durability adds nothing.
        relaxedDurability(this.db, () => this.db.transaction(() => {
          for (const batch of page.batches) writeChanges(this.db, batch.changes)
        })())
        const last = page.batches[page.batches.length - 1]!
        this.position = {seq: last.seq, epoch: last.epoch}
        applied += page.batches.reduce((sum, batch) => sum + batch.changes.length, 0)
      }
      if (this.position.seq >= page.end) return {full: false, rows: applied, position: this.position.seq}
    }
    const {rows, position} = await loadWorkingCopy(this.db, {
      load: (onRows) =>
        this.store.load((table, rows) => {
          if (this.abandoned) throw new Error('the master is stopping')
          onRows(table, rows)
        }),
    })
    this.position = position
    return {full: true, rows, position: position?.seq ?? 0}
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
    dropCapture(db)
    createCapture(db) // from here on, every change to the copy is recorded
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
