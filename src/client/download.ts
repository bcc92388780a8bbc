import {createHash, randomBytes} from 'node:crypto'
import {once} from 'node:events'
import {rm, stat} from 'node:fs/promises'
import {basename, dirname, join, resolve} from 'node:path'
import {performance} from 'node:perf_hooks'
import {ChunkyError, type FileManifest, type NodeSummary, type Target} from '../protocol/index.js'
import {DirectFile, writeAndDigestSlices} from '../util/direct-write.js'
import {commitFile} from '../util/fs.js'
import {send} from './http.js'
import {InterruptedError, networkErrorCode, requestSignal} from './errors.js'
import {masterApi, type MasterApi} from './master-api.js'
import {withMasterRetry} from './master-retry.js'
import {measureNodes, type Probe} from './nearest.js'
import {runPool} from './pool.js'
import type {TransferView} from './view.js'

export interface DownloadOptions {
  name: string
  /** Where to write; defaults to the name's last segment in the current directory. Replaced atomically if it exists. */
  output?: string
  master: string
  token?: string
  concurrency?: number
  signal?: AbortSignal
  probe?: Probe
  /** Round trips (ms) by node id measured once for many downloads (a prefix): then nothing is measured here. */
  nodeRtt?: Map<string, number>
}

export interface DownloadResult {
  name: string
  size: number
  chunks: number
  seconds: number
  output: string
}

type ManifestChunk = FileManifest['chunks'][number]

/** A replica that answered with bytes that are not the chunk: the master must hear about it. */
class BadReplica extends Error {}

export async function downloadFile(opts: DownloadOptions, view: TransferView): Promise<DownloadResult> {
  const started = performance.now()
  // Checked before any byte is fetched: a bad -o used to fail only after the whole download.
  const output = await outputPath(opts.output, opts.name)
  const {api, manifest, order} = await prepare(opts, view)

  const tmp = join(dirname(output), `.${basename(output)}.${randomBytes(6).toString('hex')}.chunky-tmp`)
  // One file for every chunk: each writes its bytes at its own offset, past the page cache where it can.
  const file = await DirectFile.create(tmp).catch((err: NodeJS.ErrnoException) => {
    // the temp file is ours, not the user's: name the directory the output goes to
    if (err.code === 'EACCES' || err.code === 'EPERM' || err.code === 'EROFS') {
      throw new ChunkyError('BAD_REQUEST', `cannot write ${output}: no permission to create files in ${dirname(output)} (${err.code})`)
    }
    throw err
  })
  try {
    await file.truncate(manifest.size)
    const flusher = backgroundFlusher(file)
    const progress = progressOf(view, manifest.size)
    // Chunks are placed by the sizes before them: a file joined from tus partial uploads has short chunks mid-file.
    const starts = new Map<number, number>()
    let at = 0
    for (const chunk of manifest.chunks) {
      starts.set(chunk.index, at)
      at += chunk.size
    }
    await runPool(manifest.chunks, opts.concurrency ?? 4, async (chunk, signal) => {
      const sink: ChunkSink = {file, base: starts.get(chunk.index)!}
      await progress.around(chunk, (onBytes) => fetchChunk(chunk, manifest, order(chunk.replicas), sink, api, opts.token, view, onBytes, signal))
      flusher.chunkWritten()
    }, opts.signal).finally(() => flusher.settled())
    await flusher.settled(true)
    await file.close()
    view.step('saving')
    await commitFile(tmp, output)
  } catch (err) {
    await file.close().catch(() => {}) // already closed when the failure came later
    await rm(tmp, {force: true}) // an interrupted or failed download leaves nothing behind
    throw err
  }
  view.stop()
  return {name: manifest.name, size: manifest.size, chunks: manifest.chunks.length, seconds: Math.round(performance.now() - started) / 1000, output}
}

/**
 * `download NAME -o -`: the file to `out` (standard output) in order, each chunk verified (size and
 * SHA-256) before any of its bytes go out, so a reader never gets a byte that failed its check. Up to
 * `concurrency` chunks are fetched ahead and held in memory (10 MiB each by default) until their turn.
 */
export async function downloadToStream(opts: Omit<DownloadOptions, 'output'>, view: TransferView, out: NodeJS.WritableStream): Promise<DownloadResult> {
  const started = performance.now()
  const {api, manifest, order} = await prepare(opts, view)
  const window = opts.concurrency ?? 4
  const progress = progressOf(view, manifest.size)
  const ready = new Map<number, Buffer>()
  let nextOut = 0 // index of the next chunk to write out
  let wakeFetchers: (() => void)[] = []
  let writing: Promise<void> = Promise.resolve()
  const outFailed = new Promise<never>((_, fail) => out.once('error', (err: NodeJS.ErrnoException) => fail(outputError(err))))
  outFailed.catch(() => {}) // raced below
  const writeOut = async (data: Buffer) => {
    if (!out.write(data)) await Promise.race([once(out, 'drain'), outFailed])
  }
  await runPool(manifest.chunks, window, async (chunk, signal) => {
    // chunks are handed out in order: this bounds what is held to `window` chunks
    while (chunk.index >= nextOut + window) {
      if (signal.aborted) throw new InterruptedError()
      await new Promise<void>((wake) => {
        wakeFetchers.push(wake)
        signal.addEventListener('abort', () => wake(), {once: true}) // another chunk failed: stop waiting for a turn
      })
    }
    const data = Buffer.allocUnsafe(chunk.size)
    const sink: ChunkSink = {data}
    await progress.around(chunk, (onBytes) => fetchChunk(chunk, manifest, order(chunk.replicas), sink, api, opts.token, view, onBytes, signal))
    ready.set(chunk.index, data)
    writing = writing.then(async () => {
      for (let next = ready.get(nextOut); next; next = ready.get(nextOut)) {
        ready.delete(nextOut)
        await writeOut(next)
        nextOut++
        const waiting = wakeFetchers
        wakeFetchers = []
        for (const wake of waiting) wake()
      }
    })
    await writing
  }, opts.signal)
  await writing
  view.stop()
  return {name: manifest.name, size: manifest.size, chunks: manifest.chunks.length, seconds: Math.round(performance.now() - started) / 1000, output: '-'}
}

function outputError(err: NodeJS.ErrnoException): Error {
  if (err.code === 'EPIPE') return new ChunkyError('BAD_REQUEST', 'standard output was closed before the whole file was written (the reader stopped early)')
  return err
}

/** One manifest for the whole download, and the order (nearest first) to try each chunk's replicas. */
async function prepare(opts: Omit<DownloadOptions, 'output'>, view: TransferView): Promise<{api: MasterApi; manifest: FileManifest; order: (replicas: Target[]) => Target[]}> {
  const api = masterApi(opts.master, opts.token, {signal: opts.signal})
  view.step(`fetching the manifest of ${opts.name}`)
  // One manifest for the whole download: every chunk is read at the version it names (never a mix).
  // A master that is restarting gets a few more tries, as an upload gives it (a read need not fail on a blip).
  // With several masters, one that has just taken over lists a chunk's copies only once the nodes
  // linked to it again and reported what they hold: a chunk with none listed is asked for again.
  const fetchManifest = async () => {
    const found = await api.manifest(opts.name)
    const bare = api.masters > 1 ? found.chunks.find((chunk) => chunk.replicas.length === 0) : undefined
    if (bare) throw new ChunkyError('NO_NODES', `the master lists no fresh copy of chunk ${bare.index} of ${opts.name} on an alive node: try again once the cluster has repaired it`)
    return found
  }
  const manifest = await withMasterRetry(fetchManifest, {signal: opts.signal, view, masters: api.masters, what: 'fetching the manifest'}).catch((err: unknown) => {
    throw notFoundNamed(err, opts.name)
  })
  view.step('finding the nearest replicas')
  const order = opts.nodeRtt ? byRtt(opts.nodeRtt) : await replicaOrder(manifest, opts.probe)
  return {api, manifest, order}
}

/** Progress of the whole download: bytes of finished chunks plus those in flight. */
function progressOf(view: TransferView, total: number) {
  const inFlight = new Map<number, number>()
  let finished = 0
  const report = () => view.overall(finished + [...inFlight.values()].reduce((a, b) => a + b, 0))
  view.start('downloading', total)
  return {
    async around(chunk: ManifestChunk, fetch: (onBytes: (bytes: number) => void) => Promise<void>): Promise<void> {
      try {
        await fetch((bytes) => {
          inFlight.set(chunk.index, bytes)
          view.chunk(chunk.index, bytes, chunk.size)
          report()
        })
        finished += chunk.size
      } finally {
        inFlight.delete(chunk.index)
        view.chunkDone(chunk.index)
        report()
      }
    },
  }
}

/**
 * Where `-o` puts NAME, as cp does: an existing directory gets DIR/<NAME's last segment>; a path
 * ending in `/` that is no directory, or a file path whose directory is missing, is refused before
 * anything is downloaded, naming the directory that is missing.
 */
export async function outputPath(given: string | undefined, name: string): Promise<string> {
  const leaf = basename(name)
  if (given === undefined) return resolve(leaf)
  const info = await stat(given).catch(() => undefined)
  if (info?.isDirectory()) return resolve(given, leaf)
  if (given.endsWith('/')) throw new ChunkyError('BAD_REQUEST', `cannot write into ${given}: no such directory (create it first, or name a file with -o)`)
  const dir = dirname(resolve(given))
  const dirInfo = await stat(dir).catch(() => undefined)
  if (!dirInfo) throw new ChunkyError('BAD_REQUEST', `cannot write ${given}: no such directory ${dirname(given)} (create it first)`)
  if (!dirInfo.isDirectory()) throw new ChunkyError('BAD_REQUEST', `cannot write ${given}: ${dirname(given)} is not a directory`)
  return resolve(given)
}

/**
 * Writes the finished chunks' bytes to the disk while later chunks still arrive (one datasync at a
 * time), so the fsync before the rename has little left to do. That final fsync still happens
 * (commitFile): this only moves the disk work earlier, it promises nothing.
 */
function backgroundFlusher(file: DirectFile): {chunkWritten(): void; settled(rethrow?: boolean): Promise<void>} {
  let running: Promise<void> | undefined
  let failure: unknown
  return {
    chunkWritten() {
      if (running) return
      running = file.datasync().then(
        () => {
          running = undefined
        },
        (err: unknown) => {
          failure ??= err
          running = undefined
        },
      )
    },
    async settled(rethrow = false) {
      await running
      if (rethrow && failure !== undefined) throw failure
    },
  }
}

/** A 404 for a name, said with the name in it whatever the server's wording. */
export function notFoundNamed(err: unknown, name: string): unknown {
  if (err instanceof ChunkyError && (err.code === 'FILE_NOT_FOUND' || err.code === 'NOT_FOUND') && !err.message.includes(name)) {
    return new ChunkyError('FILE_NOT_FOUND', `no file named ${name} in the cluster (\`chunky ls\` lists them)`)
  }
  return err
}

/** Sorts each chunk's replicas nearest first, by one measurement of every node that holds any. */
async function replicaOrder(manifest: FileManifest, probe?: Probe): Promise<(replicas: Target[]) => Target[]> {
  const nodes = new Map<string, NodeSummary>()
  for (const chunk of manifest.chunks) {
    for (const target of chunk.replicas) nodes.set(target.id, {...target, state: 'alive'})
  }
  if (nodes.size <= 1) return (replicas) => replicas
  return byRtt(await measureRtt([...nodes.values()], probe))
}

/** Round trip (ms) to each node, Infinity for one that did not answer. */
export async function measureRtt(nodes: NodeSummary[], probe?: Probe): Promise<Map<string, number>> {
  return new Map((await measureNodes(nodes, probe)).map((m) => [m.node.id, m.rttMs ?? Infinity]))
}

function byRtt(rtt: Map<string, number>): (replicas: Target[]) => Target[] {
  return (replicas) => [...replicas].sort((a, b) => (rtt.get(a.id) ?? Infinity) - (rtt.get(b.id) ?? Infinity))
}

async function fetchChunk(
  chunk: ManifestChunk,
  manifest: FileManifest,
  replicas: Target[],
  sink: ChunkSink,
  api: MasterApi,
  token: string | undefined,
  view: TransferView,
  onBytes: (bytes: number) => void,
  signal: AbortSignal,
): Promise<void> {
  if (replicas.length === 0) {
    throw new ChunkyError('CHUNK_NOT_FOUND', `chunk ${chunk.index} of ${manifest.name} has no fresh copy on an alive node right now: try again once the cluster has repaired it`)
  }
  const problems: string[] = []
  for (const replica of replicas) {
    try {
      await fetchReplica(chunk, replica, sink, token, onBytes, signal)
      return
    } catch (err) {
      if (signal.aborted) throw new InterruptedError()
      const reason = err instanceof Error ? err.message : String(err)
      problems.push(`${replica.id}: ${reason}`)
      onBytes(0)
      if (err instanceof BadReplica) {
        await api.reportBadReplica({chunkId: chunk.chunkId, version: chunk.version, node: replica.id, reason}).catch(() => {})
      }
      view.note(`chunk ${chunk.index}: ${replica.id} failed (${reason}), trying the next copy`)
    }
  }
  throw new ChunkyError('NODE_UNREACHABLE', `chunk ${chunk.index} of ${manifest.name} could not be read from any copy (${problems.join('; ')}): try again shortly`)
}

/**
 * Where a chunk's bytes go (a retry from another replica starts again at its first byte): into the
 * output file at `base`, hashed on the hashing thread from the memory handed to the disk
 * (util/direct-write.ts), not on the thread that receives; or into `data`, hashed here.
 */
type ChunkSink = {file: DirectFile; base: number} | {data: Buffer}

/** Streams one replica into the sink, hashing as it goes; throws unless size and SHA-256 match. */
async function fetchReplica(
  chunk: ManifestChunk,
  replica: Target,
  sink: ChunkSink,
  token: string | undefined,
  onBytes: (bytes: number) => void,
  signal: AbortSignal,
): Promise<void> {
  let seen = 0
  const abort = requestSignal(signal)
  let sha256: string
  try {
    const response = await send(new URL(`/chunks/${chunk.chunkId}/${chunk.version}`, replica.url), {
      method: 'GET',
      headers: token ? {authorization: `Bearer ${token}`} : {},
      connectTimeoutMs: 5_000,
      responseTimeoutMs: 30_000,
      idleTimeoutMs: 30_000,
      signal: abort.signal,
    })
    if (response.statusCode !== 200) {
      response.resume()
      throw new Error(`HTTP ${response.statusCode}`)
    }
    const body = async function* () {
      for await (const part of response as AsyncIterable<Buffer>) {
        seen += part.length
        if (seen > chunk.size) {
          response.destroy()
          throw new BadReplica(`sent more than the chunk's ${chunk.size} bytes`)
        }
        yield part
        onBytes(seen)
      }
    }
    if ('file' in sink) {
      sha256 = (await writeAndDigestSlices(sink.file, sink.base, body())).sha256
    } else {
      const hash = createHash('sha256')
      for await (const part of body()) {
        hash.update(part)
        part.copy(sink.data, seen - part.length)
      }
      sha256 = hash.digest('hex')
    }
  } catch (err) {
    if (err instanceof BadReplica) throw err
    throw new Error(networkErrorCode(err) ?? (err instanceof Error ? err.message : String(err)))
  } finally {
    abort.dispose()
  }
  if (seen !== chunk.size) throw new BadReplica(`sent ${seen} of ${chunk.size} bytes`)
  if (sha256 !== chunk.sha256) throw new BadReplica('bytes do not match the recorded SHA-256')
}
