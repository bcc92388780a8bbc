// What the master must never lose, behind one narrow interface with two implementations: SQLite (the
// default, one master, no setup) and PostgreSQL (several masters, one leads). Everything else the
// master keeps (replica locations, node liveness) is rebuilt from the nodes' reports, as after a restart.

/**
 * The durable tables: columns, primary key, which columns are whole numbers (the rest are text) and
 * which may be null. Both stores hold exactly these.
 */
export const META_TABLES = {
  meta: {key: ['key'], columns: ['key', 'value'], ints: []},
  chunk_ids: {key: ['name', 'idx'], columns: ['name', 'idx', 'chunk_id'], ints: ['idx']},
  chunks: {key: ['chunk_id'], columns: ['chunk_id', 'committed_version', 'max_version', 'size', 'sha256'], ints: ['committed_version', 'max_version', 'size']},
  planned: {key: ['chunk_id', 'version'], columns: ['chunk_id', 'version', 'size', 'sha256', 'upload_id'], ints: ['version', 'size']},
  uploads: {key: ['upload_id'], columns: ['upload_id', 'name', 'size', 'chunk_size', 'chunk_count', 'created_ms'], ints: ['size', 'chunk_size', 'chunk_count', 'created_ms']},
  upload_chunks: {key: ['upload_id', 'idx'], columns: ['upload_id', 'idx', 'chunk_id', 'version', 'size', 'sha256', 'skip'], ints: ['idx', 'version', 'size', 'skip']},
  files: {key: ['name'], columns: ['name', 'size', 'chunk_size', 'chunk_count', 'committed_at'], ints: ['size', 'chunk_size', 'chunk_count']},
  /** Nodes being drained (an operator's decision: a new leader must keep it); NodeRegistry writes it. */
  node_drains: {key: ['node_id'], columns: ['node_id', 'started_ms'], ints: ['started_ms']},
  /** tus uploads in progress (tus-sessions.ts owns it). */
  tus_sessions: {
    key: ['id'],
    columns: ['id', 'upload_id', 'name', 'length', 'offset', 'chunk_size', 'metadata', 'max_size', 'creator', 'created_ms', 'expires_ms', 'holder', 'epoch', 'state', 'parts'],
    ints: ['length', 'offset', 'chunk_size', 'max_size', 'created_ms', 'expires_ms', 'epoch'],
    nullable: ['length', 'max_size', 'holder', 'parts'],
  },
} as const satisfies Record<string, {key: readonly string[]; columns: readonly string[]; ints: readonly string[]; nullable?: readonly string[]}>

export type MetaTable = keyof typeof META_TABLES
export const META_TABLE_NAMES = Object.keys(META_TABLES) as MetaTable[]

export type MetaRow = Record<string, string | number | null>

/**
 * The upgrade rule both stores apply at start to a table an older version made (CREATE TABLE IF NOT
 * EXISTS leaves it as it was): the columns of META_TABLES it lacks, to be added, empty in every row
 * there. Only a nullable column can be: one that may not be null would need a value for those rows.
 */
export function columnsToAdd(table: MetaTable, present: ReadonlySet<string>): string[] {
  const spec: {columns: readonly string[]; nullable?: readonly string[]} = META_TABLES[table]
  const missing = spec.columns.filter((column) => !present.has(column))
  const required = missing.filter((column) => !spec.nullable?.includes(column))
  if (required.length > 0) throw new Error(`the metadata table ${table} lacks the column ${required.join(', ')}, which cannot be added to the rows it has`)
  return missing
}

/** One row written (whole) or deleted (by its key columns). */
export type MetaChange = {table: MetaTable; op: 'put'; row: MetaRow} | {table: MetaTable; op: 'delete'; row: MetaRow}

/** This master leads: every write it makes carries `epoch`, and a write with an older epoch changes nothing. */
export interface Leadership {
  epoch: number
  /** Made once per store: nodes compare epochs only between masters of one store. */
  storeId: string
}

export interface LeaderInfo {
  epoch: number
  /** The leader's advertised URL, as it gave it when it took over. */
  url: string
}

export interface MetaStore {
  readonly kind: 'sqlite' | 'postgres'
  /** Waits until this master leads (or `signal` aborts: rejects), then raises the epoch. */
  lead(url: string, signal: AbortSignal): Promise<Leadership>
  /** Who leads now, as the store says; undefined before anyone ever led. */
  leader(): Promise<LeaderInfo | undefined>
  /** Every durable row, table by table (the new leader's working copy is built from this); a store with a ChangeLog resolves to its position. */
  load(onRows: (table: MetaTable, rows: MetaRow[]) => void): Promise<LogPosition | void>
  /** Writes the changes in one transaction, only if `epoch` is still the current one (else StaleEpochError, nothing written). */
  apply(epoch: number, changes: readonly MetaChange[]): Promise<void>
  /** Called once if leadership is lost (the lock session ended, or a write met a higher epoch). */
  onLost(listener: (reason: string) => void): void
  close(): Promise<void>
}

/** A place in the change log: the last write a copy holds, and the epoch it was written with (null: the log no longer holds it). */
export interface LogPosition {
  seq: number
  epoch: number | null
}

/** Writes after a log position, in the order they were committed, and where the log ends now. */
export interface LoggedChanges {
  /** The position of the last write committed (what a copy holding every write stands at). */
  end: number
  batches: {seq: number; epoch: number; changes: MetaChange[]}[]
}

/**
 * A store that logs every write it takes, in commit order, each at the next position (PostgreSQL):
 * a standby's working copy follows it, so that taking over costs only what the copy has not seen.
 * The log keeps recent writes only; a copy further behind must load everything again.
 */
export interface ChangeLog {
  /** MetaStore.load, resolving to the log position the rows stand at (every write up to it, none after). */
  load(onRows: (table: MetaTable, rows: MetaRow[]) => void): Promise<LogPosition>
  /**
   * The writes after `position`, oldest first (at most `limit` of them), or 'lost' when the log
   * cannot go on from there: it no longer holds the next write, or its history is not the one the
   * copy saw (a promoted PostgreSQL standby that missed the last writes).
   */
  changesAfter(position: LogPosition, limit: number): Promise<LoggedChanges | 'lost'>
}

export class StaleEpochError extends Error {
  override name = 'StaleEpochError'
  constructor(
    readonly mine: number,
    readonly current: number,
  ) {
    super(`this master's epoch ${mine} is no longer the current one (${current}): another master leads`)
  }
}

/** The changes keyed by table and row key, the last change of each row winning (what a batch must leave). */
export function coalesce(changes: readonly MetaChange[]): Map<MetaTable, {puts: MetaRow[]; deletes: MetaRow[]}> {
  const last = new Map<MetaTable, Map<string, MetaChange>>()
  for (const change of changes) {
    let rows = last.get(change.table)
    if (!rows) last.set(change.table, (rows = new Map()))
    rows.set(JSON.stringify(META_TABLES[change.table].key.map((column) => change.row[column])), change)
  }
  const byTable = new Map<MetaTable, {puts: MetaRow[]; deletes: MetaRow[]}>()
  for (const [table, rows] of last) {
    const puts: MetaRow[] = []
    const deletes: MetaRow[] = []
    for (const change of rows.values()) (change.op === 'put' ? puts : deletes).push(change.row)
    byTable.set(table, {puts, deletes})
  }
  return byTable
}
