import {Args, Flags} from '@oclif/core'
import {ChunkyCommand} from '../src/cli/base-command.js'
import {UsageError} from '../src/cli/failure.js'
import {clientFlags, durationFlag, fileName, flagGiven, zoneFlag} from '../src/cli/flags.js'
import {shareLink, type ShareResult} from '../src/client/share.js'
import {parseSize} from '../src/util/parse.js'

/** An upload link lasts an hour unless --expires says otherwise (a read link a day). */
const UPLOAD_LINK_EXPIRY_MS = 3_600_000

export default class Share extends ChunkyCommand {
  static override summary = 'Print a signed link that plays a file without a credential until it expires'
  static override description = `The master signs the link (it checks that NAME is committed); it points at the nearest alive node (or --node), and every node accepts the same path, so its host can be swapped for any node's. It follows its name: after a re-upload it serves the new version. A forged, altered or expired link gets 403.

With --prefix P, the link signs every name under P/: its URL ends in P/, and appending the rest of a name gives that file's link (relative URLs in an HLS playlist resolve to signed links).

With --upload, the link is a tus endpoint ({node}/tus/u/<token>/) that uploads NAME (and only NAME, at most --max-size bytes) without a credential until it expires (default 1h): a web page's backend hands it to the page's tus client (tus-js-client, Uppy), which sends the name in its metadata. NAME need not exist yet.`

  static override examples = [
    {description: 'A link for a day', command: '<%= config.bin %> <%= command.id %> talks/2026/keynote.mp4'},
    {description: 'A week, through a chosen node, for scripts', command: '<%= config.bin %> <%= command.id %> talks/2026/keynote.mp4 --expires 168h --node n2 --json'},
    {description: 'An HLS stream: the playlist and its segments', command: '<%= config.bin %> <%= command.id %> --prefix streams/keynote --expires 2h'},
    {description: 'Let a browser upload one video, at most 2 GiB, within the hour', command: '<%= config.bin %> <%= command.id %> --upload uploads/alice/intro.mp4 --max-size 2GiB --json'},
  ]

  static override enableJsonFlag = true
  static override args = {name: Args.string({description: 'name of the file in the cluster', required: false, parse: fileName})}
  static override flags = {
    ...clientFlags,
    expires: durationFlag({default: '24h', description: 'how long the link works (an --upload link: 1h unless given)'}),
    upload: Flags.boolean({description: 'a link that uploads NAME through tus instead of playing it', default: false, exclusive: ['prefix']}),
    'max-size': Flags.custom<number>({parse: async (input) => parseSize(input), helpValue: '<size>'})({description: 'with --upload: the most bytes the upload may have (10MiB, 2GiB, …) [default: no limit]', dependsOn: ['upload']}),
    prefix: Flags.string({description: 'sign every name under this prefix instead of one name', helpValue: '<prefix>'}),
    node: Flags.string({description: 'the node the link points at, by id or URL [default: the nearest alive node]', helpValue: '<id|url>'}),
    zone: zoneFlag,
  }

  async run(): Promise<ShareResult> {
    const {args, flags} = await this.parse(Share)
    if ((args.name === undefined) === (flags.prefix === undefined)) throw new UsageError('give a NAME or --prefix P (one of them)')
    if (flags.expires <= 0) throw new UsageError('--expires must be longer than 0s')
    const settings = await this.clientSettings(flags)
    const upload = flags.upload ? {maxSize: flags['max-size']} : undefined
    const result = await shareLink({
      upload,
      master: settings.master,
      token: settings.token,
      name: args.name,
      prefix: flags.prefix,
      expiresInMs: flags.upload && !flagGiven(this.argv, 'expires') ? UPLOAD_LINK_EXPIRY_MS : flags.expires,
      node: flags.node,
      zone: settings.zone,
      signal: this.interrupt.signal,
    })
    if (!this.jsonEnabled()) {
      this.log(result.url)
      process.stderr.write(`valid until ${result.expiresAt}\n`)
    }
    return result
  }
}
