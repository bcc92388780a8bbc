import {createHash} from 'node:crypto'
import {open} from 'node:fs/promises'
import {availableParallelism} from 'node:os'
import {Worker} from 'node:worker_threads'
import type {ChunkRange} from './plan.js'
import {InterruptedError} from './errors.js'

/** Below this a file is hashed on the main thread: starting workers would cost more than it saves. */
export const PARALLEL_HASH_MIN_BYTES = 64 * 1024 * 1024
/** Worker threads at most (each reads and hashes its own chunks; SHA-256 is CPU-bound). */
const MAX_HASH_WORKERS = 4
const READ_BYTES = 1024 * 1024

/**
 * SHA-256 (hex) of each range of the file. A large file is hashed by a few worker threads at once,
 * each taking every Nth chunk (the upload plan needs every hash before a byte is sent, so this pass
 * is on the critical path); memory stays bounded by one 1 MiB read buffer per thread. `onProgress`
 * gets the bytes hashed so far over all ranges, rising.
 */
export async function hashChunks(
  path: string,
  ranges: ChunkRange[],
  onProgress: (hashedBytes: number) => void = () => {},
  signal?: AbortSignal,
): Promise<string[]> {
  const total = ranges.reduce((sum, r) => sum + r.end - r.start, 0)
  const workers = Math.min(MAX_HASH_WORKERS, availableParallelism(), ranges.length)
  if (total < PARALLEL_HASH_MIN_BYTES || workers < 2) return hashInProcess(path, ranges, onProgress, signal)
  return hashInWorkers(path, ranges, workers, onProgress, signal)
}

async function hashInProcess(
  path: string,
  ranges: ChunkRange[],
  onProgress: (hashedBytes: number) => void,
  signal?: AbortSignal,
): Promise<string[]> {
  const digests: string[] = []
  let hashed = 0
  // One buffer read into again and again: a stream would make a fresh 1 MiB buffer per read, and the
  // dead ones would raise the peak memory by tens of MB before the collector came round.
  const buffer = Buffer.allocUnsafe(READ_BYTES)
  const file = await open(path, 'r')
  try {
    for (const range of ranges) {
      const hash = createHash('sha256')
      let position = range.start
      while (position < range.end) {
        if (signal?.aborted) throw new InterruptedError()
        const {bytesRead} = await file.read(buffer, 0, Math.min(READ_BYTES, range.end - position), position)
        // A file that shrank under us would otherwise hash a short range without complaint.
        if (bytesRead === 0) throw shortRead(path, range.index)
        hash.update(buffer.subarray(0, bytesRead))
        position += bytesRead
        hashed += bytesRead
        onProgress(hashed)
      }
      digests.push(hash.digest('hex'))
    }
  } finally {
    await file.close()
  }
  return digests
}

const shortRead = (path: string, index: number) => new Error(`${path} changed while it was being read (chunk ${index} is short)`)

// Runs in each worker (plain JS, evaluated: no separate file to find next to the compiled code).
// Synchronous reads: the thread has nothing else to do. Posts progress per read, a digest per range.
const WORKER_SOURCE = `
const {parentPort, workerData} = require('node:worker_threads')
const {createHash} = require('node:crypto')
const {openSync, readSync, closeSync} = require('node:fs')
const {path, ranges, readBytes} = workerData
const buf = Buffer.allocUnsafe(readBytes)
const fd = openSync(path, 'r')
try {
  for (const range of ranges) {
    const hash = createHash('sha256')
    let pos = range.start
    while (pos < range.end) {
      const n = readSync(fd, buf, 0, Math.min(readBytes, range.end - pos), pos)
      if (n === 0) throw new Error('short ' + range.index)
      hash.update(buf.subarray(0, n))
      pos += n
      parentPort.postMessage({type: 'progress', bytes: n})
    }
    parentPort.postMessage({type: 'digest', index: range.index, digest: hash.digest('hex')})
  }
} finally {
  closeSync(fd)
}
`

type WorkerMessage = {type: 'progress'; bytes: number} | {type: 'digest'; index: number; digest: string}

async function hashInWorkers(
  path: string,
  ranges: ChunkRange[],
  count: number,
  onProgress: (hashedBytes: number) => void,
  signal?: AbortSignal,
): Promise<string[]> {
  if (signal?.aborted) throw new InterruptedError()
  const digests = new Map<number, string>()
  let workersHashed = 0
  let ownHashed = 0
  const report = () => onProgress(workersHashed + ownHashed)
  const share = (w: number) => ranges.filter((_, i) => i % count === w)
  const workers: Worker[] = []
  // Stops both halves: on Ctrl-C, and once either failed (the other must not keep reading the file).
  const halt = new AbortController()
  const stop = () => halt.abort()
  signal?.addEventListener('abort', stop, {once: true})
  try {
    // The main thread hashes the first share itself: one worker fewer is ~12 MB less peak memory,
    // and the main thread has nothing else to do meanwhile.
    const own = share(0)
    const ownDone = hashInProcess(path, own, (bytes) => {
      ownHashed = bytes
      report()
    }, halt.signal).then((ownDigests) => own.forEach((range, i) => digests.set(range.index, ownDigests[i]!)))
    const workersDone = new Promise<void>((resolve, reject) => {
      let running = count - 1
      halt.signal.addEventListener('abort', () => reject(new InterruptedError()), {once: true})
      for (let w = 1; w < count; w++) {
        const mine = share(w).map(({index, start, end}) => ({index, start, end}))
        const worker = new Worker(WORKER_SOURCE, {eval: true, workerData: {path, ranges: mine, readBytes: READ_BYTES}})
        workers.push(worker)
        worker.on('message', (message: WorkerMessage) => {
          if (message.type === 'progress') {
            workersHashed += message.bytes
            report()
          } else {
            digests.set(message.index, message.digest)
          }
        })
        worker.on('error', (err: Error) => {
          const short = /^short (\d+)$/.exec(err.message)
          reject(short ? shortRead(path, Number(short[1])) : err)
        })
        worker.on('exit', () => {
          if (--running === 0) resolve()
        })
      }
    })
    await Promise.all([ownDone, workersDone])
  } finally {
    signal?.removeEventListener('abort', stop)
    halt.abort()
    await Promise.all(workers.map((worker) => worker.terminate()))
  }
  return ranges.map((range) => {
    const digest = digests.get(range.index)
    if (digest === undefined) throw shortRead(path, range.index)
    return digest
  })
}
