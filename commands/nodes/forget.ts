import {Args} from '@oclif/core'
import {ChunkyCommand} from '../../src/cli/base-command.js'
import {clientFlags} from '../../src/cli/flags.js'
import {forgetNode} from '../../src/client/index.js'
import type {ForgetResult} from '../../src/protocol/index.js'

export default class NodesForget extends ChunkyCommand {
  static override summary = 'Remove a dead node for good: its replica records go, and repair fills what they leave short'
  static override description = `For a node that is gone and will not come back (a dead disk, a machine retired). Refused while the node is alive: stop it first (drain it before, so nothing is under-replicated meanwhile). The master drops its records of the node's copies; any chunk that falls below R fresh copies is repaired from the others. If the node does come back later, it joins as a new node and reports what it holds. --json prints {"id", "forgotten": true, "replicasDropped"}.`
  static override examples = [{description: 'Forget the dead node n3', command: '<%= config.bin %> <%= command.id %> n3'}]

  static override enableJsonFlag = true
  static override args = {id: Args.string({description: 'id of the dead node (see `chunky nodes`)', required: true})}
  static override flags = {...clientFlags}

  async run(): Promise<ForgetResult> {
    const {args, flags} = await this.parse(NodesForget)
    const {master, token} = await this.clientSettings(flags)
    const result = await forgetNode({master, token, signal: this.interrupt.signal}, args.id)
    if (!this.jsonEnabled()) this.log(`forgot ${result.id} (${result.replicasDropped} replica record${result.replicasDropped === 1 ? '' : 's'} dropped)`)
    return result
  }
}
