import {randomBytes} from 'node:crypto'
import type {WebSocket} from 'ws'
import {type CredentialHashes, decode, NodeToMaster, PROTOCOL_VERSION, WS_CLOSE} from '../protocol/index.js'
import type {MasterContext} from './context.js'
import type {RepairLoop} from './repair-loop.js'
import type {ReplicaRecords} from './replicas.js'

/** Entries of a node's report recorded per turn of the event loop (one transaction each). */
const REPORT_SLICE = 500

/** Keeps the master's answer to a node short enough for a WebSocket close reason (123 bytes). */
function reason(text: string): string {
  return Buffer.byteLength(text) <= 120 ? text : `${Buffer.from(text).subarray(0, 117).toString()}...`
}

/**
 * The master's side of each node's WebSocket link. Messages are decoded at the edge, handled in
 * arrival order, and never allowed to throw out of a handler: a malformed message closes the link
 * with PROTOCOL_ERROR and a log line; an internal failure is logged and the link stays up.
 */
type Link = {id: string; nodeId: string | undefined; remote: string; lastHeardMs: number; leaving: boolean}

export class NodeLinks {
  /** Link ids are `<run>:<n>`, unique across restarts: replica rows remember the link that stored them (replicas.ts). */
  private readonly run = randomBytes(4).toString('hex')
  private nextLinkId = 1
  private readonly reportTurns = new Turns()
  /** The welcomed link of each node id. */
  private readonly linkOf = new Map<string, {link: Link; ws: WebSocket}>()

  constructor(
    private readonly ctx: MasterContext,
    private readonly records: ReplicaRecords,
    private readonly repair: RepairLoop,
    private readonly heartbeatMs: number,
    /** Sent in `welcome` so nodes can check client credentials themselves. */
    private readonly credentials?: CredentialHashes,
  ) {}

  accept(ws: WebSocket, remote: string): void {
    const link: Link = {id: `${this.run}:${this.nextLinkId++}`, nodeId: undefined, remote, lastHeardMs: this.ctx.clock.now(), leaving: false}
    this.ctx.metrics.nodeLinks.inc()
    let queue: Promise<void> = Promise.resolve()
    let queued = 0
    ws.on('message', (data: Buffer) => {
      const msg = this.decode(data)
      // Heartbeats are most of what thousands of links send, and they prove the node alive: once the
      // link has said hello, one is handled at once, never behind the link's queue (thousands of
      // `stored` during a repair storm would hold it past the node timeout). It touches only the
      // node's own record, so taking it out of order changes nothing else.
      if (msg instanceof Error) {
        if (queued === 0) return this.handleAtOnce(ws, link, msg)
      } else if (msg.type === 'heartbeat' && (queued === 0 || link.nodeId !== undefined)) return this.handleAtOnce(ws, link, msg)
      queued++
      queue = queue
        .then(() => (ws.readyState === ws.OPEN ? this.handle(ws, link, msg) : undefined))
        .catch((err: Error) => this.ctx.log.error({event: 'link.error', nodeId: link.nodeId, remote, error: err.message}, `error on the link with ${link.nodeId ?? remote}: ${err.message}`))
        .finally(() => queued--)
    })
    ws.on('error', (err) => this.ctx.log.warn({event: 'link.failed', nodeId: link.nodeId, remote, error: err.message}, `link with ${link.nodeId ?? remote} failed: ${err.message}`))
    ws.on('close', () => {
      if (!link.nodeId) return
      if (this.linkOf.get(link.nodeId)?.ws === ws) this.linkOf.delete(link.nodeId)
      this.ctx.nodes.detach(link.nodeId, ws)
      this.records.forgetReport(link.nodeId)
    })
  }

  private decode(data: Buffer): NodeToMaster | Error {
    try {
      return decode(NodeToMaster, data)
    } catch (err) {
      return err as Error
    }
  }

  /** A heartbeat, or a malformed message (which closes the link). */
  private handleAtOnce(ws: WebSocket, link: Link, msg: Extract<NodeToMaster, {type: 'heartbeat'}> | Error): void {
    if (link.leaving || ws.readyState !== ws.OPEN) return
    if (msg instanceof Error) {
      const error = msg.message.split('\n').join(' ')
      this.ctx.log.warn({event: 'link.malformed', nodeId: link.nodeId, remote: link.remote, error}, `malformed message from ${link.nodeId ?? link.remote}: ${error}`)
      ws.close(WS_CLOSE.PROTOCOL_ERROR, reason(`malformed message: ${msg.message}`))
      return
    }
    link.lastHeardMs = this.ctx.clock.now()
    if (!link.nodeId) return this.noHello(ws, link, msg.type)
    // No answer: a node that has heard nothing for a while pings, and the pong is its proof the master is there.
    if (this.ctx.nodes.heartbeat(link.nodeId, msg)) this.ctx.log.info({event: 'node.back', nodeId: link.nodeId}, `node ${link.nodeId} is back`)
  }

  private noHello(ws: WebSocket, link: Link, type: string): void {
    this.ctx.log.warn({event: 'link.no_hello', remote: link.remote, type}, `link from ${link.remote} sent ${type} before hello: closing it`)
    ws.close(WS_CLOSE.BAD_HELLO, 'say hello first')
  }

  private async handle(ws: WebSocket, link: Link, msg: NodeToMaster | Error): Promise<void> {
    const {ctx} = this
    if (msg instanceof Error || msg.type === 'heartbeat') return this.handleAtOnce(ws, link, msg)
    if (link.leaving) return // a node that said goodbye is dead until it connects again
    link.lastHeardMs = ctx.clock.now()
    if (msg.type === 'hello') return this.hello(ws, link, msg)
    const nodeId = link.nodeId
    if (!nodeId) return this.noHello(ws, link, msg.type)

    switch (msg.type) {
      case 'stored': {
        this.touch(nodeId)
        let answer: {ok: boolean; error?: string}
        try {
          answer = this.records.stored(nodeId, link.id, msg.replica)
        } catch (err) {
          ctx.log.error({event: 'replica.record_failed', nodeId, chunkId: msg.replica.chunkId, version: msg.replica.version, error: (err as Error).message}, `could not record a replica from ${nodeId}: ${(err as Error).message}`)
          answer = {ok: false, error: 'the master could not record the replica'}
        }
        ws.send(JSON.stringify({type: 'ack', reqId: msg.reqId, ...answer}))
        return
      }
      case 'report': {
        this.touch(nodeId)
        // A slice of a batch per turn of the event loop, whatever the number of links reporting: a node's
        // batch of 2,000 entries in one go held the loop for tens of ms.
        for (let from = 0; from === 0 || from < msg.replicas.length; from += REPORT_SLICE) {
          await this.reportTurns.next()
          if (ws.readyState !== ws.OPEN) return
          const last = from + REPORT_SLICE >= msg.replicas.length
          const slice = {...msg, replicas: msg.replicas.slice(from, from + REPORT_SLICE), done: msg.done && last}
          if (this.records.reportBatch(nodeId, link.id, slice)) this.repair.kick()
        }
        return
      }
      case 'deleted':
        this.touch(nodeId)
        this.records.deleted(nodeId, msg.chunkId, msg.version)
        ctx.log.debug({event: 'delete.confirmed', nodeId, chunkId: msg.chunkId, version: msg.version}, `node ${nodeId} deleted chunk ${msg.chunkId} v${msg.version}`)
        return
      case 'corrupt':
        this.touch(nodeId)
        this.records.corrupt(nodeId, msg.chunkId, msg.version)
        this.repair.kick()
        return
      case 'leaving': {
        link.leaving = true
        if (ctx.nodes.leave(nodeId)) ctx.log.info({event: 'node.dead', nodeId, reason: 'leaving'}, `node ${nodeId} is dead (it is stopping)`)
        return
      }
      case 'replicated': {
        this.touch(nodeId)
        // Every copy in `ok` was already recorded by its own `stored` (and acked) as it became durable;
        // this summary records nothing: a copy trimmed or deleted since would come back as a phantom.
        const ok = msg.ok.filter((replica) => ctx.replicaTable.has(nodeId, replica.chunkId, replica.version))
        this.repair.finish(msg.taskId, ok, msg.failed.length + msg.ok.length - ok.length)
        for (const failure of msg.failed.slice(0, 3)) {
          ctx.log.warn(
            {event: 'repair.chunk_failed', taskId: msg.taskId, nodeId, chunkId: failure.chunkId, version: failure.version, error: failure.error},
            `repair ${msg.taskId}: chunk ${failure.chunkId} v${failure.version} failed on ${nodeId}: ${failure.error}`,
          )
        }
        return
      }
    }
  }

  private hello(ws: WebSocket, link: Link, msg: Extract<NodeToMaster, {type: 'hello'}>): void {
    const {ctx} = this
    if (link.nodeId && link.nodeId !== msg.nodeId) {
      ctx.log.warn({event: 'link.bad_hello', nodeId: link.nodeId, claimed: msg.nodeId}, `link of node ${link.nodeId} said hello as ${msg.nodeId}: closing it`)
      ws.close(WS_CLOSE.BAD_HELLO, 'a link belongs to one node id')
      return
    }
    // One node per id: while a link of this id is open and was heard from lately, a second one is an
    // impostor (or a copy of the data dir), not a reconnect. A reconnect after a half-open link comes
    // again once the old link has been silent that long.
    const current = this.linkOf.get(msg.nodeId)
    if (current && current.ws !== ws && current.ws.readyState === current.ws.OPEN && ctx.clock.now() - current.link.lastHeardMs < this.duplicateWindowMs()) {
      ctx.log.warn(
        {event: 'node.duplicate_id', nodeId: msg.nodeId, remote: link.remote, connected: current.link.remote},
        `refused a second node calling itself ${msg.nodeId} (from ${link.remote}; ${msg.nodeId} is connected from ${current.link.remote})`,
      )
      ws.close(WS_CLOSE.DUPLICATE_ID, reason(`node id ${msg.nodeId} is in use by a connected node: give this node another --id (or its own --data-dir)`))
      return
    }
    link.nodeId = msg.nodeId
    this.linkOf.set(msg.nodeId, {link, ws})
    const how = ctx.nodes.hello(msg)
    const previous = ctx.nodes.attach(msg.nodeId, ws)
    if (previous) {
      ctx.log.info({event: 'node.link_replaced', nodeId: msg.nodeId}, `node ${msg.nodeId} reconnected: closing its older link`)
      previous.close(WS_CLOSE.REPLACED, 'replaced by a newer connection of the same node')
    }
    const fields = {nodeId: msg.nodeId, url: msg.url, zone: msg.zone}
    if (how === 'joined') ctx.log.info({event: 'node.joined', ...fields}, `node ${msg.nodeId} joined (${msg.url}, zone ${msg.zone || '(none)'})`)
    else if (how === 'back') ctx.log.info({event: 'node.back', ...fields}, `node ${msg.nodeId} is back (${msg.url})`)
    ws.send(
      JSON.stringify({type: 'welcome', v: PROTOCOL_VERSION, grantKey: ctx.grantKey, heartbeatMs: this.heartbeatMs, credentials: this.credentials, fence: ctx.leadership}),
    )
  }

  /** How long a link must have been silent before another link may take over its node id. */
  private duplicateWindowMs(): number {
    return 3 * this.heartbeatMs
  }

  private touch(nodeId: string): void {
    if (this.ctx.nodes.touch(nodeId)) this.ctx.log.info({event: 'node.back', nodeId}, `node ${nodeId} is back`)
  }
}

/**
 * Hands out turns of the event loop one at a time. Waiting with a setImmediate of its own, every link
 * with a batch waiting would run it in the same turn (Node runs all immediates queued before a turn in
 * that turn): 32 links reporting at once held the loop for a second. Here one waiter runs per turn.
 */
class Turns {
  private readonly waiting: (() => void)[] = []
  private scheduled = false

  next(): Promise<void> {
    return new Promise((resolve) => {
      this.waiting.push(resolve)
      this.schedule()
    })
  }

  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      this.waiting.shift()?.()
      if (this.waiting.length > 0) this.schedule()
    })
  }
}
