import {Args, Flags} from '@oclif/core'
import {ChunkyCommand} from '../../src/cli/base-command.js'
import {clientFlags} from '../../src/cli/flags.js'
import {drainLine} from '../../src/cli/nodes-view.js'
import {drainNode, waitForDrain} from '../../src/client/index.js'
import type {NodeInfo} from '../../src/protocol/index.js'

export default class NodesDrain extends ChunkyCommand {
  static override summary = 'Take a node out of service: no new chunks go there, its chunks are copied to other nodes'
  static override description = `From now on the master places no new chunk on the node, and copies every chunk it holds (from it or from other copies, a few transfers per node at a time, as repair does) until each has R fresh copies on other alive nodes. Chunks that uploads begun before the drain are still writing there are covered too: the drain ends only once those uploads commit (or their grants expire, 15 minutes after the drain began) and their chunks have R copies elsewhere. Then the node is "drained" and can be stopped with nothing under-replicated. While it drains it still serves reads and counts as alive, so \`chunky status\` shows nothing under-replicated because of it. The drain is kept across master restarts; \`chunky nodes undrain ID\` takes the node back.

Draining needs R other alive nodes to copy to; with fewer it waits and says so. --wait shows the chunks left on standard error and exits 0 once drained. --json prints the node as \`chunky nodes --json\` shows it (with --wait: once drained).`
  static override examples = [
    {description: 'Start draining n3', command: '<%= config.bin %> <%= command.id %> n3'},
    {description: 'Drain n3 and wait until it can be stopped', command: '<%= config.bin %> <%= command.id %> n3 --wait'},
  ]

  static override enableJsonFlag = true
  static override args = {id: Args.string({description: 'id of the node (see `chunky nodes`)', required: true})}
  static override flags = {
    ...clientFlags,
    wait: Flags.boolean({description: 'wait until the node is drained, showing the chunks left on stderr; exit 0 then'}),
  }

  async run(): Promise<NodeInfo> {
    const {args, flags} = await this.parse(NodesDrain)
    const {master, token} = await this.clientSettings(flags)
    const conn = {master, token, signal: this.interrupt.signal}
    const started = await drainNode(conn, args.id)
    if (!flags.wait) {
      if (!this.jsonEnabled()) this.log(`${drainLine(started)}${started.state === 'drained' ? '' : `\n(\`chunky nodes drain ${args.id} --wait\` waits until it is drained)`}`)
      return started
    }
    let last = ''
    const drained = await waitForDrain(conn, args.id, (info) => {
      const line = drainLine(info)
      if (!this.jsonEnabled() && line !== last && info.state !== 'drained') process.stderr.write(`${line}\n`)
      last = line
    })
    if (!this.jsonEnabled()) this.log(drainLine(drained))
    return drained
  }
}
