import type {NodeContext} from './context.js'
import type {NodeCommand} from './master-link.js'
import {runReplication} from './replicate.js'

/** Carries out what the master asks; each command's failure is its own (the link logs it). */
export function commandHandler(ctx: NodeContext): (command: NodeCommand) => Promise<void> {
  return async (command) => {
    switch (command.type) {
      case 'delete': {
        // stale or unreferenced: that version never comes back here (a replayed grant for it is refused)
        if (command.reason === 'stale' || command.reason === 'unreferenced') ctx.versions.superseded(command.chunkId, command.version)
        await ctx.store.delete(command.chunkId, command.version)
        ctx.metrics.deletedChunks.inc({reason: command.reason})
        ctx.log.info(
          {event: 'chunk.deleted', chunkId: command.chunkId, version: command.version, reason: command.reason},
          `deleted chunk ${command.chunkId} v${command.version} (${command.reason})`,
        )
        await ctx.link.send({type: 'deleted', chunkId: command.chunkId, version: command.version})
        return
      }
      case 'verify': {
        if (!ctx.store.has(command.chunkId, command.version)) {
          // Not held (any more): say so, so the master stops counting it here.
          await ctx.link.send({type: 'deleted', chunkId: command.chunkId, version: command.version})
          return
        }
        if (await ctx.store.verify(command.chunkId, command.version)) return
        ctx.log.warn(
          {event: 'verify.corrupt', chunkId: command.chunkId, version: command.version},
          `verify: chunk ${command.chunkId} v${command.version} is corrupt (bytes no longer match its SHA-256)`,
        )
        await ctx.link.reportCorrupt(command.chunkId, command.version)
        return
      }
      case 'report-request':
        await ctx.link.sendInventory()
        return
      case 'replicate':
        await runReplication(ctx, command)
        return
    }
  }
}
