import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {createHash} from 'node:crypto'
import {createMasterContext} from '../../src/master/context.js'
import {openDatabase} from '../../src/master/db.js'
import type {MasterToNode} from '../../src/protocol/index.js'
import {MasterMetrics} from '../../src/telemetry/metrics.js'
import {messageLogger} from '../../src/util/log.js'

export const sha = (text: string) => createHash('sha256').update(text).digest('hex')

/** A master context on a temp database with a hand-driven clock and fake node links that record what they are sent. */
export async function testContext(opts: {replicas?: number; minReplicas?: number; dir?: string; durable?: () => Promise<void>} = {}) {
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'chunky-master-')))
  const clock = {t: 1_000_000, now() {return this.t}}
  const db = openDatabase(dir)
  const lines: string[] = []
  const log = messageLogger((line) => void lines.push(line))
  const metrics = new MasterMetrics()
  const ctx = createMasterContext({db, clock, log, metrics, nodeTimeoutMs: 10_000, replicas: opts.replicas ?? 3, minReplicas: opts.minReplicas ?? 2, durable: opts.durable})
  const {nodes} = ctx
  const sent = new Map<string, MasterToNode[]>()
  /** Registers an alive, connected node. */
  const addNode = (id: string, zone = 'z1', freeBytes = 1e12) => {
    nodes.hello({type: 'hello', v: 1, nodeId: id, url: `http://127.0.0.1:1/${id}`, zone, freeBytes, usedBytes: 0, chunkCount: 0})
    const inbox: MasterToNode[] = []
    sent.set(id, inbox)
    nodes.attach(id, {send: (text) => void inbox.push(JSON.parse(text) as MasterToNode), close() {}})
  }
  const cleanup = async () => {
    if (db.open) db.close()
    if (!opts.dir) await rm(dir, {recursive: true, force: true})
  }
  return {dir, ctx, db, nodes, clock, lines, sent, addNode, cleanup}
}

/** An upload plan request for a file of `size` bytes in 64 KiB chunks, chunk i hashing to sha(`${tag}${i}`). */
export function planRequest(name: string, size: number, tag = 'a', extra: {entryNode?: string; exclude?: string[]} = {}) {
  const chunkSize = 64 * 1024
  const count = Math.ceil(size / chunkSize)
  const chunks = Array.from({length: count}, (_, i) => ({index: i, size: Math.min(chunkSize, size - i * chunkSize), sha256: sha(`${tag}${i}`)}))
  return {name, size, chunkSize, chunks, exclude: extra.exclude ?? [], entryNode: extra.entryNode}
}
