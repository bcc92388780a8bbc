import {stat} from 'node:fs/promises'
import {basename} from 'node:path'
import {performance} from 'node:perf_hooks'
import {setTimeout as sleep} from 'node:timers/promises'
import {ChunkyError, DEFAULT_CHUNK_SIZE, fileNameProblem, type NodeSummary, type PlannedChunk, type UploadPlan, type UploadPlanRequest} from '../protocol/index.js'
import {InterruptedError, throwIfAborted} from './errors.js'
import {masterChanging, masterTries, withMasterRetry} from './master-retry.js'
import {hashChunks} from './hash.js'
import {masterApi, type MasterApi} from './master-api.js'
import {findNearestNode, type Nearest, type Probe} from './nearest.js'
import {planChunks, rangeSize, type ChunkRange} from './plan.js'
import {runPool} from './pool.js'
import {NodeFailure, putChunk} from './put-chunk.js'
import type {TransferView} from './view.js'

export interface UploadOptions {
  path: string
  /** Name in the cluster; defaults to the file's base name. */
  name?: string
  chunkSize?: number
  concurrency?: number
  /** `--node ID|URL`: the entry node, instead of the nearest one. */
  node?: string
  /** `--zone Z`: among nodes with near-equal RTT, prefer one in this zone. */
  zone?: string
  master: string
  token?: string
  signal?: AbortSignal
  /** Replaces the HTTP RTT probe (tests). */
  probe?: Probe
}

/** SPEC.md `chunky upload --json`. */
export interface UploadResult {
  name: string
  size: number
  chunks: number
  uploadedChunks: number
  skippedChunks: number
  entryNode: string
  seconds: number
}

/** Tries per chunk (the first included) before the upload gives up on it. */
export const CHUNK_TRIES = 5

export async function uploadFile(opts: UploadOptions, view: TransferView): Promise<UploadResult> {
  const started = performance.now()
  const name = opts.name ?? basename(opts.path)
  const nameProblem = fileNameProblem(name)
  if (nameProblem) throw new ChunkyError('BAD_NAME', `bad name "${name}": ${nameProblem} (set one with --name)`)
  const info = await stat(opts.path).catch(() => {
    throw new ChunkyError('BAD_REQUEST', `cannot read ${opts.path}: no such file`)
  })
  if (!info.isFile()) throw new ChunkyError('BAD_REQUEST', `${opts.path} is not a regular file`)
  const ranges = planChunks(info.size, opts.chunkSize ?? DEFAULT_CHUNK_SIZE)
  const api = masterApi(opts.master, opts.token, {signal: opts.signal})

  view.step('asking the master for the storage nodes')
  // Before hashing: a wrong --master or token fails in a second, not after a minute (with several
  // masters, a failover under way is waited out instead).
  const {nodes} = await withMasterRetry(() => api.nodes(), {signal: opts.signal, view, masters: api.masters, what: 'asking for the nodes', ...(api.masters > 1 ? {} : {tries: 1})})

  view.start('hashing', info.size)
  const digests = await hashChunks(opts.path, ranges, (done) => view.overall(done), opts.signal)

  view.step(opts.node ? `using node ${opts.node}` : 'finding the nearest node')
  const entry = await nearestEntryNode(api, nodes, opts, view)
  throwIfAborted(opts.signal)

  const sent = await sendHashed(
    {path: opts.path, name, size: info.size, chunkSize: opts.chunkSize ?? DEFAULT_CHUNK_SIZE, ranges, digests},
    {api, entryNode: entry.node.id, byRtt: entry.byRtt, opts, lost: new LostNodes(view)},
    view,
  )
  view.stop()
  return {
    name,
    size: info.size,
    chunks: ranges.length,
    uploadedChunks: sent,
    skippedChunks: ranges.length - sent,
    entryNode: entry.node.id,
    seconds: Math.round(performance.now() - started) / 1000,
  }
}

/**
 * The entry node. A master that has just taken over lists no node alive until they link to it again:
 * with several masters, the list is asked for again until one is (withMasterRetry, NO_NODES).
 */
export async function nearestEntryNode(api: MasterApi, nodes: NodeSummary[], opts: Pick<UploadOptions, 'node' | 'zone' | 'probe' | 'signal'>, view: TransferView): Promise<Nearest> {
  let listed: NodeSummary[] | undefined = nodes
  return withMasterRetry(async () => {
    const current = listed ?? (await api.nodes()).nodes
    listed = undefined // a retry asks again
    return findNearestNode(current, {override: opts.node, zone: opts.zone, probe: opts.probe})
  }, {signal: opts.signal, view, masters: api.masters, what: 'finding a storage node'})
}

/** A file hashed chunk by chunk, ready to be planned. */
export interface HashedFile {
  path: string
  name: string
  size: number
  chunkSize: number
  ranges: ChunkRange[]
  digests: string[]
}

export interface SendContext {
  api: MasterApi
  entryNode: string
  /** Node ids by this writer's measured round trip, nearest first (empty with --node). */
  byRtt: string[]
  /** concurrency, token and signal are read from here (path and name come from the file). */
  opts: Pick<UploadOptions, 'concurrency' | 'token' | 'signal' | 'master'>
  /** Nodes this upload (of one file, or of a whole folder) has lost: never sent to again. */
  lost: LostNodes
}

/** Plans, sends and commits one hashed file; returns how many chunks were sent (the rest were held already). */
export async function sendHashed(file: HashedFile, ctx: SendContext, view: TransferView): Promise<number> {
  const {api, opts} = ctx
  view.step(`planning ${file.ranges.length} chunks`)
  // Planning again is harmless (unused versions are only skipped numbers), so a master that does not
  // answer is retried. The master skips chunks it already holds: committed ones, and those an
  // interrupted run of this upload left on at least W nodes (that is how a re-run resumes).
  const plan = await withMasterRetry(() => api.planUpload(planRequestFor(file, ctx)), {signal: opts.signal, view, masters: api.masters, what: 'planning'})
  const sent = await sendPlanned(file, plan, ctx, view)
  view.step('committing')
  await commitWithRetry(api, plan, {...opts, path: file.path, name: file.name}, view)
  return sent
}

/** What the master is asked to plan for a hashed file. */
export function planRequestFor(file: HashedFile, ctx: Pick<SendContext, 'entryNode' | 'byRtt'>): UploadPlanRequest {
  return {
    name: file.name,
    size: file.size,
    chunkSize: file.chunkSize,
    chunks: file.ranges.map((range, i) => ({index: range.index, size: rangeSize(range), sha256: file.digests[i]!})),
    entryNode: ctx.entryNode,
    ...(ctx.byRtt.length > 0 ? {byRtt: ctx.byRtt} : {}),
  }
}

/** Sends the chunks of a planned file that the cluster lacks; returns how many were sent. Commit is the caller's. */
export async function sendPlanned(file: HashedFile, plan: UploadPlan, ctx: SendContext, view: TransferView): Promise<number> {
  checkPlan(plan, file.ranges, file.digests)
  const toSend = plan.chunks.filter((chunk) => !chunk.skip)
  await sendChunks(plan, toSend, file.ranges, ctx.api, {...ctx.opts, path: file.path, name: file.name}, view, ctx.lost)
  return toSend.length
}

/** The plan must describe exactly the chunks we hashed; anything else is a master bug, not a retry. */
function checkPlan(plan: UploadPlan, ranges: ChunkRange[], digests: string[]): void {
  const ok =
    plan.chunks.length === ranges.length &&
    plan.chunks.every((chunk, i) => chunk.index === i && chunk.size === rangeSize(ranges[i]!) && chunk.sha256 === digests[i])
  if (!ok) throw new ChunkyError('BAD_MESSAGE', 'the master answered with a plan that does not match the file: upload again')
}

async function sendChunks(
  plan: UploadPlan,
  toSend: PlannedChunk[],
  ranges: ChunkRange[],
  api: MasterApi,
  opts: UploadOptions,
  view: TransferView,
  lost: LostNodes,
): Promise<void> {
  // The bar covers the whole file and starts at the bytes the cluster already holds, so a resumed
  // upload shows where it really is.
  const total = plan.size
  const inFlight = new Map<number, number>()
  let finished = total - toSend.reduce((sum, chunk) => sum + chunk.size, 0)
  const report = () => view.overall(finished + [...inFlight.values()].reduce((a, b) => a + b, 0))
  view.start('uploading', total)
  report()

  await runPool(toSend, opts.concurrency ?? 4, async (planned, signal) => {
    const range = ranges[planned.index]!
    const onSent = (bytes: number) => {
      inFlight.set(planned.index, bytes)
      view.chunk(planned.index, bytes, planned.size)
      report()
    }
    try {
      await sendOneChunk(plan, planned, range, api, opts, view, lost, onSent, signal)
      finished += planned.size
    } finally {
      inFlight.delete(planned.index)
      view.chunkDone(planned.index)
      report()
    }
  }, opts.signal)
}

/**
 * The nodes this upload has seen fail. Once a node fails a chunk, no later chunk of the same upload is
 * sent to it (each is re-planned without it first), and the user is told once per node, not once per
 * chunk (SPEC.md "Operating a cluster").
 */
export class LostNodes {
  private readonly lost = new Map<string, string>()

  constructor(private readonly view: TransferView) {}

  /** Records a failed node; says so the first time. Returns whether it was new. */
  add(node: string, why: string): boolean {
    if (this.lost.has(node)) return false
    this.lost.set(node, why)
    this.view.note(`node ${node} failed (${why}): not sending to it for the rest of this upload`)
    return true
  }

  has(node: string): boolean {
    return this.lost.has(node)
  }

  ids(): string[] {
    return [...this.lost.keys()]
  }
}

/** Writes one chunk to at least W nodes, re-planning it away from nodes that fail, a bounded number of times. */
async function sendOneChunk(
  plan: UploadPlan,
  planned: PlannedChunk,
  range: ChunkRange,
  api: MasterApi,
  opts: UploadOptions,
  view: TransferView,
  lost: LostNodes,
  onSent: (bytes: number) => void,
  signal: AbortSignal,
): Promise<void> {
  const failedNodes = new Set<string>() // this chunk's, for its error message
  const excluded = () => [...new Set([...lost.ids(), ...failedNodes])]
  const replan = async (problem: string) => {
    try {
      return await withMasterRetry(() => api.replan(plan.uploadId, {index: range.index, exclude: excluded()}), {signal, view, masters: api.masters, what: `re-planning chunk ${range.index}`})
    } catch (err) {
      if (err instanceof ChunkyError) {
        throw new ChunkyError(err.code, `chunk ${range.index} ${problem} and could not be re-planned: ${err.message}`)
      }
      throw err
    }
  }
  let chunk = planned
  // Planned before a node was lost: placed again without it before a byte is sent (once; a plan the
  // master still makes with it is tried as it is).
  if (chunk.targets.some((target) => lost.has(target.id))) chunk = await replan(`was planned on a node this upload lost (${chunk.targets.map((t) => t.id).filter((id) => lost.has(id)).join(', ')})`)
  let nodeTries = 0
  let masterWaits = 0
  while (true) {
    let problem: string
    let blamed: string | undefined
    let masterSide = false
    try {
      const result = await putChunk({path: opts.path, range, chunk, token: opts.token, onSent, signal})
      const stored = result.stored.filter((copy) => copy.version === chunk.version)
      if (stored.length >= plan.minReplicas) return
      // Failures come in chain order, and a chain that breaks at one node lists every node after it
      // too (they were never reached): only the first is to blame, the others may be fine. A node that
      // stored the bytes but could not tell the master, or holds a grant of a master that no longer
      // leads, is not to blame either: the master side is changing hands.
      const culprit = result.failed[0]
      if (culprit && masterChanging(culprit.code, api.masters)) masterSide = true
      else if (culprit) blamed = culprit.node
      const why = result.failed.map((f) => `${f.node}: ${f.error}`).join('; ')
      problem = `only ${stored.length} of the ${plan.minReplicas} copies needed were stored${why ? ` (${why})` : ''}`
    } catch (err) {
      if (signal.aborted) throw new InterruptedError()
      if (err instanceof NodeFailure) {
        blamed = err.node
        problem = err.message
      } else if (err instanceof ChunkyError && masterChanging(err.code, api.masters)) {
        masterSide = true
        problem = err.message
      } else if (err instanceof ChunkyError && (err.code === 'CHECKSUM_MISMATCH' || err.code === 'LENGTH_MISMATCH')) {
        throw new ChunkyError(err.code, `${opts.path} changed while it was being uploaded (chunk ${range.index}: ${err.message}): upload it again once it is complete`)
      } else if (err instanceof ChunkyError && err.code === 'GRANT_EXPIRED') {
        problem = err.message // a re-plan brings a fresh grant
      } else {
        throw err
      }
    }
    onSent(0)
    if (masterSide) {
      // Waited out as a call to the master is (withMasterRetry), then re-planned by whoever leads now,
      // which signs a grant of its epoch: no node is left out, and the nodes' tries are not used up.
      if (++masterWaits >= masterTries(api.masters)) {
        throw new ChunkyError('NOT_DURABLE', `chunk ${range.index} could not be stored while the master changed (${masterWaits} tries); last problem: ${problem}`)
      }
      if (masterWaits === 1) view.note(`chunk ${range.index}: ${problem}; waiting for the master`)
      await pause(Math.min(4_000, 500 * 2 ** (masterWaits - 1)), signal)
      chunk = await replan(`failed (${problem})`)
      continue
    }
    // A failing node is left out for the rest of the upload; the note is said once per node (by
    // LostNodes), and a chunk that failed on a node already known lost retries silently.
    if (blamed !== undefined) {
      failedNodes.add(blamed)
      lost.add(blamed, problem)
    }
    if (++nodeTries >= CHUNK_TRIES) {
      const failed = [...failedNodes]
      throw new ChunkyError(
        'NOT_DURABLE',
        `chunk ${range.index} could not be stored on ${plan.minReplicas} nodes after ${CHUNK_TRIES} tries` +
          `${failed.length > 0 ? ` (failed nodes: ${failed.join(', ')})` : ''}; last problem: ${problem}`,
      )
    }
    if (blamed === undefined) view.note(`chunk ${range.index}: ${problem}; retrying`)
    await pause(Math.min(2_000, 100 * 2 ** nodeTries), signal)
    chunk = await replan(`failed (${problem})`)
  }
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return sleep(ms, undefined, {signal}).catch(() => {
    throw new InterruptedError()
  })
}

/**
 * Commits, retrying when the master gave no answer. If a retry no longer finds the upload, the first
 * try may have committed it before its answer was lost: the file's manifest then says so.
 */
async function commitWithRetry(api: MasterApi, plan: UploadPlan, opts: UploadOptions, view: TransferView): Promise<void> {
  let unanswered = false
  try {
    await withMasterRetry(
      async () => {
        try {
          await api.commit(plan.uploadId)
        } catch (err) {
          if (err instanceof ChunkyError && (err.code === 'MASTER_UNREACHABLE' || err.code === 'NOT_LEADER')) unanswered = true
          throw err
        }
      },
      // A master that has just taken over counts a node's copies once that node has linked to it and
      // reported them: with several masters, NOT_DURABLE is asked again while the nodes come back.
      {signal: opts.signal, view, masters: api.masters, what: 'committing', alsoRetried: api.masters > 1 ? ['NOT_DURABLE'] : []},
    )
  } catch (err) {
    if (!(unanswered && err instanceof ChunkyError && err.code === 'UPLOAD_NOT_FOUND')) throw err
    const manifest = await api.manifest(plan.name).catch(() => undefined)
    const same =
      manifest !== undefined &&
      manifest.size === plan.size &&
      manifest.chunks.length === plan.chunks.length &&
      manifest.chunks.every((chunk, i) => chunk.version === plan.chunks[i]!.version && chunk.sha256 === plan.chunks[i]!.sha256)
    if (!same) throw err
  }
}
