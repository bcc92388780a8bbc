import {randomBytes} from 'node:crypto'
import type {Db} from './db.js'
import {coalesce, META_TABLE_NAMES, META_TABLES, StaleEpochError, type Leadership, type LeaderInfo, type MetaChange, type MetaRow, type MetaStore, type MetaTable} from './meta-store.js'

/**
 * The metadata in the master's own SQLite database (the default). One master per data dir (the data
 * dir lock), so leading is immediate and never lost. The master writes these tables directly, in its
 * own synchronous=FULL transactions, so nothing is written twice: `apply` is the same contract for a
 * caller that keeps its working copy elsewhere.
 */
export class SqliteMetaStore implements MetaStore {
  readonly kind = 'sqlite'

  constructor(private readonly db: Db) {}

  async lead(url: string, signal: AbortSignal): Promise<Leadership> {
    signal.throwIfAborted()
    return this.db.transaction(() => {
      const row = this.db.prepare('SELECT store_id AS storeId, epoch FROM leader WHERE id = 1').get() as Leadership | undefined
      const storeId = row?.storeId ?? randomBytes(12).toString('hex')
      const epoch = (row?.epoch ?? 0) + 1
      this.db.prepare('INSERT INTO leader (id, store_id, epoch, url) VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET epoch = excluded.epoch, url = excluded.url').run(storeId, epoch, url)
      return {storeId, epoch}
    })()
  }

  async leader(): Promise<LeaderInfo | undefined> {
    return this.db.prepare('SELECT epoch, url FROM leader WHERE id = 1').get() as LeaderInfo | undefined
  }

  async load(onRows: (table: MetaTable, rows: MetaRow[]) => void): Promise<void> {
    for (const table of META_TABLE_NAMES) {
      onRows(table, this.db.prepare(`SELECT ${META_TABLES[table].columns.map((c) => `"${c}"`).join(', ')} FROM ${table}`).all() as MetaRow[])
    }
  }

  async apply(epoch: number, changes: readonly MetaChange[]): Promise<void> {
    this.db.transaction(() => {
      const current = (this.db.prepare('SELECT epoch FROM leader WHERE id = 1').pluck().get() as number | undefined) ?? 0
      if (current !== epoch) throw new StaleEpochError(epoch, current)
      writeChanges(this.db, changes)
    })()
  }

  onLost(): void {
    // never lost: the data dir lock keeps every other master out for as long as this process runs
  }

  async close(): Promise<void> {
    // the master closes its database itself
  }
}

/** Writes the changes into the durable tables of `db`, the last change of a row winning; the caller holds the transaction. */
export function writeChanges(db: Db, changes: readonly MetaChange[]): void {
  for (const [table, {puts, deletes}] of coalesce(changes)) {
    const {key, columns} = META_TABLES[table]
    const where = key.map((column) => `"${column}" = @${column}`).join(' AND ')
    const remove = db.prepare(`DELETE FROM ${table} WHERE ${where}`)
    for (const row of deletes) remove.run(pick(row, key))
    const put = db.prepare(`INSERT OR REPLACE INTO ${table} (${columns.map((c) => `"${c}"`).join(', ')}) VALUES (${columns.map((c) => `@${c}`).join(', ')})`)
    for (const row of puts) put.run(pick(row, columns, (META_TABLES[table] as {nullable?: readonly string[]}).nullable))
  }
}

function pick(row: MetaRow, columns: readonly string[], nullable: readonly string[] = []): MetaRow {
  const picked: MetaRow = {}
  for (const column of columns) {
    const value = row[column]
    if (value === undefined || (value === null && !nullable.includes(column))) throw new Error(`a metadata row lacks its ${column} column`)
    picked[column] = value
  }
  return picked
}
