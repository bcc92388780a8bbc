import {Args} from '@oclif/core'
import {ChunkyCommand} from '../../src/cli/base-command.js'
import {clientFlags} from '../../src/cli/flags.js'
import {undrainNode} from '../../src/client/index.js'
import type {NodeInfo} from '../../src/protocol/index.js'

export default class NodesUndrain extends ChunkyCommand {
  static override summary = 'Take a draining or drained node back into service'
  static override description = `The node takes new chunks again and its copies count toward R again; chunks that now have more than R fresh copies are trimmed back to R by the master. --json prints the node as \`chunky nodes --json\` shows it.`
  static override examples = [{description: 'Put n3 back into service', command: '<%= config.bin %> <%= command.id %> n3'}]

  static override enableJsonFlag = true
  static override args = {id: Args.string({description: 'id of the node (see `chunky nodes`)', required: true})}
  static override flags = {...clientFlags}

  async run(): Promise<NodeInfo> {
    const {args, flags} = await this.parse(NodesUndrain)
    const {master, token} = await this.clientSettings(flags)
    const node = await undrainNode({master, token, signal: this.interrupt.signal}, args.id)
    if (!this.jsonEnabled()) this.log(`${node.id} is back in service (${node.state})`)
    return node
  }
}
