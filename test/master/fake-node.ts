import WebSocket from 'ws'
import {MasterToNode, decode, type NodeToMaster} from '../../src/protocol/index.js'

/**
 * A minimal node for master tests: says hello, heartbeats, records every command it gets. The real
 * node lives in src/node; this one only speaks the WebSocket protocol.
 */
export class FakeNode {
  readonly inbox: MasterToNode[] = []
  closed: {code: number; reason: string} | undefined
  private beat: NodeJS.Timeout | undefined

  private constructor(
    readonly id: string,
    readonly ws: WebSocket,
  ) {
    ws.on('message', (data: Buffer) => this.inbox.push(decode(MasterToNode, data)))
    ws.on('close', (code, reason) => {
      this.closed = {code, reason: reason.toString()}
      this.stopHeartbeats()
    })
    ws.on('error', () => {})
  }

  static async connect(masterUrl: string, token: string, id: string, opts: {zone?: string; hello?: boolean; heartbeatMs?: number} = {}) {
    const ws = new WebSocket(`${masterUrl.replace(/^http/, 'ws')}/ws`, {headers: {authorization: `Bearer ${token}`}})
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
    })
    const node = new FakeNode(id, ws)
    if (opts.hello !== false) {
      node.send({type: 'hello', v: 1, nodeId: id, url: `http://127.0.0.1:9/${id}`, zone: opts.zone ?? 'z', freeBytes: 1e12, usedBytes: 0, chunkCount: 0})
      await node.waitFor((m) => m.type === 'welcome')
      node.beat = setInterval(() => node.send({type: 'heartbeat', freeBytes: 1e12, usedBytes: 0, chunkCount: 0}), opts.heartbeatMs ?? 100)
    }
    return node
  }

  send(message: NodeToMaster | Record<string, unknown>): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message))
  }

  sendRaw(text: string): void {
    this.ws.send(text)
  }

  /** Finishes a `replicate` task as a real node does: a `stored` per copy (each acked), then the summary. */
  async completeTransfer(task: Extract<MasterToNode, {type: 'replicate'}>): Promise<void> {
    const reqIds = task.replicas.map((replica) => {
      const reqId = this.nextReqId++
      this.send({type: 'stored', reqId, replica})
      return reqId
    })
    await until(() => reqIds.every((reqId) => this.inbox.some((m) => m.type === 'ack' && m.reqId === reqId && m.ok)), 5000, `acks for task ${task.taskId}`)
    this.send({type: 'replicated', taskId: task.taskId, ok: task.replicas, failed: []})
  }

  private nextReqId = 10_000

  startHeartbeats(everyMs = 100): void {
    clearInterval(this.beat)
    this.beat = setInterval(() => this.send({type: 'heartbeat', freeBytes: 1e12, usedBytes: 0, chunkCount: 0}), everyMs)
  }

  stopHeartbeats(): void {
    clearInterval(this.beat)
  }

  /** Polls the inbox (no fixed sleeps) until a message matches. */
  async waitFor<T extends MasterToNode>(match: (m: MasterToNode) => m is T, timeoutMs?: number): Promise<T>
  async waitFor(match: (m: MasterToNode) => boolean, timeoutMs?: number): Promise<MasterToNode>
  async waitFor(match: (m: MasterToNode) => boolean, timeoutMs = 5000): Promise<MasterToNode> {
    return until(() => this.inbox.find(match), timeoutMs, `node ${this.id} waiting for a message`)
  }

  async close(): Promise<void> {
    this.stopHeartbeats()
    if (this.ws.readyState === WebSocket.CLOSED) return
    await new Promise<void>((resolve) => {
      this.ws.once('close', () => resolve())
      this.ws.close(1001, 'test done')
    })
  }
}

/** Polls `probe` every 10 ms until it returns something other than undefined/false, or throws after the deadline. */
export async function until<T>(probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 5000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined && value !== false) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
