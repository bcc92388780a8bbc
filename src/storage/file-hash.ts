import {availableParallelism} from 'node:os'
import {Worker} from 'node:worker_threads'
import {BLOCK_SIZE} from './block-checksums.js'

// The SHA-256 and the per-block CRC-32s of a replica just written, taken by reading the temp file back
// on a worker thread. On the main thread, hashing cost about as much CPU as receiving and writing the
// bytes together: every upload, chain forward and repair waited on it. Read back from the page cache,
// the check also covers the bytes as the file holds them, not only as they went past.

export interface FileDigest {
  size: number
  sha256: string
  /** One CRC-32 per BLOCK_SIZE block (the last may be short). */
  blockSums: Uint32Array
}

/**
 * Threads at most. One: each thread is about 10 MiB of the node's memory (peak RSS under four uploads
 * at once measured 138-141 MiB with one, 148-154 MiB with two), and SHA-256 alone runs at 1.9 GB/s
 * on one thread of the bench machine, well above what a node takes in there.
 */
const MAX_WORKERS = 1
const READ_BYTES = 1024 * 1024

// Runs in each worker (plain JS, evaluated: no separate file to find next to the compiled code).
// Synchronous reads: the thread has nothing else to do. One job at a time, answered in order.
const WORKER_SOURCE = `
const {parentPort, workerData} = require('node:worker_threads')
const {createHash} = require('node:crypto')
const {openSync, readSync, closeSync} = require('node:fs')
const {crc32} = require('node:zlib')
const {blockSize, readBytes} = workerData
const buf = Buffer.allocUnsafe(readBytes)
parentPort.on('message', ({id, path}) => {
  try {
    const hash = createHash('sha256')
    const sums = []
    let current = 0
    let filled = 0
    let size = 0
    const fd = openSync(path, 'r')
    try {
      for (;;) {
        const n = readSync(fd, buf, 0, readBytes, size)
        if (n === 0) break
        const piece = buf.subarray(0, n)
        hash.update(piece)
        for (let offset = 0; offset < n; ) {
          const take = Math.min(blockSize - filled, n - offset)
          current = crc32(piece.subarray(offset, offset + take), current)
          filled += take
          offset += take
          if (filled === blockSize) {
            sums.push(current)
            current = 0
            filled = 0
          }
        }
        size += n
      }
    } finally {
      closeSync(fd)
    }
    if (filled > 0) sums.push(current)
    const blockSums = Uint32Array.from(sums)
    parentPort.postMessage({id, size, sha256: hash.digest('hex'), blockSums}, [blockSums.buffer])
  } catch (err) {
    parentPort.postMessage({id, error: err.message, code: err.code})
  }
})
`

interface Job {
  resolve: (digest: FileDigest) => void
  reject: (err: Error) => void
}

interface HashWorker {
  worker: Worker
  jobs: Map<number, Job>
}

const pool: HashWorker[] = []
let nextJob = 0

/** The digest of the whole file at `path`, computed on a worker thread. */
export function digestFile(path: string): Promise<FileDigest> {
  const slot = pickWorker()
  const id = nextJob++
  return new Promise<FileDigest>((resolve, reject) => {
    slot.jobs.set(id, {resolve, reject})
    if (slot.jobs.size === 1) slot.worker.ref() // busy: the process waits for the answer
    slot.worker.postMessage({id, path})
  })
}

/** The least busy worker, starting one while fewer than the maximum run. */
function pickWorker(): HashWorker {
  const idle = pool.find((w) => w.jobs.size === 0)
  if (idle) return idle
  if (pool.length < Math.min(MAX_WORKERS, availableParallelism())) return startWorker()
  return pool.reduce((a, b) => (b.jobs.size < a.jobs.size ? b : a))
}

function startWorker(): HashWorker {
  const worker = new Worker(WORKER_SOURCE, {eval: true, workerData: {blockSize: BLOCK_SIZE, readBytes: READ_BYTES}})
  const slot: HashWorker = {worker, jobs: new Map()}
  pool.push(slot)
  worker.unref() // an idle pool never keeps a process alive
  worker.on('message', (msg: {id: number; error?: string; code?: string} & Partial<FileDigest>) => {
    const job = slot.jobs.get(msg.id)
    if (!job) return
    slot.jobs.delete(msg.id)
    if (slot.jobs.size === 0) worker.unref()
    if (msg.error !== undefined) job.reject(Object.assign(new Error(msg.error), {code: msg.code}))
    else job.resolve({size: msg.size!, sha256: msg.sha256!, blockSums: msg.blockSums!})
  })
  const fail = (err: Error) => {
    pool.splice(pool.indexOf(slot), 1) // the next job starts a fresh worker
    for (const job of slot.jobs.values()) job.reject(err)
    slot.jobs.clear()
  }
  worker.on('error', fail)
  worker.on('exit', (code) => {
    if (pool.includes(slot)) fail(new Error(`the hashing thread stopped (exit code ${code})`))
  })
  return slot
}
