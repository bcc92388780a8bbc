import {Args, Flags} from '@oclif/core'
import {ChunkyCommand} from '../src/cli/base-command.js'
import {invokedAs} from '../src/cli/bin-name.js'
import {UsageError} from '../src/cli/failure.js'
import {clientFlags, flagGiven, sizeFlag, zoneFlag} from '../src/cli/flags.js'
import {resumeHint} from '../src/cli/resume.js'
import {transferView} from '../src/cli/transfer-view.js'
import {InterruptedError, syncFolder} from '../src/client/index.js'
import {MAX_CHUNK_SIZE, MIN_CHUNK_SIZE} from '../src/protocol/index.js'
import {formatBytes} from '../src/util/parse.js'

/** `chunky sync --json` (SPEC.md "Operating a cluster"); dryRun says whether anything was changed. */
export interface SyncResult {
  uploaded: string[]
  unchanged: number
  deleted: string[]
  uploadedChunks: number
  skippedChunks: number
  dryRun: boolean
}

export default class Sync extends ChunkyCommand {
  static override summary = "Make the cluster's files under a prefix match a folder"
  static override description = `Every regular file under DIR is the cluster file PREFIX/<path relative to DIR> (without --prefix, the relative path alone). New and changed files are uploaded, sending only their changed chunks; with --delete, names under PREFIX/ that DIR lacks are removed from the cluster. Files that did not change are neither sent nor planned.

It asks the master once for every file under the prefix with its chunks' SHA-256, hashes the folder, and decides locally which files changed, so a folder of thousands of files costs two requests plus two per changed file (plan and commit) and one per removed file. --dry-run prints what it would do and changes nothing.`

  static override examples = [
    {description: 'Keep the cluster in step with a folder of exports', command: '<%= config.bin %> <%= command.id %> ./export --prefix talks/2026'},
    {description: 'Also remove what was deleted locally; look first', command: '<%= config.bin %> <%= command.id %> ./export --prefix talks/2026 --delete --dry-run'},
    {description: 'For scripts', command: '<%= config.bin %> <%= command.id %> ./export --prefix talks/2026 --delete --json'},
  ]

  static override enableJsonFlag = true
  static override args = {dir: Args.string({description: 'the folder to sync', required: true})}
  static override flags = {
    ...clientFlags,
    prefix: Flags.string({description: "where the folder's files go in the cluster: PREFIX/<path in the folder> [default: no prefix]", helpValue: '<prefix>'}),
    delete: Flags.boolean({description: 'remove the names under PREFIX/ that the folder does not have (needs --prefix)'}),
    'dry-run': Flags.boolean({description: 'print what would be uploaded and removed, change nothing'}),
    'chunk-size': sizeFlag({default: '10MiB', min: MIN_CHUNK_SIZE, max: MAX_CHUNK_SIZE, description: `chunk size (${formatBytes(MIN_CHUNK_SIZE)} to ${formatBytes(MAX_CHUNK_SIZE)}); without it a file already stored keeps its chunk size and a new one gets 10MiB; given, a file stored with another chunk size is sent again`}),
    concurrency: Flags.integer({description: 'chunks in flight at once, per file (1 to 32; up to 4 files at once)', default: 4, min: 1, max: 32}),
    node: Flags.string({description: 'entry node, by id or URL [default: the nearest alive node]', helpValue: '<id|url>'}),
    zone: zoneFlag,
  }

  async run(): Promise<SyncResult> {
    const {args, flags} = await this.parse(Sync)
    if (flags.delete && flags.prefix === undefined) {
      // without a prefix the names DIR lacks are every other file of the cluster
      throw new UsageError('--delete needs --prefix: it removes the names under that prefix which the folder lacks')
    }
    const settings = await this.clientSettings(flags)
    const view = transferView({interactive: this.showProgress(), quiet: this.jsonEnabled()})
    let result
    try {
      result = await syncFolder(
        {
          dir: args.dir, prefix: flags.prefix, delete: flags.delete, dryRun: flags['dry-run'],
          chunkSize: flagGiven(this.argv, 'chunk-size') ? flags['chunk-size'] : undefined, concurrency: flags.concurrency,
          node: flags.node, zone: settings.zone, master: settings.master, token: settings.token, signal: this.interrupt.signal,
        },
        view,
      )
    } catch (err) {
      // what was committed stays committed; the same command carries on from there
      if (err instanceof InterruptedError) throw new InterruptedError(resumeHint(invokedAs(this.config.bin), process.argv.slice(2)))
      throw err
    } finally {
      view.stop()
    }
    const {uploaded, unchanged, deleted, uploadedChunks, skippedChunks, dryRun} = result
    if (!this.jsonEnabled()) {
      for (const name of uploaded) this.log(`${dryRun ? 'would upload' : 'uploaded'} ${name}`)
      for (const name of deleted) this.log(`${dryRun ? 'would remove' : 'removed'} ${name}`)
      this.log(
        `${dryRun ? 'dry run, nothing changed: ' : 'synced: '}${uploaded.length} ${dryRun ? 'to upload' : 'uploaded'}, ${unchanged} unchanged, ` +
          `${deleted.length} ${dryRun ? 'to remove' : 'removed'}; ${uploadedChunks} chunk${uploadedChunks === 1 ? '' : 's'} ${dryRun ? 'to send' : 'sent'}, ${skippedChunks} already stored`,
      )
    }
    return {uploaded, unchanged, deleted, uploadedChunks, skippedChunks, dryRun}
  }
}
