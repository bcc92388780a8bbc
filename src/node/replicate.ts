import {request, type IncomingMessage} from 'node:http'
import {request as httpsRequest} from 'node:https'
import {extract as tarExtract} from 'tar-stream'
import {ChunkyError, ErrorBody, HEADER_GRANT, type MasterToNode, type ReplicaInfo, TRANSFER_PAX, type TransferRequest} from '../protocol/index.js'
import type {NodeContext} from './context.js'

type ReplicateCommand = Extract<MasterToNode, {type: 'replicate'}>
type Failure = {chunkId: string; version: number; error: string}

export const REPLICATE_TIMEOUT_MS = 120_000
/** Entries of one transfer being written, fsynced or acked at once (memory stays bounded: each streams to disk). */
export const REPLICATE_IN_FLIGHT = 8

/**
 * Carries out a `replicate` command (issue 3 repair): pull the replicas from the source in one tar
 * stream, store each through the store (which checks size and SHA-256 and fsyncs), confirm each with
 * the master, then answer `replicated`. Bounded by a timeout; never throws.
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
  const body: TransferRequest = {replicas: task.replicas.map(({chunkId, version}) => ({chunkId, version}))}
  const res = await postTransfer(new URL('/transfer', task.source.url), {token: ctx.token, grant: task.grant, ca: ctx.ca}, body, signal)
  const tar = tarExtract()
  res.on('error', (err) => tar.destroy(err))
  res.pipe(tar as unknown as NodeJS.WritableStream)
  signal.addEventListener('abort', () => tar.destroy(signal.reason as Error), {once: true})

  // Up to REPLICATE_IN_FLIGHT entries at once: while one is fsynced and acked by the master, the next is
  // already streaming into its temp file. Each one still counts only once durable and acked.
  const inFlight = new Set<Promise<void>>()
  const copied: (ReplicaInfo | undefined)[] = [] // in transfer order, whichever finishes first
  let broken: Error | undefined // the transfer itself broke: the rest fail together
  try {
    for await (const entry of tar) {
      if (broken) throw broken
      const pax = (entry.header.pax ?? {}) as Record<string, string>
      const key = `${pax[TRANSFER_PAX.chunkId]}.${pax[TRANSFER_PAX.version]}`
      const replica = wanted.get(key)
      if (!replica || entry.header.name !== key || pax[TRANSFER_PAX.sha256] !== replica.sha256 || entry.header.size !== replica.size) {
        for await (const _ of entry); // not what we asked for (or not the bytes the master expects): skip it
        if (replica) {
          wanted.delete(key)
          failed.push({chunkId: replica.chunkId, version: replica.version, error: `source ${task.source.id} sent other bytes (size or SHA-256 differ)`})
        }
        continue
      }
      wanted.delete(key)
      const body = entry as unknown as NodeJS.ReadableStream & AsyncIterable<Buffer> & {destroyed: boolean}
      let bodyEnded = false
      const bodyRead = new Promise<void>((resolve) => {
        body.once('end', () => resolve(void (bodyEnded = true)))
        body.once('close', resolve)
      })
      const slot = copied.push(undefined) - 1
      const copy = (async () => {
        try {
          // verifies length and SHA-256, fsyncs, renames; a bad entry is read to its end, so the next one follows
          const stored = await ctx.store.write(replica, body, {cache: false}) // a copy for safety, not for readers now
          await ctx.link.confirmStored(stored)
          copied[slot] = stored
        } catch (err) {
          if (signal.aborted || tar.destroyed) broken ??= err as Error
          else failed.push({chunkId: replica.chunkId, version: replica.version, error: (err as Error).message.slice(0, 1000)})
        }
      })()
      const done = copy.finally(() => inFlight.delete(done))
      inFlight.add(done)
      // The tar stream hands out the next entry only once this one is read (or its write gave up on it).
      await Promise.race([bodyRead, done])
      if (!bodyEnded && !body.destroyed) body.resume() // its write gave up early: skip the rest of its bytes
      if (inFlight.size >= REPLICATE_IN_FLIGHT) await Promise.race(inFlight)
    }
  } finally {
    await Promise.all(inFlight) // nothing is left writing (or pushing to failed) behind the answer
    for (const stored of copied) if (stored) ok.push(stored)
  }
  if (broken) throw broken
}

interface TransferAuth {
  /** This node's credential. */
  token: string
  /** The master's transfer grant from the `replicate` command. */
  grant?: string
  ca?: string[]
}

function postTransfer(url: URL, auth: TransferAuth, body: TransferRequest, signal: AbortSignal): Promise<IncomingMessage> {
  const text = JSON.stringify(body)
  const send = url.protocol === 'https:' ? httpsRequest : request
  return new Promise((resolve, reject) => {
    const req = send(url, {
      method: 'POST',
      signal,
      ...(auth.ca ? {ca: auth.ca} : {}),
      headers: {
        authorization: `Bearer ${auth.token}`,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(text),
        ...(auth.grant ? {[HEADER_GRANT]: auth.grant} : {}),
      },
    })
    req.on('error', reject)
    req.on('response', (res) => {
      if (res.statusCode === 200) return resolve(res)
      const parts: Buffer[] = []
      res.on('data', (p: Buffer) => parts.length < 64 && parts.push(p))
      res.on('error', reject)
      res.on('end', () => {
        let reason = `HTTP ${res.statusCode}`
        try {
          const parsed = ErrorBody.safeParse(JSON.parse(Buffer.concat(parts).toString('utf8')))
          if (parsed.success) reason = `${parsed.data.error.code}: ${parsed.data.error.message}`
        } catch {
          // not JSON: the status says enough
        }
        reject(new ChunkyError('NODE_UNREACHABLE', `source refused the transfer: ${reason}`))
      })
    })
    req.end(text)
  })
}
