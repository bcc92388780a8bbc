import {randomBytes} from 'node:crypto'
import {
  ChunkyError,
  DEFAULT_CHUNK_SIZE,
  type PlannedChunk,
  type TusAdvanceRequest,
  type TusChunkRequest,
  type TusClaimRequest,
  type TusConcatRequest,
  type TusCreateRequest,
  type TusSession,
} from '../protocol/index.js'
import type {MasterContext} from './context.js'
import {relaxedDurability} from './db.js'
import type {Uploads} from './uploads.js'

// The one owner of the tus_sessions table: a tus upload's state, kept in the master so every node
// answers for it. Each session is an upload of uploads.ts (opened at creation, its chunks planned one
// by one as the bytes arrive, committed on the last byte), so versions, expiry and garbage are the
// CLI's. The offset here only counts whole chunks on W nodes; a tail past it lives on `holder`.
// A partial upload of a concatenation has no chunky name: its `name` is PARTIAL (made with a
// credential) or PARTIAL + '/' + the signed link's name, never a valid file name; its upload's own
// name is PARTIAL + '/' + its id, so its chunks have ids of their own until a final upload joins them.
/** Made with the rest of the schema (db.ts): the table is durable metadata (meta-store.ts) a new leader loads. */
export const TUS_SESSIONS_SCHEMA = `
CREATE TABLE IF NOT EXISTS tus_sessions (
  id TEXT PRIMARY KEY, upload_id TEXT NOT NULL, name TEXT NOT NULL, length INTEGER, offset INTEGER NOT NULL,
  chunk_size INTEGER NOT NULL, metadata TEXT NOT NULL, max_size INTEGER, creator TEXT NOT NULL,
  created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, holder TEXT, epoch INTEGER NOT NULL,
  state TEXT NOT NULL, -- open | done | expired (kept one more expiry period so clients get 410, not 404)
  parts TEXT -- a final upload's partial uploads, their ids space-separated in order (HEAD answers them); else NULL
);
CREATE INDEX IF NOT EXISTS tus_sessions_expiry ON tus_sessions (state, expires_ms);
`

type Row = {
  id: string; upload_id: string; name: string; length: number | null; offset: number; chunk_size: number; metadata: string
  max_size: number | null; creator: string; created_ms: number; expires_ms: number; holder: string | null; epoch: number; state: string
  parts: string | null
}

const PARTIAL = '/partial'
/** The upload_id of a final upload's session: it has no upload of its own. */
const FINAL = ''

export interface TusLimits {
  /** Unfinished sessions expire this long after creation (`chunky master --upload-expiry`). */
  expiryMs: number
  /** Open sessions one node may have created (a per-node cap on open sessions). */
  maxOpenPerNode: number
}

export class TusSessions {
  private readonly q

  constructor(private readonly ctx: MasterContext, private readonly uploads: Uploads, private readonly limits: TusLimits) {
    const db = ctx.db
    this.q = {
      get: db.prepare('SELECT * FROM tus_sessions WHERE id = ?'),
      insert: db.prepare(`INSERT INTO tus_sessions (id, upload_id, name, length, offset, chunk_size, metadata, max_size, creator, created_ms, expires_ms, holder, epoch, state)
        VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, 1, 'open')`),
      // A final upload is complete once made: no upload of its own (upload_id FINAL), nothing to PATCH.
      insertFinal: db.prepare(`INSERT INTO tus_sessions (id, upload_id, name, length, offset, chunk_size, metadata, max_size, creator, created_ms, expires_ms, holder, epoch, state, parts)
        VALUES (?, '${FINAL}', ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 1, 'done', ?)`),
      openOf: db.prepare("SELECT COUNT(*) FROM tus_sessions WHERE creator = ? AND state = 'open'").pluck(),
      setHolder: db.prepare('UPDATE tus_sessions SET holder = ?, epoch = epoch + 1 WHERE id = ?'),
      setLength: db.prepare('UPDATE tus_sessions SET length = ? WHERE id = ?'),
      setOffset: db.prepare('UPDATE tus_sessions SET offset = ? WHERE id = ?'),
      setState: db.prepare('UPDATE tus_sessions SET state = ? WHERE id = ?'),
      remove: db.prepare('DELETE FROM tus_sessions WHERE id = ?'),
      expiring: db.prepare("SELECT id, upload_id FROM tus_sessions WHERE state = 'open' AND expires_ms <= ?"),
      dropTombstones: db.prepare("DELETE FROM tus_sessions WHERE state IN ('expired', 'done') AND expires_ms <= ?"),
    }
  }

  create(request: TusCreateRequest): TusSession {
    if (request.maxSize !== null && request.length !== null && request.length > request.maxSize) {
      throw new ChunkyError('BODY_TOO_LARGE', `this upload link allows at most ${request.maxSize} bytes, not ${request.length}`)
    }
    const open = this.q.openOf.get(request.node) as number
    if (open >= this.limits.maxOpenPerNode) {
      throw new ChunkyError('BUSY', `node ${request.node} has ${open} unfinished uploads, the most it may: finish or terminate some, or use another node`)
    }
    const id = randomBytes(16).toString('hex')
    const now = this.ctx.clock.now()
    const partial = request.partial === true
    if (!partial && request.name === null) throw new ChunkyError('BAD_NAME', 'an upload that is not partial needs a name')
    const name = partial ? (request.name === null ? PARTIAL : `${PARTIAL}/${request.name}`) : request.name!
    const created = this.ctx.db.transaction(() => {
      const uploadId = this.uploads.open(partial ? `${PARTIAL}/${id}` : name, request.length ?? 0, DEFAULT_CHUNK_SIZE)
      this.q.insert.run(id, uploadId, name, request.length, DEFAULT_CHUNK_SIZE, request.metadata, request.maxSize, request.node, now, now + this.limits.expiryMs, request.node)
      return this.row(id)
    })()
    const what = partial ? 'a partial upload' : request.name
    this.ctx.metrics.tusSessions.inc({event: 'created'})
    this.ctx.log.info({event: 'tus.created', id, uploadId: created.upload_id, name: request.name, partial, length: request.length, node: request.node}, `tus upload ${id} of ${what} created on ${request.node}`)
    if (request.length === 0) return this.finish(created)
    return view(created)
  }

  get(id: string): TusSession {
    return view(this.open(id, true))
  }

  /**
   * The node taking a PATCH becomes the holder (a new epoch unless it already was); a deferred length
   * may be set, and when every byte of it is on W nodes already (the last PATCH was empty and the
   * chunks before it are stored), the file is committed here: no chunk's advance is left to do it.
   */
  claim(id: string, request: TusClaimRequest): TusSession {
    const row = this.open(id)
    if (request.length !== undefined) {
      if (row.length !== null && row.length !== request.length) throw new ChunkyError('BAD_REQUEST', `this upload's length is ${row.length}, it cannot change`)
      if (request.length < row.offset) throw new ChunkyError('BAD_REQUEST', `Upload-Length ${request.length} is below the bytes already stored (${row.offset})`)
      if (row.max_size !== null && request.length > row.max_size) throw new ChunkyError('BODY_TOO_LARGE', `this upload link allows at most ${row.max_size} bytes`)
    }
    const updated = this.ctx.db.transaction(() => {
      if (row.holder !== request.node) this.q.setHolder.run(request.node, id)
      if (request.length !== undefined && row.length === null) {
        this.q.setLength.run(request.length, id)
        this.uploads.setSize(row.upload_id, request.length)
      }
      return this.row(id)
    })()
    if (updated.length !== null && updated.offset >= updated.length) return this.finish(updated)
    return view(updated)
  }

  /**
   * A version and targets for a chunk at or past the durable offset (the holder writes a few at once),
   * planned by uploads.ts as for the CLI.
   */
  planChunk(id: string, request: TusChunkRequest): PlannedChunk {
    const row = this.held(id, request)
    const start = request.index * row.chunk_size
    if (start < row.offset) throw new ChunkyError('OFFSET_MISMATCH', `chunk ${request.index} starts at ${start}, below the upload's durable offset ${row.offset}`)
    const end = row.length ?? row.max_size ?? Number.MAX_SAFE_INTEGER
    if (request.size > row.chunk_size || start + request.size > end) throw new ChunkyError('BAD_REQUEST', `chunk ${request.index} cannot be ${request.size} bytes`)
    if (request.size < row.chunk_size && start + request.size !== row.length) throw new ChunkyError('BAD_REQUEST', `only the last chunk may be shorter than ${row.chunk_size} bytes`)
    return this.uploads.planOne(row.upload_id, request, request.node, request.exclude ?? [])
  }

  /**
   * The chunk is on W nodes: the durable offset moves past every chunk from it on that is (chunks
   * written at once finish in any order); after the last byte the file is committed.
   */
  advance(id: string, request: TusAdvanceRequest): TusSession {
    const row = this.held(id, request, true)
    if (row.state === 'done') return view(row) // another chunk's answer committed it
    if (!this.uploads.isDurable(row.upload_id, request.index)) {
      throw new ChunkyError('NOT_DURABLE', `chunk ${request.index} is not on ${this.ctx.minReplicas} nodes yet: send it again`)
    }
    let offset = row.offset
    const end = row.length ?? Number.MAX_SAFE_INTEGER
    while (offset < end && offset % row.chunk_size === 0 && this.uploads.isDurable(row.upload_id, offset / row.chunk_size)) {
      offset += this.uploads.chunkSizeOf(row.upload_id, offset / row.chunk_size)
    }
    if (offset === row.offset) return view(row) // an earlier chunk is still on its way
    // Not fsynced on its own (the next planned version's commit fsyncs it): an offset lost to a power
    // cut is only lower, and the client sends those chunks again, which keep their planned versions.
    relaxedDurability(this.ctx.db, () => this.q.setOffset.run(offset, id))
    const updated = this.row(id)
    if (updated.length !== null && updated.offset >= updated.length) return this.finish(updated)
    return view(updated)
  }

  /**
   * A final upload (Upload-Concat: final): the finished partial uploads `parts`, in order, joined into
   * `name` and committed in one transaction (uploads.ts join()): their chunks become the file's, no
   * byte is copied. The partial sessions are gone afterwards (404), as their uploads are; the final
   * keeps their ids, which HEAD answers (Upload-Concat: final;…).
   */
  concat(request: TusConcatRequest): TusSession {
    if (new Set(request.parts).size !== request.parts.length) throw new ChunkyError('BAD_REQUEST', 'Upload-Concat lists a partial upload twice: list each once, in order')
    const now = this.ctx.clock.now()
    const parts = request.parts.map((id) => this.partOf(id, request.link, now))
    const length = parts.reduce((sum, row) => sum + row.length!, 0)
    if (request.maxSize !== null && length > request.maxSize) throw new ChunkyError('BODY_TOO_LARGE', `this upload link allows at most ${request.maxSize} bytes, the partial uploads have ${length}`)
    const id = randomBytes(16).toString('hex')
    this.uploads.join(request.name, parts.map((row) => row.upload_id), () => {
      for (const row of parts) this.q.remove.run(row.id)
      this.q.insertFinal.run(id, request.name, length, length, DEFAULT_CHUNK_SIZE, request.metadata, request.maxSize, request.node, now, now + this.limits.expiryMs, request.parts.join(' '))
    })
    this.ctx.metrics.tusSessions.inc({event: 'finished'})
    this.ctx.log.info({event: 'tus.concatenated', id, name: request.name, parts: request.parts, length, node: request.node}, `tus upload ${id}: ${parts.length} partial uploads joined into ${request.name}`)
    return view(this.row(id))
  }

  /** A partial upload a final may join: finished, not expired, and made through the same link when the final is. */
  private partOf(id: string, link: string | null, now: number): Row & {length: number} {
    const row = this.q.get.get(id) as Row | undefined
    if (!row) throw new ChunkyError('UPLOAD_NOT_FOUND', `no partial upload ${id} to join (it was terminated, already joined into a final upload, or never existed)`)
    const scope = partialScope(row.name)
    if (scope === undefined) throw new ChunkyError('BAD_REQUEST', `tus upload ${id} is not a partial upload: only uploads made with Upload-Concat: partial can be joined`)
    if (row.state === 'expired' || row.expires_ms <= now) throw new ChunkyError('UPLOAD_EXPIRED', `partial upload ${id} expired at ${new Date(row.expires_ms).toISOString()}: upload it again`)
    if (link !== null && scope !== link) throw new ChunkyError('FORBIDDEN', `partial upload ${id} was not made through this upload link`)
    if (row.state !== 'done' || row.length === null) {
      throw new ChunkyError('BAD_REQUEST', `partial upload ${id} is not finished (${row.offset} of ${row.length ?? 'an unknown number of'} bytes durable): finish every partial upload, then send the final POST`)
    }
    return row as Row & {length: number}
  }

  /** Termination: the session is gone (404 from now on), its uploaded chunks garbage. */
  terminate(id: string): void {
    const row = this.open(id)
    this.q.remove.run(id)
    this.uploads.forget([row.upload_id])
    this.ctx.metrics.tusSessions.inc({event: 'terminated'})
    this.ctx.log.info({event: 'tus.terminated', id, name: row.name}, `tus upload ${id} of ${row.name} terminated`)
  }

  /** Marks sessions past their expiry expired (410 from now on) and forgets their uploads; drops old tombstones. */
  expire(): number {
    const now = this.ctx.clock.now()
    const expiring = this.q.expiring.all(now) as {id: string; upload_id: string}[]
    this.ctx.db.transaction(() => {
      for (const {id} of expiring) this.q.setState.run('expired', id)
      this.q.dropTombstones.run(now - this.limits.expiryMs)
    })()
    this.uploads.forget(expiring.map((row) => row.upload_id))
    if (expiring.length > 0) {
      this.ctx.metrics.tusSessions.inc({event: 'expired'}, expiring.length)
      this.ctx.log.info({event: 'tus.expired', count: expiring.length}, `${expiring.length} tus upload${expiring.length === 1 ? '' : 's'} expired unfinished`)
    }
    return expiring.length
  }

  private finish(row: Row): TusSession {
    // A partial upload is only complete: its chunks stay planned until a final joins them (or it expires).
    if (partialScope(row.name) === undefined) this.uploads.commit(row.upload_id) // logged and counted as a CLI commit
    this.q.setState.run('done', row.id)
    this.ctx.metrics.tusSessions.inc({event: 'finished'})
    return view(this.row(row.id))
  }

  private held(id: string, request: {node: string; epoch: number}, doneToo = false): Row {
    const row = this.open(id, doneToo)
    if (row.holder !== request.node || row.epoch !== request.epoch) {
      throw new ChunkyError('UPLOAD_LOCKED', `tus upload ${id} was taken over by ${row.holder ?? 'another node'}: ask it for the offset (HEAD) again`)
    }
    return row
  }

  private open(id: string, doneToo = false): Row {
    const row = this.q.get.get(id) as Row | undefined
    if (!row) throw new ChunkyError('UPLOAD_NOT_FOUND', `no tus upload ${id} (it was terminated, or never existed)`)
    if (row.state === 'expired' || (row.state === 'open' && row.expires_ms <= this.ctx.clock.now())) {
      throw new ChunkyError('UPLOAD_EXPIRED', `tus upload ${id} expired at ${new Date(row.expires_ms).toISOString()} unfinished: start a new upload`)
    }
    if (row.state === 'done' && !doneToo && row.upload_id === FINAL) {
      throw new ChunkyError('FORBIDDEN', `tus upload ${id} is a final upload, made whole from its partial uploads: it takes no PATCH`)
    }
    if (row.state === 'done' && !doneToo) throw new ChunkyError('OFFSET_MISMATCH', `tus upload ${id} is complete and committed`)
    return row
  }

  private row(id: string): Row {
    return this.q.get.get(id) as Row
  }
}

/** For a partial upload's name: the link name it was made with, or null; undefined when it is not partial. */
function partialScope(name: string): string | null | undefined {
  if (name === PARTIAL) return null
  return name.startsWith(`${PARTIAL}/`) ? name.slice(PARTIAL.length + 1) : undefined
}

function view(row: Row): TusSession {
  const scope = partialScope(row.name)
  return {
    id: row.id,
    name: scope === undefined ? row.name : scope,
    partial: scope !== undefined,
    length: row.length,
    offset: row.offset,
    chunkSize: row.chunk_size,
    metadata: row.metadata,
    maxSize: row.max_size,
    expiresAt: new Date(row.expires_ms).toISOString(),
    holder: row.holder,
    epoch: row.epoch,
    state: row.state === 'done' ? 'done' : 'open',
    parts: row.parts === null ? null : row.parts.split(' '),
  }
}
