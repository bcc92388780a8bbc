import {ChunkyCommand} from '../src/cli/base-command.js'
import {clientFlags} from '../src/cli/flags.js'
import {renderFileList} from '../src/cli/status-view.js'
import {listFiles} from '../src/client/index.js'

export default class Ls extends ChunkyCommand {
  static override summary = 'List the files in the cluster'
  static override description = `Every committed file with its size, chunk count, the lowest number of fresh copies on alive nodes over its chunks out of R ("2/3", as \`chunky status\` shows it), and when it was committed.

--json prints {"files": [{"name", "size", "chunks", "committedAt", "lowestFreshReplicas"}], "replicas"} (replicas is R).`
  static override examples = [
    {description: 'List the files', command: '<%= config.bin %> <%= command.id %>'},
    {description: 'For scripts', command: '<%= config.bin %> <%= command.id %> --json'},
  ]

  static override enableJsonFlag = true
  static override flags = {...clientFlags}

  async run() {
    const {flags} = await this.parse(Ls)
    const {master, token} = await this.clientSettings(flags)
    const list = await listFiles({master, token, signal: this.interrupt.signal})
    if (!this.jsonEnabled()) this.log(renderFileList(list))
    return list
  }
}
