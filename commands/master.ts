import {Flags} from '@oclif/core'
import {ChunkyCommand} from '../src/cli/base-command.js'
import {invokedAs} from '../src/cli/bin-name.js'
import {advertisedUrl, listenUrl, untilAborted} from '../src/cli/daemon.js'
import {UsageError} from '../src/cli/failure.js'
import {argvWithConfigFile, configFlag, inConfigFile} from '../src/cli/daemon-config.js'
import {durationFlag, httpUrl, logLevelFlag} from '../src/cli/flags.js'
import {resolveMasterSecret} from '../src/cli/secrets.js'
import {readTlsFiles} from '../src/cli/tls-files.js'
import {startMaster} from '../src/master/index.js'
import {DEFAULT_MASTER_PORT, deriveCredentials} from '../src/protocol/index.js'
import {createDaemonLogger} from '../src/telemetry/logger.js'

export default class Master extends ChunkyCommand {
  static override summary = 'Run the master: names, chunk versions, replica locations, node liveness'
  static override description = `The master hands out chunk versions, plans where each chunk's replicas go, commits uploads once W copies are durable, and repairs the cluster in the background. Its metadata lives in --data-dir (SQLite), or with --meta postgres://… in PostgreSQL, where several masters on one database make one leader and standbys (GET /healthz says which; a standby tells clients and nodes where the leader is, and takes over within --node-timeout and a few seconds when the leader dies or hangs).

The cluster secret comes from --secret-file, --secret (or its old name --token) or CHUNKY_SECRET; without any it loads DATA_DIR/token, or makes a new random secret and saves it there (mode 0600). The master never reads CHUNKY_TOKEN (that is the clients' credential), and it refuses a derived credential (rw-…, ro-…, node-…) as its secret. Prefer --secret-file or CHUNKY_SECRET: a flag's value shows in \`ps\`. From the secret it derives a node credential (node-…, for \`chunky node\`), a read-write client credential (rw-…: upload, rm, and everything ro can) and a read-only one (ro-…: status, ls, download), and prints the command that joins a node and the line that points clients at it. The secret itself is valid for everything.

On the same port it serves a live web dashboard (nodes, files, chunk versions, repairs): open the "dashboard:" link it prints (it carries the read-only credential after #, which browsers never send to a server).

With --tls-cert and --tls-key it serves HTTPS and WSS; nodes and clients then need its CA (--ca or CHUNKY_CA) unless a public CA signed the certificate.

Every flag can also come from a JSON file named by --config ({"port": 7400, "data-dir": "/var/lib/chunky/master", "secret-file": "/etc/chunky/secret", …}: the keys are the flag names). Each setting comes from its flag, else its environment variable (CHUNKY_SECRET, CHUNKY_LOG_LEVEL), else the file, else the default.

It listens on 127.0.0.1 by default: use --host 0.0.0.0 to let nodes and clients on other machines reach it. It prints "listening on http://HOST:PORT" once it accepts connections, then one line per event. Ctrl-C or SIGTERM stops it cleanly.`

  static override examples = [
    {description: 'Start a master for a local try-out (port 7400, token saved in .chunky/master/token)', command: '<%= config.bin %> <%= command.id %>'},
    {description: 'Reachable from other machines, two copies of every chunk', command: '<%= config.bin %> <%= command.id %> --host 0.0.0.0 --replicas 2 --data-dir /var/lib/chunky/master'},
    {description: 'Settings from a file (as a service does)', command: '<%= config.bin %> <%= command.id %> --config /etc/chunky/master.json'},
    {description: 'One of several masters on one PostgreSQL database (run the same line on another machine for a standby)', command: '<%= config.bin %> <%= command.id %> --host 0.0.0.0 --meta postgres://chunky@db.example/chunky --public-url http://master1.example:7400'},
    {description: 'Fast failure detection for a test cluster on a free port', command: '<%= config.bin %> <%= command.id %> --port 0 --node-timeout 2s --repair-interval 500ms'},
  ]

  static override flags = {
    host: Flags.string({description: 'address to listen on (0.0.0.0 for every interface)', default: '127.0.0.1'}),
    port: Flags.integer({description: 'port to listen on (0 to 65535; 0 picks a free one)', default: DEFAULT_MASTER_PORT, min: 0, max: 65535}),
    'data-dir': Flags.string({description: 'where the metadata and the token live', default: '.chunky/master'}),
    replicas: Flags.integer({description: 'R: copies wanted of every chunk (1 to 16)', default: 3, min: 1, max: 16}),
    'min-replicas': Flags.integer({description: 'W: durable copies needed before an upload succeeds (1 to R) [default: min(2, R)]', min: 1, max: 16}),
    'node-timeout': durationFlag({default: '10s', description: 'a node silent this long is marked dead and its chunks are re-replicated'}),
    'repair-interval': durationFlag({default: '5s', description: 'how often the repair loop looks for under-replicated chunks'}),
    'upload-expiry': durationFlag({default: '24h', description: 'unfinished uploads (CLI and tus) are forgotten this long after they began, and their chunks deleted; tus then answers 410'}),
    'max-connections-per-address': Flags.integer({description: 'open HTTP connections one client address may hold (node links do not count: many nodes may share an address behind NAT)', default: 256, min: 1}),
    'max-node-links-per-address': Flags.integer({description: 'node links one address may hold', default: 16_384, min: 1}),
    rebalance: Flags.boolean({description: 'move copies from the fullest nodes to the emptiest while nothing needs repair (see `chunky rebalance`)', default: true, allowNo: true}),
    secret: Flags.string({description: 'cluster secret (then CHUNKY_SECRET) [default: DATA_DIR/token, created if missing]', helpValue: '<secret>', exclusive: ['secret-file', 'token']}),
    'secret-file': Flags.string({description: 'read the cluster secret from the first line of this file', helpValue: '<file>', exclusive: ['secret', 'token']}),
    token: Flags.string({description: 'the old name of --secret, still accepted', helpValue: '<secret>', exclusive: ['secret', 'secret-file']}),
    'tls-cert': Flags.string({description: 'serve HTTPS/WSS with this certificate (PEM; with --tls-key)', helpValue: '<file>'}),
    'tls-key': Flags.string({description: 'private key of --tls-cert (PEM)', helpValue: '<file>'}),
    meta: Flags.string({
      description: 'where the metadata lives: sqlite:DIR (the --data-dir) or a postgres:// URL (several masters on one database: one leads, the others stand by; a URL may name several hosts, h1,h2, and the writable one is used)',
      helpValue: '<url>',
      env: 'CHUNKY_META',
    }),
    'public-url': Flags.string({description: 'the URL nodes and clients reach this master at (a standby tells them the leader\'s) [default: http(s)://HOST:PORT]', helpValue: '<url>', parse: async (input) => httpUrl(input)}),
    'log-level': logLevelFlag,
    config: configFlag,
  }

  async run(): Promise<void> {
    const argv = await argvWithConfigFile(this.argv, Master.flags, [{flags: ['secret', 'secret-file', 'token'], env: 'CHUNKY_SECRET'}])
    const {flags} = await this.parse(Master, argv).catch((err: unknown) => {
      throw inConfigFile(err, argv)
    })
    const replicas = flags.replicas
    const minReplicas = flags['min-replicas'] ?? Math.min(2, replicas)
    if (minReplicas > replicas) {
      throw new UsageError(`--min-replicas ${minReplicas} is more than --replicas ${replicas}: W must be between 1 and R (see \`chunky master --help\`)`)
    }
    const meta = metaLocation(flags.meta, flags['data-dir'])
    const tls = await readTlsFiles(flags['tls-cert'], flags['tls-key'])
    const token = await resolveMasterSecret({
      dataDir: flags['data-dir'],
      secret: flags.secret,
      secretFile: flags['secret-file'],
      token: flags.token,
      envSecret: process.env.CHUNKY_SECRET,
    })
    // Log lines wait until the `listening on` line is out (SPEC.md: plain text lines first).
    const logger = createDaemonLogger({level: flags['log-level'], base: {role: 'master'}})
    const master = await startMaster({
      host: flags.host,
      port: flags.port,
      dataDir: flags['data-dir'],
      replicas,
      minReplicas,
      nodeTimeoutMs: flags['node-timeout'],
      repairIntervalMs: flags['repair-interval'],
      uploadExpiryMs: flags['upload-expiry'],
      rebalance: flags.rebalance,
      limits: {maxConnectionsPerPeer: flags['max-connections-per-address'], maxNodeLinksPerPeer: flags['max-node-links-per-address']},
      token: token.token,
      tls,
      log: logger.log,
      meta,
      advertise: (port) => flags['public-url'] ?? (tls ? advertisedUrl(flags.host, port).replace(/^http:/, 'https:') : advertisedUrl(flags.host, port)),
    }).catch((err: unknown) => {
      logger.release() // what it logged before failing still counts
      throw err
    })
    const scheme = (url: string) => (tls ? url.replace(/^http:/, 'https:') : url)
    const url = scheme(advertisedUrl(flags.host, master.port))
    const credentials = deriveCredentials(token.token)
    const ca = tls ? ' --ca <your CA file>' : ''
    if (token.source === 'generated') this.log(`new cluster secret saved in ${token.path} (mode 0600)`)
    if (token.source === 'file') this.log(`cluster secret loaded from ${token.path}`)
    if (token.source === 'flag') this.log(`cluster secret from ${token.via}`)
    const bin = invokedAs(this.config.bin)
    this.log(`join a node:  CHUNKY_NODE_TOKEN=${credentials.node} ${bin} node --master ${url}${ca}`)
    this.log(`clients:      export CHUNKY_MASTER=${url} CHUNKY_TOKEN=${credentials.rw}${tls ? ' CHUNKY_CA=<your CA file>' : ''}`)
    this.log(`read-only:    CHUNKY_TOKEN=${credentials.ro}`)
    // the read-only credential in the fragment, as the demo prints it: the page reads it and drops it from the address bar
    this.log(`dashboard:    ${url}/#token=${credentials.ro}  (open it in a browser: the link logs in read-only)`)
    this.log(`listening on ${scheme(listenUrl(flags.host, master.port))}`)
    logger.release()

    await untilAborted(this.interrupt.signal)
    logger.log.info({event: 'master.stopping'}, 'shutting down')
    await master.close()
    this.exit(0)
  }
}

/** --meta: undefined for the data dir's SQLite; a postgres:// URL as given; anything else is refused. */
function metaLocation(meta: string | undefined, dataDir: string): string | undefined {
  if (meta === undefined || meta === '') return undefined
  if (/^postgres(ql)?:\/\//.test(meta)) return meta
  if (meta.startsWith('sqlite:')) {
    const dir = meta.slice('sqlite:'.length)
    if (dir !== '' && dir !== dataDir) throw new UsageError(`--meta ${meta}: SQLite metadata lives in the --data-dir (${dataDir}); give --data-dir ${dir} instead`)
    return undefined
  }
  throw new UsageError(`--meta ${meta} is neither sqlite:DIR nor a postgres://USER@HOST/DB URL (see \`chunky master --help\`)`)
}
