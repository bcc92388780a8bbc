import {Args, Flags} from '@oclif/core'
import {join} from 'node:path'
import {ChunkyCommand} from '../src/cli/base-command.js'
import {runDemo} from '../src/cli/demo.js'
import {durationFlag} from '../src/cli/flags.js'
import {transferView} from '../src/cli/transfer-view.js'

export default class Demo extends ChunkyCommand {
  static override summary = 'Watch a stale copy get found and repaired, on a small cluster started on this machine'
  static override description = `Starts a master and three nodes (zones a, b, c) as child processes in a temporary folder, uploads a sample (25 MiB of random bytes, or FILE, which is copied and never changed), shows the version report, and downloads it again to check every byte.

Then the story of chunk versions: it stops one node, changes bytes inside chunk 1 and uploads again (chunk 1 gets version 2, the others keep version 1), brings the node back with its now-stale copy, and shows the master find it, have it deleted and replaced by version 2, with the versions before and after. It downloads and checks once more, then stops everything and removes the folder, also on Ctrl-C. Exit 0 only if every check passed.

It prints the address of the master's web dashboard (with a read-only credential in the #token= fragment): open it to watch the nodes, the chunk versions and the repair live. --pace slows the story down to a pace a person can follow, and --keep leaves the cluster running afterwards until Ctrl-C.`

  static override examples = [
    {description: 'The whole story with a generated sample', command: '<%= config.bin %> <%= command.id %>'},
    {description: 'With a video of your own (at least 129 KiB; it is copied, not changed)', command: '<%= config.bin %> <%= command.id %> ~/Videos/clip.mp4'},
    {description: 'Slowly, to watch it in the dashboard, and keep the cluster up afterwards', command: '<%= config.bin %> <%= command.id %> --pace 3s --keep'},
  ]

  static override flags = {
    pace: durationFlag({default: '0s', description: 'pause this long between steps (to follow along in the dashboard)'}),
    keep: Flags.boolean({description: 'after the story, keep the cluster running until Ctrl-C, then clean up', default: false}),
  }

  static override args = {file: Args.string({description: 'a file to use as the sample instead of random bytes', required: false})}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Demo)
    await runDemo({
      bin: join(this.config.root, 'bin', 'run.js'),
      file: args.file,
      say: (text) => this.log(text),
      view: () => transferView({interactive: this.showProgress()}),
      signal: this.interrupt.signal,
      paceMs: flags.pace,
      keep: flags.keep,
    })
  }
}
