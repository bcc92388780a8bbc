import {Args, Flags} from '@oclif/core'
import {ChunkyCommand} from '../src/cli/base-command.js'
import {invokedAs} from '../src/cli/bin-name.js'
import {clientFlags, fileName, flagGiven, sizeFlag, zoneFlag} from '../src/cli/flags.js'
import {resumeHint} from '../src/cli/resume.js'
import {transferView} from '../src/cli/transfer-view.js'
import {stat} from 'node:fs/promises'
import {UsageError} from '../src/cli/failure.js'
import {InterruptedError, syncFolder, uploadFile, type UploadResult} from '../src/client/index.js'
import {MAX_CHUNK_SIZE, MIN_CHUNK_SIZE} from '../src/protocol/index.js'
import {formatBytes} from '../src/util/parse.js'

export default class Upload extends ChunkyCommand {
  static override summary = 'Upload a file: split it into chunks and stream them to the nearest node'
  static override description = `Hashes FILE chunk by chunk, asks the master for a plan (a version and a chain of nodes for every chunk), and streams the chunks to the nearest alive node (lowest measured round trip, or --node), which forwards each one down its chain. Chunks the cluster already holds at their current version are skipped, so uploading a changed file again sends only the chunks that changed.

If a node fails during a chunk, that chunk is re-planned on other nodes and sent again, and no later chunk of the upload goes to that node. The command exits 0 only once the master has committed the whole file with every chunk durable on at least W nodes.

FILE may be a folder: every regular file under it is uploaded as PREFIX/<path relative to the folder> (--prefix; without it, the relative path alone), with one progress bar for the whole folder. The master is asked once for every file under the prefix with its chunks' checksums, so a file that did not change costs no request and nothing is sent for it; changed files send only their changed chunks. --json then prints {"files": [one upload document each], "uploadedChunks", "skippedChunks"}. \`chunky sync\` does the same and can also remove what the folder no longer has.`

  static override examples = [
    {description: 'Upload a video under its file name', command: '<%= config.bin %> <%= command.id %> keynote.mp4'},
    {description: 'Choose the name in the cluster', command: '<%= config.bin %> <%= command.id %> ./out/final.mp4 --name talks/2026/keynote.mp4'},
    {description: 'Bigger chunks, more in flight, through a chosen node', command: '<%= config.bin %> <%= command.id %> big.mov --chunk-size 64MiB --concurrency 8 --node n2'},
    {description: 'For scripts: one JSON document on stdout', command: '<%= config.bin %> <%= command.id %> keynote.mp4 --json'},
    {description: 'A whole folder, subfolders included, under talks/2026/', command: '<%= config.bin %> <%= command.id %> ./export --prefix talks/2026'},
  ]

  static override enableJsonFlag = true
  static override args = {file: Args.string({description: 'the file (or folder) to upload', required: true})}
  static override flags = {
    ...clientFlags,
    name: Flags.string({description: "name in the cluster, a path like talks/2026/keynote.mp4 [default: FILE's base name]", parse: fileName}),
    prefix: Flags.string({description: 'for a folder: the names go under PREFIX/ (PREFIX/<path in the folder>)', helpValue: '<prefix>'}),
    'chunk-size': sizeFlag({default: '10MiB', min: MIN_CHUNK_SIZE, max: MAX_CHUNK_SIZE, description: `chunk size (${formatBytes(MIN_CHUNK_SIZE)} to ${formatBytes(MAX_CHUNK_SIZE)}); 10MB means 10,000,000 bytes`}),
    concurrency: Flags.integer({description: 'chunks in flight at once (1 to 32)', default: 4, min: 1, max: 32}),
    node: Flags.string({description: 'entry node, by id or URL [default: the nearest alive node]', helpValue: '<id|url>'}),
    zone: zoneFlag,
  }

  async run(): Promise<UploadResult | FolderUpload> {
    const {args, flags} = await this.parse(Upload)
    const settings = await this.clientSettings(flags)
    const isFolder = (await stat(args.file).catch(() => undefined))?.isDirectory() ?? false
    if (isFolder && flags.name !== undefined) throw new UsageError(`${args.file} is a folder: name where its files go with --prefix, not --name`)
    if (!isFolder && flags.prefix !== undefined) throw new UsageError('--prefix is for a folder; name a single file with --name')
    const view = transferView({interactive: this.showProgress(), quiet: this.jsonEnabled()})
    if (isFolder) {
      try {
        const result = await syncFolder(
          {dir: args.file, prefix: flags.prefix, chunkSize: flagGiven(this.argv, 'chunk-size') ? flags['chunk-size'] : undefined, concurrency: flags.concurrency, node: flags.node, zone: settings.zone,
            master: settings.master, token: settings.token, signal: this.interrupt.signal},
          view,
        )
        if (!this.jsonEnabled()) {
          this.log(
            `uploaded ${args.file}: ${result.files.length} file${result.files.length === 1 ? '' : 's'} (${result.uploaded.length} new or changed, ${result.unchanged} unchanged);` +
              ` ${result.uploadedChunks} chunk${result.uploadedChunks === 1 ? '' : 's'} sent, ${result.skippedChunks} already stored`,
          )
        }
        return {files: result.files, uploadedChunks: result.uploadedChunks, skippedChunks: result.skippedChunks}
      } catch (err) {
        if (err instanceof InterruptedError) throw new InterruptedError(resumeHint(invokedAs(this.config.bin), process.argv.slice(2)))
        throw err
      } finally {
        view.stop()
      }
    }
    let result: UploadResult
    try {
      result = await uploadFile(
        {
          path: args.file,
          name: flags.name,
          chunkSize: flags['chunk-size'],
          concurrency: flags.concurrency,
          node: flags.node,
          zone: settings.zone,
          master: settings.master,
          token: settings.token,
          signal: this.interrupt.signal,
        },
        view,
      )
    } catch (err) {
      // Ctrl-C: what was stored stays stored; the same command picks up from there.
      if (err instanceof InterruptedError) throw new InterruptedError(resumeHint(invokedAs(this.config.bin), process.argv.slice(2)))
      throw err
    } finally {
      view.stop()
    }
    if (!this.jsonEnabled()) {
      const rate = result.seconds > 0 && result.skippedChunks === 0 ? ` (${formatBytes(result.size / result.seconds)}/s)` : ''
      this.log(
        `uploaded ${result.name}: ${formatBytes(result.size)} in ${result.chunks} chunk${result.chunks === 1 ? '' : 's'}` +
          ` (${result.uploadedChunks} sent, ${result.skippedChunks} already stored) through ${result.entryNode} in ${result.seconds}s${rate}`,
      )
    }
    return result
  }
}

/** `chunky upload DIR --json` (SPEC.md "Operating a cluster"). */
interface FolderUpload {
  files: UploadResult[]
  uploadedChunks: number
  skippedChunks: number
}
