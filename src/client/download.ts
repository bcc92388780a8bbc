import {createHash, randomBytes} from 'node:crypto'
import {createWriteStream} from 'node:fs'
import {open, rm} from 'node:fs/promises'
import {basename, dirname, join, resolve} from 'node:path'
import {performance} from 'node:perf_hooks'
import {pipeline} from 'node:stream/promises'
import got from 'got'
import {ChunkyError, type FileManifest, type NodeSummary, type Target} from '../protocol/index.js'
import {commitFile} from '../util/fs.js'
import {InterruptedError, networkErrorCode, requestSignal} from './errors.js'
import {masterApi, type MasterApi} from './master-api.js'
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
  const api = masterApi(opts.master, opts.token, {signal: opts.signal})
  view.step(`fetching the manifest of ${opts.name}`)
  // One manifest for the whole download: every chunk is read at the version it names (never a mix).
  const manifest = await api.manifest(opts.name).catch((err: unknown) => {
    throw notFoundNamed(err, opts.name)
  })
  const output = resolve(opts.output ?? basename(opts.name))

  view.step('finding the nearest replicas')
  const order = await replicaOrder(manifest, opts.probe)

  const tmp = join(dirname(output), `.${basename(output)}.${randomBytes(6).toString('hex')}.chunky-tmp`)
  const handle = await open(tmp, 'wx', 0o644)
  try {
    await handle.truncate(manifest.size) // every chunk then writes into its own place
  } finally {
    await handle.close()
  }
  try {
    const inFlight = new Map<number, number>()
    let finished = 0
    const report = () => view.overall(finished + [...inFlight.values()].reduce((a, b) => a + b, 0))
    view.start('downloading', manifest.size)
    await runPool(manifest.chunks, opts.concurrency ?? 4, async (chunk, signal) => {
      const onBytes = (bytes: number) => {
        inFlight.set(chunk.index, bytes)
        view.chunk(chunk.index, bytes, chunk.size)
        report()
      }
      try {
        await fetchChunk(chunk, manifest, order(chunk.replicas), tmp, api, opts.token, view, onBytes, signal)
        finished += chunk.size
      } finally {
        inFlight.delete(chunk.index)
        view.chunkDone(chunk.index)
        report()
      }
    }, opts.signal)
    view.step('saving')
    await commitFile(tmp, output)
  } catch (err) {
    await rm(tmp, {force: true}) // an interrupted or failed download leaves nothing behind
    throw err
  }
  view.stop()
  return {name: manifest.name, size: manifest.size, chunks: manifest.chunks.length, seconds: Math.round(performance.now() - started) / 1000, output}
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
  const rtt = new Map((await measureNodes([...nodes.values()], probe)).map((m) => [m.node.id, m.rttMs ?? Infinity]))
  return (replicas) => [...replicas].sort((a, b) => (rtt.get(a.id) ?? Infinity) - (rtt.get(b.id) ?? Infinity))
}

async function fetchChunk(
  chunk: ManifestChunk,
  manifest: FileManifest,
  replicas: Target[],
  tmp: string,
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
      await fetchReplica(chunk, replica, manifest.chunkSize * chunk.index, tmp, token, onBytes, signal)
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

/** Streams one replica into its place in the tmp file, hashing as it goes; throws unless size and SHA-256 match. */
async function fetchReplica(
  chunk: ManifestChunk,
  replica: Target,
  offset: number,
  tmp: string,
  token: string | undefined,
  onBytes: (bytes: number) => void,
  signal: AbortSignal,
): Promise<void> {
  const hash = createHash('sha256')
  let seen = 0
  const abort = requestSignal(signal)
  const source = got.stream(new URL(`/chunks/${chunk.chunkId}/${chunk.version}`, replica.url), {
    headers: token ? {authorization: `Bearer ${token}`} : {},
    retry: {limit: 0},
    timeout: {connect: 5_000, response: 30_000, socket: 30_000},
    signal: abort.signal,
  })
  try {
    await pipeline(
      source,
      async function* verify(parts: AsyncIterable<Buffer>) {
        for await (const part of parts) {
          seen += part.length
          if (seen > chunk.size) throw new BadReplica(`sent more than the chunk's ${chunk.size} bytes`)
          hash.update(part)
          onBytes(seen)
          yield part
        }
      },
      createWriteStream(tmp, {flags: 'r+', start: offset}),
    )
  } catch (err) {
    if (err instanceof BadReplica) throw err
    const status = (err as {response?: {statusCode?: number}}).response?.statusCode
    if (status !== undefined) throw new Error(`HTTP ${status}`)
    throw new Error(networkErrorCode(err) ?? (err instanceof Error ? err.message : String(err)))
  } finally {
    abort.dispose()
  }
  if (seen !== chunk.size) throw new BadReplica(`sent ${seen} of ${chunk.size} bytes`)
  if (hash.digest('hex') !== chunk.sha256) throw new BadReplica('bytes do not match the recorded SHA-256')
}
