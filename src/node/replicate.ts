import type {MasterToNode, ReplicaInfo, TransferRequest} from '../protocol/index.js'
import type {NodeContext} from './context.js'
import {pullTransfer} from './transfer-reader.js'

type ReplicateCommand = Extract<MasterToNode, {type: 'replicate'}>
type Failure = {chunkId: string; version: number; error: string}

export const REPLICATE_TIMEOUT_MS = 120_000
/** Entries of one transfer being written, fsynced or acked at once (memory stays bounded: each streams to disk). */
export const REPLICATE_IN_FLIGHT = 8

/**
 * Carries out a `replicate` command (issue 3 repair): pull the replicas from the source in one
 * transfer (transfer-reader.ts), store each through the store (which checks size and SHA-256 and
 * fsyncs), confirm each with the master, then answer `replicated`. Bounded by a timeout; never throws.
 */
export async function runReplication(ctx: NodeContext, task: ReplicateCommand, timeoutMs = REPLICATE_TIMEOUT_MS): Promise<void> {
  const abort = new AbortController()
  const timer = setTimeout(() => abort.abort(new Error(`transfer took longer than ${timeoutMs / 1000}s`)), timeoutMs)
  const ok: ReplicaInfo[] = []
  const failed: Failure[] = []
  let missingReason = `source ${task.source.id} did not send it`
  try {
    await ctx.inflight.run(
      () => abort.abort(new Error('node shutting down')),
      () => pullReplicas(ctx, task, abort.signal, ok, failed),
    )
  } catch (err) {
    const cause = abort.signal.aborted ? (abort.signal.reason as Error) : (err as Error)
    missingReason = String(cause?.message ?? cause).slice(0, 1000)
  } finally {
    clearTimeout(timer)
  }
  // Whatever was neither copied nor refused on its own failed with the transfer as a whole.
  const handled = new Set([...ok, ...failed].map((r) => `${r.chunkId}.${r.version}`))
  for (const r of task.replicas) {
    if (!handled.has(`${r.chunkId}.${r.version}`)) failed.push({chunkId: r.chunkId, version: r.version, error: missingReason})
  }
  ctx.metrics.storedBytes.inc(ok.reduce((sum, r) => sum + r.size, 0))
  ctx.log.info(
    {event: 'replication.finished', taskId: task.taskId, source: task.source.id, copied: ok.length, failed: failed.length},
    `replication ${task.taskId} from ${task.source.id}: ${ok.length} copied, ${failed.length} failed`,
  )
  await ctx.link.send({type: 'replicated', taskId: task.taskId, ok, failed}).catch((err: Error) => {
    ctx.log.warn({event: 'replication.report_failed', taskId: task.taskId, error: err.message}, `could not report replication ${task.taskId}: ${err.message}`)
  })
}

async function pullReplicas(ctx: NodeContext, task: ReplicateCommand, signal: AbortSignal, ok: ReplicaInfo[], failed: Failure[]): Promise<void> {
  const wanted = new Map(task.replicas.map((r) => [`${r.chunkId}.${r.version}`, r]))
  const request: TransferRequest = {replicas: task.replicas.map(({chunkId, version}) => ({chunkId, version}))}
  // Up to REPLICATE_IN_FLIGHT replicas at once: while one is fsynced and acked by the master, the next is
  // already streaming into its temp file. Each one still counts only once durable and acked.
  const inFlight = new Set<Promise<void>>()
  const copied: (ReplicaInfo | undefined)[] = [] // in transfer order, whichever finishes first
  const auth = {token: ctx.token, grant: task.grant, ...(ctx.ca ? {ca: ctx.ca} : {})}
  try {
    await pullTransfer(new URL('/transfer', task.source.url), auth, request, signal, (sent, body) => {
      const key = `${sent.chunkId}.${sent.version}`
      const replica = wanted.get(key)
      if (!replica || sent.sha256 !== replica.sha256 || sent.size !== replica.size) {
        body.drop() // not what we asked for (or not the bytes the master expects): skip it
        if (replica) {
          wanted.delete(key)
          failed.push({chunkId: replica.chunkId, version: replica.version, error: `source ${task.source.id} sent other bytes (size or SHA-256 differ)`})
        }
        return
      }
      wanted.delete(key)
      const slot = copied.push(undefined) - 1
      const copy = (async () => {
        try {
          // verifies length and SHA-256, fsyncs, renames; a failed link fails the body, and so the write
          const stored = await ctx.store.write(replica, body, {cache: false}) // a copy for safety, not for readers now
          await ctx.link.confirmStored(stored)
          copied[slot] = stored
        } catch (err) {
          failed.push({chunkId: replica.chunkId, version: replica.version, error: (err as Error).message.slice(0, 1000)})
        } finally {
          body.drop() // a write that gave up early: the rest of its bytes are skipped
        }
      })()
      const done = copy.finally(() => inFlight.delete(done))
      inFlight.add(done)
      if (inFlight.size >= REPLICATE_IN_FLIGHT) return Promise.race(inFlight)
    })
  } finally {
    await Promise.all(inFlight) // nothing is left writing (or pushing to failed) behind the answer
    for (const stored of copied) if (stored) ok.push(stored)
  }
}
