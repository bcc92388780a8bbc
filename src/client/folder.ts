import {mkdir, readdir, stat} from 'node:fs/promises'
import {basename, dirname, join, relative, resolve, sep} from 'node:path'
import {performance} from 'node:perf_hooks'
import {ChunkyError, DEFAULT_CHUNK_SIZE, fileNameProblem, isErrorCode, MAX_BATCH_FILES, type PrefixFileList, type UploadPlan} from '../protocol/index.js'
import {downloadFile, measureRtt, type DownloadResult} from './download.js'
import {InterruptedError, throwIfAborted} from './errors.js'
import {hashChunks} from './hash.js'
import {masterApi} from './master-api.js'
import {withMasterRetry} from './master-retry.js'
import type {Probe} from './nearest.js'
import {planChunks} from './plan.js'
import {runPool} from './pool.js'
import {LostNodes, nearestEntryNode, planRequestFor, sendHashed, sendPlanned, type HashedFile, type SendContext, type UploadResult} from './upload.js'
import type {TransferView} from './view.js'

// Folders: `chunky upload DIR`, `chunky sync DIR` and `chunky download --prefix P` (SPEC.md "Operating
// a cluster"). What makes a large folder cheap: the master is asked once for every file under the
// prefix with its chunks' SHA-256 (GET /api/files?prefix=P&chunks=1); each local file is hashed and
// compared with that list here, so an unchanged file costs no request at all. New or changed files are
// planned and committed in batches (one request each way for up to BATCH_FILES small files; the master
// then skips their unchanged chunks); a large file, or one its batch could not do, goes on its own.

/** Files uploaded (or downloaded) at once; each has up to `concurrency` chunks in flight. */
export const FILES_IN_FLIGHT = 4
/** Files planned, and committed, in one request to the master (it takes up to MAX_BATCH_FILES). */
export const BATCH_FILES = 64
/** A batch also ends at this many chunks or bytes: its requests stay small, and a big file is committed as soon as it is sent. */
const BATCH_CHUNKS = 4096
const BATCH_BYTES = 256 * 1024 * 1024

export interface LocalFile {
  /** Path on disk. */
  path: string
  /** Path relative to the folder, with `/` separators. */
  rel: string
  size: number
}

/** Leftovers of an interrupted `chunky download` (download.ts writes `.NAME.<hex>.chunky-tmp`). */
const DOWNLOAD_TMP = /\.chunky-tmp$/

/** Every regular file under `dir` (symbolic links, sockets and the like are left out), sorted by path. */
export async function walkFolder(dir: string, signal?: AbortSignal): Promise<LocalFile[]> {
  const info = await stat(dir).catch(() => undefined)
  if (!info) throw new ChunkyError('BAD_REQUEST', `cannot read ${dir}: no such file or directory`)
  if (!info.isDirectory()) throw new ChunkyError('BAD_REQUEST', `${dir} is not a directory`)
  const files: LocalFile[] = []
  const pending = [resolve(dir)]
  const root = pending[0]!
  while (pending.length > 0) {
    throwIfAborted(signal)
    const current = pending.pop()!
    for (const entry of await readdir(current, {withFileTypes: true})) {
      const path = join(current, entry.name)
      if (entry.isDirectory()) pending.push(path)
      else if (entry.isFile() && !DOWNLOAD_TMP.test(entry.name)) {
        files.push({path, rel: relative(root, path).split(sep).join('/'), size: (await stat(path)).size})
      }
    }
  }
  return files.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0))
}

/** `--prefix P` as a name prefix: no trailing `/`, and a valid name itself (undefined: the top). */
export function normalizePrefix(prefix: string | undefined): string | undefined {
  if (prefix === undefined) return undefined
  const trimmed = prefix.replace(/\/+$/, '')
  if (trimmed === '') return undefined
  const problem = fileNameProblem(trimmed)
  if (problem) throw new ChunkyError('BAD_NAME', `bad --prefix "${prefix}": ${problem}`)
  return trimmed
}

export const nameUnder = (prefix: string | undefined, rel: string): string => (prefix === undefined ? rel : `${prefix}/${rel}`)
const listPrefix = (prefix: string | undefined): string => (prefix === undefined ? '' : `${prefix}/`)

export interface FolderOptions {
  dir: string
  prefix?: string
  /** Given: every new or changed file is cut into chunks of this size. Not given: a stored file keeps its own, a new one gets 10 MiB. */
  chunkSize?: number
  concurrency?: number
  node?: string
  zone?: string
  master: string
  token?: string
  signal?: AbortSignal
  probe?: Probe
  /** sync --delete: remove the names under the prefix that the folder lacks. */
  delete?: boolean
  /** sync --dry-run: decide and report, change nothing. */
  dryRun?: boolean
}

/** What a folder upload or sync did (or, with dryRun, would do). */
export interface FolderResult {
  /** One upload document per file of the folder, unchanged ones included (`upload DIR --json`). */
  files: UploadResult[]
  uploaded: string[]
  unchanged: number
  deleted: string[]
  uploadedChunks: number
  skippedChunks: number
  dryRun: boolean
}

type Remote = PrefixFileList['files'][number]

export async function syncFolder(opts: FolderOptions, view: TransferView): Promise<FolderResult> {
  const prefix = normalizePrefix(opts.prefix)
  view.step(`reading ${opts.dir}`)
  const local = await walkFolder(opts.dir, opts.signal)
  for (const file of local) {
    const problem = fileNameProblem(nameUnder(prefix, file.rel))
    if (problem) throw new ChunkyError('BAD_NAME', `${file.path} cannot be named "${nameUnder(prefix, file.rel)}" in the cluster: ${problem}`)
  }
  const api = masterApi(opts.master, opts.token, {signal: opts.signal})
  view.step('asking the master for the storage nodes and the files under the prefix')
  const {nodes} = await api.nodes() // a wrong --master or token fails in a second, before any hashing
  const remote = new Map((await api.filesUnder(listPrefix(prefix))).files.map((file) => [file.name, file]))

  // Hash everything, one progress bar for the whole folder.
  const total = local.reduce((sum, file) => sum + file.size, 0)
  view.start(`hashing ${local.length} file${local.length === 1 ? '' : 's'}`, total)
  const hashed: HashedFile[] = []
  let hashedBefore = 0
  for (const file of local) {
    // Without --chunk-size a file already stored keeps its chunk size: a folder uploaded with 1 MiB
    // chunks is not sent again whole because a later run left the flag out.
    const chunkSize = opts.chunkSize ?? remote.get(nameUnder(prefix, file.rel))?.chunkSize ?? DEFAULT_CHUNK_SIZE
    const ranges = planChunks(file.size, chunkSize)
    const digests = await hashChunks(file.path, ranges, (done) => view.overall(hashedBefore + done), opts.signal)
    hashedBefore += file.size
    hashed.push({path: file.path, name: nameUnder(prefix, file.rel), size: file.size, chunkSize, ranges, digests})
  }

  const unchanged = hashed.filter((file) => sameAsRemote(file, remote.get(file.name)))
  const same = new Set(unchanged)
  const changed = hashed.filter((file) => !same.has(file))
  const localNames = new Set(hashed.map((file) => file.name))
  const toDelete = opts.delete ? [...remote.keys()].filter((name) => !localNames.has(name)).sort() : []
  const docs = new Map<string, UploadResult>()
  const unchangedDoc = (file: HashedFile, entryNode: string): UploadResult => ({
    name: file.name, size: file.size, chunks: file.ranges.length, uploadedChunks: 0, skippedChunks: file.ranges.length, entryNode, seconds: 0,
  })

  if (opts.dryRun) {
    // What the master would skip: the chunks whose SHA-256 it holds at the same index (same chunk size).
    for (const file of unchanged) docs.set(file.name, unchangedDoc(file, ''))
    for (const file of changed) {
      const held = heldChunks(file, remote.get(file.name))
      docs.set(file.name, {...unchangedDoc(file, ''), uploadedChunks: file.ranges.length - held, skippedChunks: held})
    }
    return summarize(hashed, docs, changed, unchanged.length, toDelete, true)
  }

  throwIfAborted(opts.signal)
  let entryNode = ''
  if (changed.length > 0) {
    view.step(opts.node ? `using node ${opts.node}` : 'finding the nearest node')
    const nearest = await nearestEntryNode(api, nodes, opts, view)
    entryNode = nearest.node.id
    const {byRtt} = nearest
    const bytes = changed.reduce((sum, file) => sum + file.size, 0)
    view.start(`uploading ${changed.length} file${changed.length === 1 ? '' : 's'}`, bytes)
    const progress = new FolderProgress(view)
    const lost = new LostNodes(view) // a node lost by one file is not sent to by the others either
    const send: SendContext = {api, entryNode, byRtt, opts, lost}
    const done = (file: HashedFile, sent: number, started: number) => docs.set(file.name, {
      name: file.name, size: file.size, chunks: file.ranges.length, uploadedChunks: sent, skippedChunks: file.ranges.length - sent,
      entryNode, seconds: Math.round(performance.now() - started) / 1000,
    })
    for (const batch of batches(changed)) {
      throwIfAborted(opts.signal)
      const alone = batch.length > 1 ? await sendBatch(batch, send, view, progress, done) : batch
      // One file at a time, as `chunky upload FILE` sends it: its errors are reported as they always were.
      await runPool(alone, FILES_IN_FLIGHT, async (file, signal) => {
        const started = performance.now()
        done(file, await sendHashed(file, {...send, opts: {...opts, signal}}, progress.fileView(file.name)), started)
      }, opts.signal)
    }
  }
  for (const file of unchanged) docs.set(file.name, unchangedDoc(file, entryNode))

  if (toDelete.length > 0) {
    view.step(`removing ${toDelete.length} file${toDelete.length === 1 ? '' : 's'} the folder no longer has`)
    // Up to MAX_BATCH_FILES names a request. Removing again is harmless, so a lost answer is retried;
    // a name removed meanwhile (by someone else, or by the try whose answer was lost) is removed all the same.
    for (let at = 0; at < toDelete.length; at += MAX_BATCH_FILES) {
      throwIfAborted(opts.signal)
      const names = toDelete.slice(at, at + MAX_BATCH_FILES)
      const {results} = await withMasterRetry(() => api.removeMany(names), {signal: opts.signal, view, masters: api.masters, what: 'removing'})
      for (const result of results) {
        if ('error' in result && result.error.code !== 'FILE_NOT_FOUND') throw new ChunkyError(isErrorCode(result.error.code) ? result.error.code : 'BAD_MESSAGE', result.error.message)
      }
    }
  }
  view.stop()
  return summarize(hashed, docs, changed, unchanged.length, toDelete, false)
}

/** The changed files in batches of up to BATCH_FILES files, BATCH_CHUNKS chunks and BATCH_BYTES bytes, in order. */
function batches(files: HashedFile[]): HashedFile[][] {
  const out: HashedFile[][] = []
  let batch: HashedFile[] = []
  let chunks = 0
  let bytes = 0
  for (const file of files) {
    if (batch.length > 0 && (batch.length === BATCH_FILES || chunks + file.ranges.length > BATCH_CHUNKS || bytes + file.size > BATCH_BYTES)) {
      out.push(batch)
      batch = []
      chunks = 0
      bytes = 0
    }
    batch.push(file)
    chunks += file.ranges.length
    bytes += file.size
  }
  if (batch.length > 0) out.push(batch)
  return out
}

/**
 * Plans a batch in one request, sends each file's chunks as a single upload does, and commits those sent
 * in one request. Returns the files left to the one-file path: those whose plan or commit was refused,
 * or whose sending failed (planning again is harmless, and the master skips what was already stored).
 */
async function sendBatch(
  files: HashedFile[],
  send: SendContext,
  view: TransferView,
  progress: FolderProgress,
  done: (file: HashedFile, sent: number, started: number) => void,
): Promise<HashedFile[]> {
  const {api, opts} = send
  const retry = {signal: opts.signal, view, masters: api.masters}
  const {plans} = await withMasterRetry(() => api.planUploads(files.map((file) => planRequestFor(file, send))), {...retry, what: 'planning'})
  const alone: HashedFile[] = []
  const sent: Array<{file: HashedFile; plan: UploadPlan; chunks: number; started: number}> = []
  await runPool(files.map((file, i) => ({file, plan: plans[i]!})), FILES_IN_FLIGHT, async ({file, plan}, signal) => {
    if ('error' in plan) return void alone.push(file)
    const started = performance.now()
    try {
      sent.push({file, plan, chunks: await sendPlanned(file, plan, {...send, opts: {...opts, signal}}, progress.fileView(file.name)), started})
    } catch (err) {
      if (err instanceof InterruptedError || signal.aborted) throw err
      alone.push(file)
    }
  }, opts.signal)
  if (sent.length === 0) return alone
  // A commit that got no answer is sent again (withMasterRetry). An entry refused then, or at all
  // (UPLOAD_NOT_FOUND after a lost answer, NOT_DURABLE while a new master hears from the nodes), goes
  // the one-file path: planned again, it finds its chunks held and commits (or says why it cannot).
  const {results} = await withMasterRetry(() => api.commitUploads(sent.map((entry) => entry.plan.uploadId)), {...retry, what: 'committing'})
  sent.forEach((entry, i) => {
    if ('error' in results[i]!) alone.push(entry.file)
    else done(entry.file, entry.chunks, entry.started)
  })
  return alone
}

function summarize(hashed: HashedFile[], docs: Map<string, UploadResult>, changed: HashedFile[], unchanged: number, deleted: string[], dryRun: boolean): FolderResult {
  const files = hashed.map((file) => docs.get(file.name)!)
  return {
    files,
    uploaded: changed.map((file) => file.name),
    unchanged,
    deleted,
    uploadedChunks: files.reduce((sum, doc) => sum + doc.uploadedChunks, 0),
    skippedChunks: files.reduce((sum, doc) => sum + doc.skippedChunks, 0),
    dryRun,
  }
}

/** Unchanged: the cluster holds this name with the same size, chunk size and every chunk's SHA-256. */
export function sameAsRemote(file: HashedFile, remote: Remote | undefined): boolean {
  return (
    remote !== undefined &&
    remote.size === file.size &&
    remote.chunkSize === file.chunkSize &&
    remote.chunks.length === file.digests.length &&
    remote.chunks.every((sha, i) => sha === file.digests[i])
  )
}

function heldChunks(file: HashedFile, remote: Remote | undefined): number {
  if (!remote || remote.chunkSize !== file.chunkSize) return 0
  return file.digests.filter((sha, i) => remote.chunks[i] === sha && remote.chunks.length > i).length
}

/**
 * One progress bar for several files in flight: each file reports its own bytes, the bar shows their
 * sum. Per-chunk bars are left out (chunk indexes of different files would collide); notes carry the
 * file's name.
 */
class FolderProgress {
  private readonly done = new Map<string, number>()
  private sum = 0

  constructor(private readonly view: TransferView) {}

  fileView(name: string): TransferView {
    return {
      step: () => {},
      start: () => {},
      overall: (bytes) => {
        this.sum += bytes - (this.done.get(name) ?? 0)
        this.done.set(name, bytes)
        this.view.overall(this.sum)
      },
      chunk: () => {},
      chunkDone: () => {},
      note: (message) => this.view.note(`${name}: ${message}`),
      stop: () => {},
    }
  }
}

export interface PrefixDownloadOptions {
  prefix: string
  /** Where the files go, as DIR/<name relative to the prefix> [default: the prefix's last segment]. */
  output?: string
  master: string
  token?: string
  concurrency?: number
  signal?: AbortSignal
  probe?: Probe
}

export interface PrefixDownloadResult {
  prefix: string
  output: string
  files: DownloadResult[]
  size: number
  seconds: number
}

/** `chunky download --prefix P -o DIR`: every file under P/ as DIR/<name relative to P>. */
export async function downloadPrefix(opts: PrefixDownloadOptions, view: TransferView): Promise<PrefixDownloadResult> {
  const started = performance.now()
  const prefix = normalizePrefix(opts.prefix)
  if (prefix === undefined) throw new ChunkyError('BAD_NAME', 'a --prefix is needed (a folder name in the cluster, such as talks/2026)')
  const output = resolve(opts.output ?? basename(prefix))
  const outInfo = await stat(output).catch(() => undefined)
  if (outInfo && !outInfo.isDirectory()) throw new ChunkyError('BAD_REQUEST', `cannot download into ${opts.output ?? output}: it is a file, not a directory`)
  if (!outInfo) {
    const parent = await stat(dirname(output)).catch(() => undefined)
    if (!parent?.isDirectory()) throw new ChunkyError('BAD_REQUEST', `cannot download into ${opts.output ?? output}: no such directory ${dirname(opts.output ?? output)} (create it first)`)
  }
  const api = masterApi(opts.master, opts.token, {signal: opts.signal})
  view.step(`listing ${prefix}/`)
  const {files} = await api.filesUnder(listPrefix(prefix))
  if (files.length === 0) throw new ChunkyError('FILE_NOT_FOUND', `no files under ${prefix}/ in the cluster (\`chunky ls\` lists them)`)
  // The nodes are measured once for every file, not once per file.
  const {nodes} = await api.nodes()
  const nodeRtt = await measureRtt(nodes.filter((node) => node.state === 'alive'), opts.probe)
  await mkdir(output, {recursive: true})

  const total = files.reduce((sum, file) => sum + file.size, 0)
  view.start(`downloading ${files.length} file${files.length === 1 ? '' : 's'}`, total)
  const progress = new FolderProgress(view)
  const results = new Map<string, DownloadResult>()
  await runPool(files, FILES_IN_FLIGHT, async (file, signal) => {
    // names never hold "." or ".." segments (names.ts), so the path stays inside the output folder
    const target = join(output, ...file.name.slice(prefix.length + 1).split('/'))
    await mkdir(dirname(target), {recursive: true})
    results.set(file.name, await downloadFile(
      {name: file.name, output: target, master: opts.master, token: opts.token, concurrency: opts.concurrency, signal, nodeRtt},
      progress.fileView(file.name),
    ))
  }, opts.signal)
  view.stop()
  return {prefix, output, files: files.map((file) => results.get(file.name)!), size: total, seconds: Math.round(performance.now() - started) / 1000}
}
