import {Args} from '@oclif/core'
import {ChunkyCommand} from '../src/cli/base-command.js'
import {clientFlags, fileName} from '../src/cli/flags.js'
import {removeFile} from '../src/client/index.js'

export default class Rm extends ChunkyCommand {
  static override summary = 'Remove a file from the cluster'
  static override description = 'The master forgets the file at once; the nodes delete its chunks in the background (a node that is down deletes them when it comes back).'
  static override examples = [
    {description: 'Remove a file', command: '<%= config.bin %> <%= command.id %> talks/2026/keynote.mp4'},
    {description: 'For scripts', command: '<%= config.bin %> <%= command.id %> keynote.mp4 --json'},
  ]

  static override enableJsonFlag = true
  static override args = {name: Args.string({description: 'name of the file in the cluster', required: true, parse: fileName})}
  static override flags = {...clientFlags}

  async run() {
    const {args, flags} = await this.parse(Rm)
    const {master, token} = await this.clientSettings(flags)
    const result = await removeFile({master, token, signal: this.interrupt.signal}, args.name)
    if (!this.jsonEnabled()) this.log(`removed ${result.name} (${result.removedChunks} chunk${result.removedChunks === 1 ? '' : 's'} to delete from the nodes)`)
    return result
  }
}
