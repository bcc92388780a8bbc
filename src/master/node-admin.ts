import type {ForgetResult} from '../protocol/index.js'
import type {MasterContext} from './context.js'

// `chunky nodes drain / undrain / forget`: the operator's changes to the node registry. The registry
// keeps the drain mark (persisted); the repair loop hears of it (NodeRegistry.onChange) and copies the
// node's chunks away; master/drain.ts tells how far it got.

export function drainNode(ctx: MasterContext, nodeId: string): void {
  const wasDraining = ctx.nodes.isDraining(nodeId)
  ctx.nodes.drain(nodeId)
  if (wasDraining) return
  ctx.log.info({event: 'node.draining', nodeId}, `node ${nodeId} is draining: no new chunks go there, and its chunks are copied until each has R fresh copies on other nodes`)
}

export function undrainNode(ctx: MasterContext, nodeId: string): void {
  const wasDraining = ctx.nodes.isDraining(nodeId)
  ctx.nodes.undrain(nodeId)
  if (wasDraining) ctx.log.info({event: 'node.undrained', nodeId}, `node ${nodeId} is back in service (copies beyond R are trimmed)`)
}

/** A dead node removed for good: its replica rows go, and the repair loop fills what they leave short. */
export function forgetNode(ctx: MasterContext, nodeId: string): ForgetResult {
  const replicasDropped = ctx.db.transaction(() => {
    ctx.nodes.forget(nodeId) // refuses an alive or connected node
    return ctx.replicaTable.removeNode(nodeId)
  })()
  ctx.log.info({event: 'node.forgotten', nodeId, replicas: replicasDropped}, `node ${nodeId} forgotten: ${replicasDropped} replica record${replicasDropped === 1 ? '' : 's'} dropped`)
  return {id: nodeId, forgotten: true, replicasDropped}
}
