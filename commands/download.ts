import {Args, Flags} from '@oclif/core'
import {ChunkyCommand} from '../src/cli/base-command.js'
import {clientFlags, fileName} from '../src/cli/flags.js'
import {transferView} from '../src/cli/transfer-view.js'
import {UsageError} from '../src/cli/failure.js'
import {downloadFile, downloadPrefix, downloadToStream, type DownloadResult, type PrefixDownloadResult} from '../src/client/index.js'
import {formatBytes} from '../src/util/parse.js'

export default class Download extends ChunkyCommand {
  static override summary = 'Download a file: fetch every chunk from the nearest fresh copy and verify it'
  static override description = `Reads the file's manifest once (so it never mixes an old and a new version), fetches each chunk at the version the manifest names from the nearest fresh replica, and checks its size and SHA-256. A copy that fails or does not match is skipped for the next one (and a mismatch is reported to the master, which repairs it).

The bytes go to a temporary file next to the output, which is fsynced and renamed into place at the end: an existing output file is replaced atomically, and an interrupted download leaves it untouched. -o DIR (an existing directory) writes DIR/<NAME's last segment>; a missing directory is refused before anything is fetched.

-o - writes the file to standard output instead (\`chunky download clip.mp4 -o - | ffplay -\`): each chunk is verified before any of its bytes go out, in order, with up to --concurrency chunks held in memory; nothing but the file's bytes goes to standard output, and progress goes to standard error only when that is a terminal. A reader that stops early (\`| head\`) ends the download with an error.

--prefix P fetches every file under P/ as DIR/<name relative to P> (-o DIR, default: P's last segment here), subfolders created as needed, up to 4 files at once. Files already in DIR that are not in the cluster are left alone.`

  static override examples = [
    {description: 'Download into ./keynote.mp4', command: '<%= config.bin %> <%= command.id %> talks/2026/keynote.mp4'},
    {description: 'Choose where to write it', command: '<%= config.bin %> <%= command.id %> talks/2026/keynote.mp4 -o /tmp/keynote.mp4'},
    {description: 'To standard output, e.g. into a player or a checksum', command: '<%= config.bin %> <%= command.id %> talks/2026/keynote.mp4 -o - | sha256sum'},
    {description: 'For scripts', command: '<%= config.bin %> <%= command.id %> keynote.mp4 -o copy.mp4 --json'},
    {description: 'A whole folder of the cluster into ./export', command: '<%= config.bin %> <%= command.id %> --prefix talks/2026 -o export'},
  ]

  static override enableJsonFlag = true
  static override args = {name: Args.string({description: 'name of the file in the cluster (or --prefix for a folder)', required: false, parse: fileName})}
  static override flags = {
    ...clientFlags,
    output: Flags.string({char: 'o', description: "where to write it: a file (replaced atomically if it exists), an existing directory to write DIR/<NAME's last segment> in, or - for standard output [default: NAME's last segment, here]", helpValue: '<file|dir|->'}),
    concurrency: Flags.integer({description: 'chunks fetched at once (1 to 32)', default: 4, min: 1, max: 32}),
    prefix: Flags.string({description: 'download every file under this prefix (a folder in the cluster) into -o DIR', helpValue: '<prefix>'}),
  }

  async run(): Promise<DownloadResult | PrefixDownloadResult> {
    const {args, flags} = await this.parse(Download)
    if ((args.name === undefined) === (flags.prefix === undefined)) {
      throw new UsageError(args.name === undefined ? 'name a file to download, or a folder with --prefix' : 'give either a NAME or --prefix, not both')
    }
    if (flags.output === '-') {
      if (flags.prefix !== undefined) throw new UsageError('-o - writes one file to standard output: --prefix needs a directory (-o DIR)')
      if (this.jsonEnabled()) throw new UsageError('-o - puts the file on standard output, where --json would go: drop --json (the exit code says whether it worked)')
    }
    const settings = await this.clientSettings(flags)
    if (flags.output === '-') return this.toStandardOutput(args.name!, settings, flags.concurrency)
    const view = transferView({interactive: this.showProgress(), quiet: this.jsonEnabled()})
    if (flags.prefix !== undefined) {
      let folder: PrefixDownloadResult
      try {
        folder = await downloadPrefix(
          {prefix: flags.prefix, output: flags.output, master: settings.master, token: settings.token, concurrency: flags.concurrency, signal: this.interrupt.signal},
          view,
        )
      } finally {
        view.stop()
      }
      if (!this.jsonEnabled()) {
        this.log(`downloaded ${folder.files.length} file${folder.files.length === 1 ? '' : 's'} under ${folder.prefix}/ to ${folder.output}: ${formatBytes(folder.size)}, verified, in ${folder.seconds}s`)
      }
      return folder
    }
    let result: DownloadResult
    try {
      result = await downloadFile(
        {name: args.name!, output: flags.output, master: settings.master, token: settings.token, concurrency: flags.concurrency, signal: this.interrupt.signal},
        view,
      )
    } finally {
      view.stop()
    }
    if (!this.jsonEnabled()) {
      this.log(`downloaded ${result.name} to ${result.output}: ${formatBytes(result.size)} in ${result.chunks} chunks, verified, in ${result.seconds}s`)
    }
    return result
  }

  /** Standard output carries the bytes alone: progress and the closing line go to a terminal's standard error, or nowhere. */
  private async toStandardOutput(name: string, settings: {master: string; token?: string}, concurrency: number): Promise<DownloadResult> {
    const terminal = this.showProgress()
    const view = transferView({interactive: terminal, quiet: !terminal})
    const out = process.stdout
    let result: DownloadResult
    try {
      result = await downloadToStream({name, master: settings.master, token: settings.token, concurrency, signal: this.interrupt.signal}, view, out)
      await new Promise<void>((resolve, reject) => out.write('', (err?: Error | null) => (err ? reject(err) : resolve()))) // flushed
    } finally {
      view.stop()
    }
    if (terminal) process.stderr.write(`downloaded ${result.name} to standard output: ${formatBytes(result.size)} in ${result.chunks} chunks, verified, in ${result.seconds}s\n`)
    return result
  }
}
