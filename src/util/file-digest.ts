import {availableParallelism} from 'node:os'
import {Worker} from 'node:worker_threads'
import {nativeCrc32Path} from './crc32.js'
import {sharedMemory, type SharedSlice} from './shared-slices.js'

// The SHA-256 of bytes of a file (and, for a replica, one CRC-32 per block), taken on a worker thread
// by reading them back from the page cache as they land: the writer says how far the file is written
// after each batch, so by its last write only the last batch is left to hash. On the main thread,
// hashing cost about as much CPU as receiving and writing the bytes together; hashing the whole
// file only after its last byte put that pass in series with every write. Read back, the check covers
// the bytes as the file holds them, not only as they went past.

export interface FileDigest {
  /** Bytes hashed: from `start` to where finish() stopped. */
  size: number
  sha256: string
  /** One CRC-32 per `blockSize` block (the last may be short); empty without a blockSize. */
  blockSums: Uint32Array
}

export interface DigestOptions {
  /** First byte to hash (default 0). */
  start?: number
  /** Also keep a CRC-32 of every block of this many bytes. */
  blockSize?: number
}

/** A digest of bytes handed over in slices of the shared memory (shared-slices.ts), in order. */
export interface SliceDigest {
  /** Hashes the first `length` bytes of the slice; resolves once the thread is done with them (the slice may be reused). */
  update(slice: SharedSlice, length: number): Promise<void>
  /** The digest of every byte handed over. Call once, after the last update has resolved. */
  finish(): Promise<FileDigest>
  /** Stops without an answer; a no-op once finish() was called. */
  cancel(): void
}

export interface WrittenFileDigest {
  /** The file holds its bytes up to `end` (exclusive): hash them, in the background. */
  written(end: number): void
  /** The digest from `start` up to `end`, or to the end of the file. Call once. */
  finish(end?: number): Promise<FileDigest>
  /** Stops without an answer (the write failed); a no-op once finish() was called. */
  cancel(): void
}

/**
 * Threads at most. One: each thread is about 10 MiB of the node's memory (peak RSS under four uploads
 * at once measured 138-141 MiB with one, 148-154 MiB with two), and SHA-256 alone runs at 1.9 GB/s
 * on one thread of the bench machine, well above what a node takes in there.
 */
const MAX_WORKERS = 1

/**
 * The thread's young generation, in MiB: it allocates little but small messages and hash objects,
 * and V8's default lets that garbage grow to tens of MiB of the node's memory before it is collected.
 */
const WORKER_YOUNG_MB = 4
const READ_BYTES = 1024 * 1024

// Runs in each worker (plain JS, evaluated: no separate file to find next to the compiled code).
// Synchronous reads: the thread has nothing else to do. Messages are handled in order, so a job's
// `finish` comes after its `upTo`s; several jobs interleave.
const WORKER_SOURCE = `
const {parentPort, workerData} = require('node:worker_threads')
const {createHash} = require('node:crypto')
const {openSync, readSync, closeSync} = require('node:fs')
const {readBytes, shared, crc32Path} = workerData
const crc32 = crc32Path ? require(crc32Path).crc32 : require('node:zlib').crc32
const buf = Buffer.allocUnsafe(readBytes)
const sharedBytes = Buffer.from(shared)
const jobs = new Map()
function update(job, piece) {
  const n = piece.length
  job.hash.update(piece)
  for (let offset = 0; job.blockSize > 0 && offset < n; ) {
    const take = Math.min(job.blockSize - job.filled, n - offset)
    job.current = crc32(piece.subarray(offset, offset + take), job.current)
    job.filled += take
    offset += take
    if (job.filled === job.blockSize) {
      job.sums.push(job.current)
      job.current = 0
      job.filled = 0
    }
  }
  job.pos += n
}
function hashTo(job, end) {
  while (end === null || job.pos < end) {
    const n = readSync(job.fd, buf, 0, end === null ? readBytes : Math.min(readBytes, end - job.pos), job.pos)
    if (n === 0) return // the end of the file: finish() answers the size it reached
    update(job, buf.subarray(0, n))
  }
}
function close(job) {
  if (job.fd !== undefined) closeSync(job.fd)
  job.fd = undefined
}
parentPort.on('message', (m) => {
  if (m.op === 'open') {
    const job = {start: m.start, pos: m.start, blockSize: m.blockSize, hash: createHash('sha256'), sums: [], current: 0, filled: 0}
    try {
      if (m.path !== undefined) job.fd = openSync(m.path, 'r') // without a path, the bytes come in shared slices
    } catch (err) {
      job.error = err
    }
    jobs.set(m.id, job)
    return
  }
  const job = jobs.get(m.id)
  if (m.op === 'slice') {
    if (job && job.error === undefined) {
      try {
        update(job, sharedBytes.subarray(m.offset, m.offset + m.length))
      } catch (err) {
        job.error = err
      }
    }
    return parentPort.postMessage({id: m.id, sliceDone: true}) // always: the writer waits for its slice back
  }
  if (!job) return
  if (m.op === 'cancel') {
    jobs.delete(m.id)
    try { close(job) } catch {}
    return
  }
  if (job.error === undefined && job.fd !== undefined) {
    try {
      hashTo(job, m.end)
    } catch (err) {
      job.error = err
    }
  }
  if (m.op !== 'finish') return
  jobs.delete(m.id)
  try { close(job) } catch {}
  if (job.error !== undefined) return parentPort.postMessage({id: m.id, error: job.error.message, code: job.error.code})
  if (job.filled > 0) job.sums.push(job.current)
  const blockSums = Uint32Array.from(job.sums)
  parentPort.postMessage({id: m.id, size: job.pos - job.start, sha256: job.hash.digest('hex'), blockSums}, [blockSums.buffer])
})
`

interface Job {
  resolve: (digest: FileDigest) => void
  reject: (err: Error) => void
}

interface HashWorker {
  worker: Worker
  /** Jobs opened on this worker and not yet finished or cancelled; `job` is set once finish() is called. */
  jobs: Map<number, Job | undefined>
  /** Per job, the slices handed over and not yet hashed, oldest first (the thread answers them in order). */
  slices: Map<number, (() => void)[]>
}

const pool: HashWorker[] = []
let nextJob = 0

/** Starts hashing the file at `path` (which must exist) as it is written; see WrittenFileDigest. */
export function digestAsWritten(path: string, opts: DigestOptions = {}): WrittenFileDigest {
  const slot = pickWorker()
  const {id, done} = openJob(slot, {path, start: opts.start ?? 0, blockSize: opts.blockSize ?? 0})
  let finished = false
  return {
    written(end) {
      if (!finished) slot.worker.postMessage({op: 'upTo', id, end})
    },
    finish(end) {
      if (finished) return Promise.reject(new Error('finish() was called twice'))
      finished = true
      return finishJob(slot, id, done, end ?? null)
    },
    cancel() {
      if (finished) return
      finished = true
      done()
      if (pool.includes(slot)) slot.worker.postMessage({op: 'cancel', id})
    },
  }
}

/**
 * Starts a digest of bytes handed over in shared slices (SliceDigest). With `after`, the digest
 * starts with the first `bytes` of the file at `path`, read back from it (bytes a writer holds no
 * more: an earlier request's), and the slices continue from there.
 */
export function digestSlices(opts: {blockSize?: number; after?: {path: string; bytes: number}} = {}): SliceDigest {
  const slot = pickWorker()
  const {id, done} = openJob(slot, {start: 0, blockSize: opts.blockSize ?? 0, ...(opts.after ? {path: opts.after.path} : {})})
  if (opts.after) slot.worker.postMessage({op: 'upTo', id, end: opts.after.bytes})
  let handed = opts.after?.bytes ?? 0 // where finish() stops: the file may hold more than was handed over
  let finished = false
  return {
    update(slice, length) {
      if (!pool.includes(slot)) return Promise.reject(new Error('the hashing thread stopped'))
      return new Promise<void>((resolve) => {
        const waiting = slot.slices.get(id) ?? []
        waiting.push(resolve)
        slot.slices.set(id, waiting)
        slot.worker.postMessage({op: 'slice', id, offset: slice.offset, length})
        handed += length
      })
    },
    finish() {
      if (finished) return Promise.reject(new Error('finish() was called twice'))
      finished = true
      return finishJob(slot, id, done, opts.after ? handed : null)
    },
    cancel() {
      if (finished) return
      finished = true
      done()
      if (pool.includes(slot)) slot.worker.postMessage({op: 'cancel', id})
    },
  }
}

/** Opens a job on a worker, which is kept referenced while it has jobs (the process waits for the answer); `done` ends it. */
function openJob(slot: HashWorker, open: {path?: string; start: number; blockSize: number}): {id: number; done: () => void} {
  const id = nextJob++
  slot.jobs.set(id, undefined)
  if (slot.jobs.size === 1) slot.worker.ref()
  slot.worker.postMessage({op: 'open', id, ...open})
  const done = () => {
    slot.jobs.delete(id)
    if (slot.jobs.size === 0) slot.worker.unref()
  }
  return {id, done}
}

/** Asks the worker for a job's digest, hashing up to `end` first (null: to the end of what it has). */
function finishJob(slot: HashWorker, id: number, done: () => void, end: number | null): Promise<FileDigest> {
  if (!pool.includes(slot)) return Promise.reject(new Error('the hashing thread stopped'))
  return new Promise<FileDigest>((resolve, reject) => {
    slot.jobs.set(id, {
      resolve: (digest) => (done(), resolve(digest)),
      reject: (err) => (done(), reject(err)),
    })
    slot.worker.postMessage({op: 'finish', id, end})
  })
}

/** The digest of the whole file at `path`. */
export function digestFile(path: string, opts: Omit<DigestOptions, 'start'> = {}): Promise<FileDigest> {
  return digestAsWritten(path, opts).finish()
}

/** The least busy worker, starting one while fewer than the maximum run. */
function pickWorker(): HashWorker {
  const idle = pool.find((w) => w.jobs.size === 0)
  if (idle) return idle
  if (pool.length < Math.min(MAX_WORKERS, availableParallelism())) return startWorker()
  return pool.reduce((a, b) => (b.jobs.size < a.jobs.size ? b : a))
}

function startWorker(): HashWorker {
  const worker = new Worker(WORKER_SOURCE, {eval: true, workerData: {readBytes: READ_BYTES, shared: sharedMemory(), crc32Path: nativeCrc32Path}, resourceLimits: {maxYoungGenerationSizeMb: WORKER_YOUNG_MB}})
  const slot: HashWorker = {worker, jobs: new Map(), slices: new Map()}
  pool.push(slot)
  worker.unref() // an idle pool never keeps a process alive
  worker.on('message', (msg: {id: number; sliceDone?: true; error?: string; code?: string} & Partial<FileDigest>) => {
    if (msg.sliceDone) {
      const waiting = slot.slices.get(msg.id)
      waiting?.shift()?.()
      if (waiting?.length === 0) slot.slices.delete(msg.id)
      return
    }
    const job = slot.jobs.get(msg.id)
    if (!job) return
    if (msg.error !== undefined) job.reject(Object.assign(new Error(msg.error), {code: msg.code}))
    else job.resolve({size: msg.size!, sha256: msg.sha256!, blockSums: msg.blockSums!})
  })
  const fail = (err: Error) => {
    pool.splice(pool.indexOf(slot), 1) // the next job starts a fresh worker
    for (const job of slot.jobs.values()) job?.reject(err)
    slot.jobs.clear()
    for (const waiting of slot.slices.values()) for (const sliceDone of waiting) sliceDone() // the thread reads them no more; finish() fails
    slot.slices.clear()
  }
  worker.on('error', fail)
  worker.on('exit', (code) => {
    if (pool.includes(slot)) fail(new Error(`the hashing thread stopped (exit code ${code})`))
  })
  return slot
}
