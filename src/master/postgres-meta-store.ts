import {randomBytes} from 'node:crypto'
import {setTimeout as sleep} from 'node:timers/promises'
import pg from 'pg'
import type {Logger} from '../util/log.js'
import {coalesce, columnsToAdd, META_TABLE_NAMES, META_TABLES, StaleEpochError, type ChangeLog, type LeaderInfo, type Leadership, type LogPosition, type LoggedChanges, type MetaChange, type MetaRow, type MetaStore, type MetaTable} from './meta-store.js'

// The metadata in PostgreSQL, for several masters on one database. Leadership is a session advisory
// lock held on a dedicated connection that pings every lease/5; the server ends that session after
// one lease of silence (idle_session_timeout), so a hung or paused leader loses the lock, and TCP
// keep-alives end it when the leader's host vanishes. The epoch row is raised by each new leader, and
// every write checks it in its own transaction, so a leader that lost the lock writes nothing.
// Every write also goes, in the same transaction, into a change log at the next position (the
// leader row's log_seq), which standbys read to keep their working copies current.

const tableName = (table: MetaTable) => `chunky_${table}`
/** Column names quoted: some are words PostgreSQL reserves (offset). */
const q = (columns: readonly string[]) => columns.map((column) => `"${column}"`).join(', ')
function columnDef(table: MetaTable, column: string): string {
  const spec: {ints: readonly string[]; nullable?: readonly string[]} = META_TABLES[table]
  return `"${column}" ${spec.ints.includes(column) ? 'BIGINT' : 'TEXT'}${spec.nullable?.includes(column) ? '' : ' NOT NULL'}`
}

/** Any key of this lock space is ours: "chunky" in ASCII. */
const LEADER_LOCK = 0x6368756e6b79
/** Another one serializes schema creation between masters starting at once. */
const SCHEMA_LOCK = LEADER_LOCK + 1
/** Rows per page when a new leader loads the store. */
const LOAD_PAGE = 20_000
/** How long the change log keeps a write, by default: longer than a full load of a large store takes, so a standby that loaded can follow on. */
const KEEP_CHANGES_MS = 10 * 60_000
/** How often a standby tries to take the lock: the lock frees the moment a killed leader's session ends, so this is most of a failover's time. */
const LOCK_POLL_MS = 200
/** The leader trims the log at most this often. */
const TRIM_EVERY_MS = 10_000

// BIGINT (int8) arrives as a string by default; ours stay far below 2^53.
const numberTypes = {
  getTypeParser: ((oid: number, format?: string) => (oid === 20 ? Number : pg.types.getTypeParser(oid, format as 'text'))) as typeof pg.types.getTypeParser,
}

export interface PostgresStoreOptions {
  /** A leader silent this long (paused, hung, cut off) loses the lock; also how long a stuck write may hold the epoch row. */
  leaseMs: number
  /** How often a master tries PostgreSQL again after a failure (default 1 s); a standby tries the lock at least every 200 ms. */
  retryMs?: number
  /** How long the change log keeps a write (default 10 min); a standby further behind loads everything. */
  keepChangesMs?: number
  log: Logger
}

/**
 * One URL per host of a PostgreSQL URL, which may name several (`postgres://h1:5432,h2:5433/db`, as
 * libpq takes them): node-postgres connects to one host, so this tries each for a writable one.
 */
export function hostUrls(url: string): string[] {
  const match = /^(postgres(?:ql)?:\/\/)([^@/?]*@)?([^/?]*)(.*)$/.exec(url)
  if (!match) throw new Error(`--meta ${redact(url)} is not a postgres:// URL`)
  const [, scheme, auth = '', hosts = '', rest = ''] = match
  // target_session_attrs=read-write is what this does anyway; node-postgres does not know the key.
  const query = rest.replace(/([?&])target_session_attrs=[^&]*&?/, '$1').replace(/[?&]$/, '')
  return hosts.split(',').filter((host) => host !== '').map((host) => `${scheme}${auth}${host}${query}`)
}

/** The URL without its password, for messages. */
export function redact(url: string): string {
  return url.replace(/^(postgres(?:ql)?:\/\/[^:@/]*):[^@/]*@/, '$1:***@')
}

export class PostgresMetaStore implements MetaStore, ChangeLog {
  readonly kind = 'postgres'
  private readonly urls: string[]
  private readonly retryMs: number
  private lockClient: pg.Client | undefined
  private pool: pg.Pool | undefined
  /** A standby's connection for reading the change log (kept: it asks several times a second). */
  private follower: pg.Client | undefined
  private lastTrimMs = 0
  private pinger: NodeJS.Timeout | undefined
  private lastPingOkMs = 0
  private lostListeners: ((reason: string) => void)[] = []
  private lostReason: string | undefined
  private closed = false

  constructor(
    url: string,
    private readonly opts: PostgresStoreOptions,
  ) {
    this.urls = hostUrls(url)
    if (this.urls.length === 0) throw new Error(`--meta ${redact(url)} names no host`)
    this.retryMs = opts.retryMs ?? 1000
  }

  /** Creates the tables when missing; throws with the reason when no host is reachable and writable. */
  async init(): Promise<void> {
    const client = await this.connectWritable('')
    try {
      await client.query('BEGIN')
      await client.query('SELECT pg_advisory_xact_lock($1)', [SCHEMA_LOCK])
      for (const table of META_TABLE_NAMES) {
        const {key, columns} = META_TABLES[table]
        const defs = columns.map((column) => columnDef(table, column))
        await client.query(`CREATE TABLE IF NOT EXISTS ${tableName(table)} (${defs.join(', ')}, PRIMARY KEY (${q(key)}))`)
        // A table an older version made: looked up first, since ALTER TABLE waits for every reader of it.
        const {rows} = await client.query<{name: string}>('SELECT column_name AS name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1', [tableName(table)])
        for (const column of columnsToAdd(table, new Set(rows.map((row) => row.name)))) {
          await client.query(`ALTER TABLE ${tableName(table)} ADD COLUMN ${columnDef(table, column)}`)
        }
      }
      await client.query(`CREATE TABLE IF NOT EXISTS chunky_leader (
        id INT PRIMARY KEY CHECK (id = 1), store_id TEXT NOT NULL, epoch BIGINT NOT NULL, url TEXT NOT NULL)`)
      await client.query("INSERT INTO chunky_leader (id, store_id, epoch, url) VALUES (1, $1, 0, '') ON CONFLICT (id) DO NOTHING", [randomBytes(12).toString('hex')])
      await client.query('ALTER TABLE chunky_leader ADD COLUMN IF NOT EXISTS log_seq BIGINT NOT NULL DEFAULT 0')
      // The last epoch whose leader logged its writes (one of this version).
      await client.query('ALTER TABLE chunky_leader ADD COLUMN IF NOT EXISTS logged_epoch BIGINT NOT NULL DEFAULT 0')
      await client.query(`CREATE TABLE IF NOT EXISTS chunky_changes (
        seq BIGINT PRIMARY KEY, epoch BIGINT NOT NULL, written_at TIMESTAMPTZ NOT NULL DEFAULT now(), changes TEXT NOT NULL)`)
      await client.query('COMMIT')
    } finally {
      await client.end().catch(() => {})
    }
  }

  async lead(url: string, signal: AbortSignal): Promise<Leadership> {
    let lastProblem = ''
    while (true) {
      signal.throwIfAborted()
      let client: pg.Client | undefined
      try {
        // The server ends this session after one lease without a query: a paused leader loses the lock.
        client = await this.connectWritable(`-c idle_session_timeout=${this.opts.leaseMs} -c tcp_keepalives_idle=1 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=${Math.max(2, Math.ceil(this.opts.leaseMs / 1000))}`)
        client.on('error', () => {}) // an ended session is noticed by the next query
        while (true) {
          signal.throwIfAborted()
          const {rows} = await client.query<{ok: boolean}>('SELECT pg_try_advisory_lock($1) AS ok', [LEADER_LOCK])
          if (rows[0]?.ok) break
          await sleep(Math.min(this.retryMs, LOCK_POLL_MS), undefined, {signal})
        }
        // A leader of an older version wrote without logging (its epoch is not the last logged_epoch):
        // skipping a position then makes every standby's copy, this one's too, load everything.
        const {rows} = await client.query<{epoch: number; store_id: string}>(
          `UPDATE chunky_leader SET epoch = epoch + 1, url = $1, logged_epoch = epoch + 1,
             log_seq = log_seq + CASE WHEN epoch = logged_epoch THEN 0 ELSE 1 END WHERE id = 1 RETURNING epoch, store_id`,
          [url],
        )
        const row = rows[0]
        if (!row) throw new Error('the chunky_leader row is missing')
        this.hold(client)
        this.pool = this.newPool(client)
        return {epoch: row.epoch, storeId: row.store_id}
      } catch (err) {
        await client?.end().catch(() => {})
        if (signal.aborted) throw err
        const problem = (err as Error).message
        if (problem !== lastProblem) this.opts.log.warn({event: 'meta.unreachable', error: problem}, `PostgreSQL: ${problem}; trying again every ${this.retryMs} ms`)
        lastProblem = problem
        await sleep(this.retryMs, undefined, {signal})
      }
    }
  }

  /** True while the lock session answered within one lease: a leader that was paused for longer stops at once. */
  holdsLease(now = Date.now()): boolean {
    return this.lostReason === undefined && this.lockClient !== undefined && now - this.lastPingOkMs < this.opts.leaseMs
  }

  async leader(): Promise<LeaderInfo | undefined> {
    return this.withClient(async (client) => {
      const {rows} = await client.query<LeaderInfo>('SELECT epoch, url FROM chunky_leader WHERE id = 1 AND epoch > 0')
      return rows[0]
    })
  }

  async load(onRows: (table: MetaTable, rows: MetaRow[]) => void): Promise<LogPosition> {
    return this.withClient(async (client) => {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY') // one consistent picture
      const {rows: at} = await client.query<LogPosition>('SELECT l.log_seq AS seq, c.epoch FROM chunky_leader l LEFT JOIN chunky_changes c ON c.seq = l.log_seq WHERE l.id = 1')
      for (const table of META_TABLE_NAMES) {
        const {key, columns} = META_TABLES[table]
        const order = q(key)
        let after: MetaRow | undefined
        while (true) {
          const params = after ? key.map((column) => after![column]) : []
          const where = after ? `WHERE (${order}) > (${key.map((_, i) => `$${i + 1}`).join(', ')})` : ''
          const {rows} = await client.query<MetaRow>(`SELECT ${q(columns)} FROM ${tableName(table)} ${where} ORDER BY ${order} LIMIT ${LOAD_PAGE}`, params)
          if (rows.length > 0) onRows(table, rows)
          if (rows.length < LOAD_PAGE) break
          after = rows[rows.length - 1]
        }
      }
      await client.query('COMMIT')
      return at[0] ?? {seq: 0, epoch: null}
    })
  }

  async changesAfter(position: LogPosition, limit: number): Promise<LoggedChanges | 'lost'> {
    this.follower ??= await this.connectWritable('')
    const client = this.follower
    try {
      // One statement, one snapshot: the log's end, the write at `position` and the writes after it agree.
      const {rows} = await client.query<{end: number; at_epoch: number | null; seq: number | null; epoch: number | null; changes: string | null}>(
        `SELECT l.log_seq AS end, (SELECT epoch FROM chunky_changes WHERE seq = $1) AS at_epoch, c.seq, c.epoch, c.changes FROM chunky_leader l
         LEFT JOIN LATERAL (SELECT seq, epoch, changes FROM chunky_changes WHERE seq > $1 ORDER BY seq LIMIT $2) c ON true WHERE l.id = 1`,
        [position.seq, limit],
      )
      const end = rows[0]?.end ?? 0
      const atEpoch = rows[0]?.at_epoch ?? null
      const batches = rows.filter((row) => row.seq !== null).map((row) => ({seq: row.seq!, epoch: row.epoch!, changes: JSON.parse(row.changes!) as MetaChange[]}))
      // Positions have no gaps: a first write past the next one means the log was trimmed since. A
      // log that ends before the copy, or whose write at its position has another epoch, is another history.
      if (end < position.seq || (end > position.seq && batches[0]?.seq !== position.seq + 1)) return 'lost'
      if (position.epoch !== null && atEpoch !== null && atEpoch !== position.epoch) return 'lost'
      return {end, batches}
    } catch (err) {
      this.follower = undefined
      await client.end().catch(() => {})
      throw err
    }
  }

  async apply(epoch: number, changes: readonly MetaChange[]): Promise<void> {
    // One statement, so one round trip and its own transaction: the fence takes the next log position
    // only if `epoch` is still the current one, and every other part writes only if the fence did.
    // The fence locks the leader row until commit: a takeover's UPDATE of the row waits for this write
    // (or this write sees the new epoch and writes nothing), and writes take their log positions in
    // the order they commit. coalesce() leaves each row once per table, as one statement requires.
    const params: unknown[] = [epoch]
    const param = (value: unknown) => `$${params.push(value)}`
    const fenced = 'EXISTS (SELECT FROM fence)'
    const parts = ['fence AS (UPDATE chunky_leader SET log_seq = log_seq + 1 WHERE id = 1 AND epoch = $1 RETURNING log_seq)']
    for (const [table, {puts, deletes}] of coalesce(changes)) {
      const {key, columns} = META_TABLES[table]
      const name = tableName(table)
      if (deletes.length > 0) {
        parts.push(`d${parts.length} AS (DELETE FROM ${name} WHERE (${q(key)}) IN (SELECT ${q(key)} FROM json_populate_recordset(null::${name}, ${param(JSON.stringify(deletes))})) AND ${fenced})`)
      }
      if (puts.length > 0) {
        const updates = columns.filter((column) => !(key as readonly string[]).includes(column)).map((column) => `"${column}" = excluded."${column}"`)
        parts.push(`p${parts.length} AS (INSERT INTO ${name} (${q(columns)}) SELECT ${q(columns)} FROM json_populate_recordset(null::${name}, ${param(JSON.stringify(puts))}) WHERE ${fenced}
          ON CONFLICT (${q(key)}) DO ${updates.length > 0 ? `UPDATE SET ${updates.join(', ')}` : 'NOTHING'})`)
      }
    }
    parts.push(`logged AS (INSERT INTO chunky_changes (seq, epoch, changes) SELECT log_seq, $1, ${param(JSON.stringify(changes))} FROM fence)`)
    const keepMs = this.opts.keepChangesMs ?? KEEP_CHANGES_MS
    if (Date.now() - this.lastTrimMs >= Math.min(TRIM_EVERY_MS, keepMs)) {
      this.lastTrimMs = Date.now()
      parts.push(`trimmed AS (DELETE FROM chunky_changes WHERE written_at < now() - ${param(keepMs)} * interval '1 millisecond' AND ${fenced})`)
    }
    const {rows} = await this.writer().query<{seq: number | null; current: number}>(
      `WITH ${parts.join(',\n')} SELECT (SELECT log_seq FROM fence) AS seq, (SELECT epoch FROM chunky_leader WHERE id = 1) AS current`,
      params,
    )
    const seq = rows[0]?.seq
    if (seq === null || seq === undefined) {
      // `current` comes from the statement's snapshot: a takeover the fence waited for is not in it.
      let current = rows[0]?.current ?? 0
      if (current === epoch) current = (await this.writer().query<{epoch: number}>('SELECT epoch FROM chunky_leader WHERE id = 1')).rows[0]?.epoch ?? 0
      const err = new StaleEpochError(epoch, current)
      this.lose(err.message)
      throw err
    }
  }

  onLost(listener: (reason: string) => void): void {
    if (this.lostReason !== undefined) listener(this.lostReason)
    else this.lostListeners.push(listener)
  }

  async close(): Promise<void> {
    this.closed = true
    await this.release()
    await this.follower?.end().catch(() => {})
    this.follower = undefined
  }

  /** Lets go of the lock and the connections (stepping down); a later lead() may take it again. */
  async release(): Promise<void> {
    clearInterval(this.pinger)
    this.pinger = undefined
    const client = this.lockClient
    const pool = this.pool
    this.lockClient = undefined
    this.pool = undefined
    await client?.end().catch(() => {})
    await pool?.end().catch(() => {})
    this.lostListeners = []
    this.lostReason = undefined
  }

  private hold(client: pg.Client): void {
    this.lockClient = client
    this.lastPingOkMs = Date.now()
    const lost = (why: string) => this.lose(`lost the PostgreSQL leader lock (${why})`)
    client.on('end', () => lost('its session ended'))
    client.on('error', (err) => lost(err.message))
    let inFlight = false
    this.pinger = setInterval(() => {
      if (!this.holdsLease()) return lost(`no answer for ${Date.now() - this.lastPingOkMs} ms`)
      if (inFlight) return
      inFlight = true
      client.query('SELECT 1').then(
        () => {
          inFlight = false
          this.lastPingOkMs = Date.now()
        },
        (err: Error) => lost(err.message),
      )
    }, Math.max(50, Math.round(this.opts.leaseMs / 5)))
  }

  private lose(reason: string): void {
    if (this.lostReason !== undefined || this.closed) return
    this.lostReason = reason
    clearInterval(this.pinger)
    for (const listener of this.lostListeners.splice(0)) listener(reason)
  }

  /** A connection of the leader's pool, or a connection of its own (a standby asking). */
  private async withClient<T>(work: (client: pg.ClientBase) => Promise<T>): Promise<T> {
    if (this.pool) {
      const client = await this.pool.connect()
      try {
        return await work(client)
      } finally {
        client.release()
      }
    }
    const client = await this.connectWritable('')
    try {
      return await work(client)
    } finally {
      await client.end().catch(() => {})
    }
  }

  private writer(): pg.Pool {
    if (!this.pool) throw new Error('this master does not lead')
    return this.pool
  }

  /** The pool for writes, on the host the lock is held on; a write stuck longer than a lease is ended by the server. */
  private newPool(lockClient: pg.Client): pg.Pool {
    const pool = new pg.Pool({
      host: lockClient.host,
      port: lockClient.port,
      user: lockClient.user,
      database: lockClient.database,
      password: (lockClient as unknown as {password?: string}).password,
      ssl: (lockClient as unknown as {ssl?: pg.ClientConfig['ssl']}).ssl,
      max: 2,
      keepAlive: true,
      idle_in_transaction_session_timeout: this.opts.leaseMs,
      connectionTimeoutMillis: this.opts.leaseMs,
      types: numberTypes,
    })
    pool.on('error', () => {}) // an idle connection that dies is replaced on next use
    return pool
  }

  /** The first host that takes a connection and is not in recovery (a read-only standby). */
  private async connectWritable(options: string): Promise<pg.Client> {
    const problems: string[] = []
    for (const url of this.urls) {
      const client = new pg.Client({connectionString: url, keepAlive: true, keepAliveInitialDelayMillis: 1000, connectionTimeoutMillis: Math.max(1000, this.opts.leaseMs), types: numberTypes, ...(options ? {options} : {})})
      client.on('error', () => {})
      try {
        await client.connect()
        const {rows} = await client.query<{recovery: boolean}>('SELECT pg_is_in_recovery() AS recovery')
        if (!rows[0]?.recovery) return client
        problems.push(`${redact(url)} is a read-only standby`)
      } catch (err) {
        problems.push(`${redact(url)}: ${(err as Error).message}`)
      }
      await client.end().catch(() => {})
    }
    throw new Error(`no writable PostgreSQL (${problems.join('; ')})`)
  }
}
