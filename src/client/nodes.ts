import {setTimeout as sleep} from 'node:timers/promises'
import type {NodeInfo} from '../protocol/index.js'
import {InterruptedError} from './errors.js'
import {masterApi} from './master-api.js'
import type {MasterConnection} from './operations.js'

// `chunky nodes`: the nodes on their own, and taking one out of service (drain) or off the books (forget).

export async function listNodes(conn: MasterConnection): Promise<NodeInfo[]> {
  return (await masterApi(conn.master, conn.token, {signal: conn.signal}).nodeInfos()).nodes
}

/** Starts (or joins) the drain of a node; the master copies its chunks away by itself. */
export function drainNode(conn: MasterConnection, id: string): Promise<NodeInfo> {
  return masterApi(conn.master, conn.token, {signal: conn.signal}).drainNode(id)
}

export function undrainNode(conn: MasterConnection, id: string): Promise<NodeInfo> {
  return masterApi(conn.master, conn.token, {signal: conn.signal}).undrainNode(id)
}

export function forgetNode(conn: MasterConnection, id: string) {
  return masterApi(conn.master, conn.token, {signal: conn.signal}).forgetNode(id)
}

/**
 * Polls until the node is drained (this only watches; the master does the work). `onInfo` sees every
 * answer, for progress. A node taken back (undrained) or forgotten meanwhile ends the wait with an error.
 */
export async function waitForDrain(conn: MasterConnection, id: string, onInfo: (info: NodeInfo) => void, pollMs = 500): Promise<NodeInfo> {
  const api = masterApi(conn.master, conn.token, {signal: conn.signal})
  for (;;) {
    const info = (await api.nodeInfos()).nodes.find((node) => node.id === id)
    if (!info) throw new Error(`node ${id} was forgotten while draining`)
    onInfo(info)
    if (info.state === 'drained') return info
    if (!info.drain) throw new Error(`node ${id} was taken back into service (\`chunky nodes undrain\`) while draining`)
    try {
      await sleep(pollMs, undefined, {signal: conn.signal})
    } catch {
      throw new InterruptedError()
    }
  }
}
