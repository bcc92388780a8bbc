import {ChunkyCommand} from '../../src/cli/base-command.js'
import {clientFlags} from '../../src/cli/flags.js'
import {renderNodes} from '../../src/cli/nodes-view.js'
import {listNodes} from '../../src/client/index.js'
import type {NodeInfoList} from '../../src/protocol/index.js'

export default class Nodes extends ChunkyCommand {
  static override summary = 'List the storage nodes: state, space, chunks, last heartbeat; chunky nodes drain|undrain|forget ID'
  static override description = `Every node the master knows, with its state: alive, dead (silent for --node-timeout, or stopped), draining (taking no new chunks while the master copies its chunks to other nodes) or drained (every chunk it holds has R fresh copies on other alive nodes: it can be stopped with nothing under-replicated). A drained node stays drained after it is stopped; \`chunky nodes forget ID\` removes a dead one for good.

--json prints {"nodes": [{"id", "url", "zone", "state", "alive", "lastHeartbeatMsAgo", "chunks", "bytes", "freeBytes", "reachable", "drain"?: {"startedAt", "chunksLeft", "pendingCopies", "uploadsInFlight", "waiting"?}}]}.`
  static override examples = [
    {description: 'The nodes', command: '<%= config.bin %> <%= command.id %>'},
    {description: 'Take node n3 out of service, waiting until it can be stopped', command: '<%= config.bin %> <%= command.id %> drain n3 --wait'},
  ]

  static override enableJsonFlag = true
  static override flags = {...clientFlags}

  async run(): Promise<NodeInfoList> {
    const {flags} = await this.parse(Nodes)
    const {master, token} = await this.clientSettings(flags)
    const nodes = await listNodes({master, token, signal: this.interrupt.signal})
    if (!this.jsonEnabled()) this.log(renderNodes(nodes))
    return {nodes}
  }
}
