import {Flags} from '@oclif/core'
import {ChunkyCommand} from '../src/cli/base-command.js'
import {advertisedUrl, listenUrl, resolveMasterToken, untilAborted} from '../src/cli/daemon.js'
import {UsageError} from '../src/cli/failure.js'
import {durationFlag} from '../src/cli/flags.js'
import {startMaster} from '../src/master/index.js'
import {DEFAULT_MASTER_PORT} from '../src/protocol/index.js'
import {stdoutLogger} from '../src/util/log.js'

export default class Master extends ChunkyCommand {
  static override summary = 'Run the master: names, chunk versions, replica locations, node liveness'
  static override description = `The master hands out chunk versions, plans where each chunk's replicas go, commits uploads once W copies are durable, and repairs the cluster in the background. Its metadata lives in --data-dir (SQLite).

Without --token it loads DATA_DIR/token, or makes a new random token and saves it there (mode 0600), then prints the command that joins a node and the line that points clients at it.

It listens on 127.0.0.1 by default: use --host 0.0.0.0 to let nodes and clients on other machines reach it. It prints "listening on http://HOST:PORT" once it accepts connections, then one line per event. Ctrl-C or SIGTERM stops it cleanly.`

  static override examples = [
    {description: 'Start a master for a local try-out (port 7400, token saved in .chunky/master/token)', command: '<%= config.bin %> <%= command.id %>'},
    {description: 'Reachable from other machines, two copies of every chunk', command: '<%= config.bin %> <%= command.id %> --host 0.0.0.0 --replicas 2 --data-dir /var/lib/chunky/master'},
    {description: 'Fast failure detection for a test cluster on a free port', command: '<%= config.bin %> <%= command.id %> --port 0 --node-timeout 2s --repair-interval 500ms'},
  ]

  static override flags = {
    host: Flags.string({description: 'address to listen on (0.0.0.0 for every interface)', default: '127.0.0.1'}),
    port: Flags.integer({description: 'port to listen on (0 picks a free one)', default: DEFAULT_MASTER_PORT, min: 0, max: 65535}),
    'data-dir': Flags.string({description: 'where the metadata and the token live', default: '.chunky/master'}),
    replicas: Flags.integer({description: 'R: copies wanted of every chunk', default: 3, min: 1, max: 16}),
    'min-replicas': Flags.integer({description: 'W: durable copies needed before an upload succeeds [default: min(2, R)]', min: 1, max: 16}),
    'node-timeout': durationFlag({default: '10s', description: 'a node silent this long is marked dead and its chunks are re-replicated'}),
    'repair-interval': durationFlag({default: '5s', description: 'how often the repair loop looks for under-replicated chunks'}),
    token: Flags.string({description: 'cluster credential [default: DATA_DIR/token, created if missing]', env: 'CHUNKY_TOKEN', helpValue: '<token>'}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Master)
    const replicas = flags.replicas
    const minReplicas = flags['min-replicas'] ?? Math.min(2, replicas)
    if (minReplicas > replicas) {
      throw new UsageError(`--min-replicas ${minReplicas} is more than --replicas ${replicas}: W must be between 1 and R (see \`chunky master --help\`)`)
    }
    const token = await resolveMasterToken(flags['data-dir'], flags.token)
    const master = await startMaster({
      host: flags.host,
      port: flags.port,
      dataDir: flags['data-dir'],
      replicas,
      minReplicas,
      nodeTimeoutMs: flags['node-timeout'],
      repairIntervalMs: flags['repair-interval'],
      token: token.token,
      log: stdoutLogger,
    })
    const url = advertisedUrl(flags.host, master.port)
    const shownToken = token.source === 'flag' ? '<the token you passed>' : token.token
    if (token.source === 'generated') this.log(`new cluster token saved in ${token.path} (mode 0600)`)
    if (token.source === 'file') this.log(`cluster token loaded from ${token.path}`)
    this.log(`join a node:  chunky node --master ${url} --token ${shownToken}`)
    this.log(`clients:      export CHUNKY_MASTER=${url} CHUNKY_TOKEN=${shownToken}`)
    this.log(`listening on ${listenUrl(flags.host, master.port)}`)

    await untilAborted(this.interrupt.signal)
    stdoutLogger('shutting down')
    await master.close()
    this.exit(0)
  }
}
