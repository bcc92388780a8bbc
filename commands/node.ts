import {Flags} from '@oclif/core'
import {ChunkyCommand} from '../src/cli/base-command.js'
import {listenUrl, untilAborted} from '../src/cli/daemon.js'
import {UsageError} from '../src/cli/failure.js'
import {argvWithConfigFile, configFlag, inConfigFile} from '../src/cli/daemon-config.js'
import {durationFlag, httpUrl, httpUrls, logLevelFlag, sizeFlag} from '../src/cli/flags.js'
import {resolveNodeToken} from '../src/cli/secrets.js'
import {readCa, readTlsFiles, trustCa} from '../src/cli/tls-files.js'
import {startNode, type LinkRefusal} from '../src/node/index.js'
import {ChunkyError, DEFAULT_CHUNK_SIZE, DEFAULT_NODE_PORT, NodeId, Zone} from '../src/protocol/index.js'
import {createDaemonLogger} from '../src/telemetry/logger.js'

export default class StorageNode extends ChunkyCommand {
  static override summary = 'Run a storage node: keeps chunk bytes on its disk, linked to the master'
  static override description = `A node connects to the master over WebSocket (and reconnects by itself), serves and stores chunk bytes over HTTP, forwards writes down the replica chain, re-hashes its chunks in the background (scrubbing), and copies chunks from other nodes when the master asks it to repair.

Its id is kept in --data-dir (made up the first time unless --id is given). --public-url is the address others use to reach it, when that is not http://HOST:PORT (behind a proxy or NAT). It prints "listening on http://HOST:PORT" once it accepts connections.

Its credential is the node credential (node-…) from the join command \`chunky master\` prints (the cluster secret works too), from --token-file, --token or CHUNKY_NODE_TOKEN (never CHUNKY_TOKEN, which is the clients'). A client credential (rw-…, ro-…), or one the master refuses, stops the node with exit 1 and the reason instead of retrying. Every flag can also come from a JSON file named by --config ({"master": "http://10.0.0.5:7400", "data-dir": "/srv/chunky", "token-file": "/etc/chunky/node-token", "cors-origin": ["https://app.example"], …}: the keys are the flag names). Each setting comes from its flag, else its environment variable (CHUNKY_MASTER, CHUNKY_NODE_TOKEN, CHUNKY_CA, CHUNKY_LOG_LEVEL), else the file, else the default. With --tls-cert and --tls-key it serves HTTPS; --ca (or CHUNKY_CA) names a private CA to trust for the master and the other nodes.`

  static override examples = [
    {description: 'Join the master running on this machine', command: 'CHUNKY_NODE_TOKEN=node-… <%= config.bin %> <%= command.id %> --master http://127.0.0.1:7400'},
    {description: 'A second node on the same machine, in another zone', command: '<%= config.bin %> <%= command.id %> --master http://127.0.0.1:7400 --port 7402 --data-dir .chunky/node2 --zone b'},
    {description: 'A node on another machine, reachable at its LAN address', command: '<%= config.bin %> <%= command.id %> --master http://10.0.0.5:7400 --host 0.0.0.0 --public-url http://10.0.0.7:7401 --zone rack-2'},
  ]

  static override flags = {
    master: Flags.string({description: 'address of the master, or of several (A,B: the node links to the leader and follows it)', env: 'CHUNKY_MASTER', required: true, helpValue: '<url[,url]>', parse: async (input) => httpUrls(input)}),
    host: Flags.string({description: 'address to listen on (0.0.0.0 for every interface)', default: '127.0.0.1'}),
    port: Flags.integer({description: 'port to listen on (0 to 65535; 0 picks a free one)', default: DEFAULT_NODE_PORT, min: 0, max: 65535}),
    'public-url': Flags.string({description: 'the URL the master, clients and other nodes use to reach this node [default: http://HOST:PORT]', helpValue: '<url>', parse: async (input) => httpUrl(input)}),
    id: Flags.string({description: 'node id [default: the one saved in DATA_DIR, else a new one]', parse: async (input) => check(NodeId, input, 'id')}),
    zone: Flags.string({description: 'failure zone (rack, room, region): replicas are spread over zones', default: '', parse: async (input) => check(Zone, input, 'zone')}),
    'data-dir': Flags.string({description: 'where chunk bytes live', default: '.chunky/node'}),
    'heartbeat-interval': durationFlag({default: '2s', description: 'how often the node tells the master it is alive'}),
    'scrub-interval': durationFlag({default: '24h', description: 'how often every stored chunk is re-hashed to find rotten bytes'}),
    token: Flags.string({description: 'node credential (node-…; `chunky master` prints it in its join command) (then CHUNKY_NODE_TOKEN)', env: 'CHUNKY_NODE_TOKEN', helpValue: '<token>'}),
    'token-file': Flags.string({description: 'read the node credential from the first line of this file (keeps it out of `ps`; wins over --token)', helpValue: '<file>'}),
    'tls-cert': Flags.string({description: 'serve HTTPS with this certificate (PEM; with --tls-key)', helpValue: '<file>'}),
    'tls-key': Flags.string({description: 'private key of --tls-cert (PEM)', helpValue: '<file>'}),
    ca: Flags.string({description: 'trust this CA certificate (PEM) for the master and other nodes, besides the system\'s', env: 'CHUNKY_CA', helpValue: '<file>'}),
    'log-level': logLevelFlag,
    'cors-origin': Flags.string({description: 'let web pages from this origin (https://app.example, or * for any) play files from this node with fetch() (repeatable)', multiple: true, helpValue: '<origin>'}),
    'tus-memory': sizeFlag({default: '256MiB', min: DEFAULT_CHUNK_SIZE, description: 'the most bytes of tus uploads (browser uploads) this node holds in memory at once, all uploads together (each PATCH holds its 2 MiB of write batches); a PATCH with no room waits (at least 10MiB)'}),
    config: configFlag,
  }

  async run(): Promise<void> {
    const argv = await argvWithConfigFile(this.argv, StorageNode.flags, [{flags: ['token', 'token-file'], env: 'CHUNKY_NODE_TOKEN'}])
    const {flags} = await this.parse(StorageNode, argv).catch((err: unknown) => {
      throw inConfigFile(err, argv)
    })
    const token = await resolveNodeToken({token: flags.token, tokenFile: flags['token-file']})
    if (!token) {
      throw new UsageError('a node needs the node credential: pass --token-file or --token, or set CHUNKY_NODE_TOKEN (`chunky master` prints it in its join command)')
    }
    const tls = await readTlsFiles(flags['tls-cert'], flags['tls-key'])
    const ca = flags.ca === undefined ? undefined : await readCa(flags.ca)
    if (ca) trustCa(ca) // the chain push to the next node goes through the global agent too
    // Log lines wait until the `listening on` line is out (SPEC.md: plain text lines first).
    const logger = createDaemonLogger({level: flags['log-level'], base: {role: 'node'}})
    let refused: {reason: string; why: LinkRefusal} | undefined
    const node = await startNode({
      masterUrl: flags.master,
      host: flags.host,
      port: flags.port,
      publicUrl: flags['public-url'],
      id: flags.id,
      zone: flags.zone,
      dataDir: flags['data-dir'],
      heartbeatIntervalMs: flags['heartbeat-interval'],
      scrubIntervalMs: flags['scrub-interval'],
      token,
      tls,
      // The master refused the credential (401/403) or the id: retrying cannot help, so stop and say why (exit 1).
      onLinkRefused: (reason, why) => {
        refused = {reason, why}
        this.interrupt.abort()
      },
      ca,
      log: logger.log,
      corsOrigins: flags['cors-origin'],
      tusMemoryBytes: flags['tus-memory'],
    }).catch((err: unknown) => {
      logger.release() // what it logged before failing still counts
      throw err
    })
    const listening = listenUrl(flags.host, node.port)
    this.log(`listening on ${tls ? listening.replace(/^http:/, 'https:') : listening}`)
    logger.release()
    await untilAborted(this.interrupt.signal)
    logger.log.info({event: 'node.stopping', nodeId: node.id}, `node ${node.id} shutting down`)
    await node.close()
    if (refused?.why === 'credential') {
      throw new ChunkyError('UNAUTHORIZED', `${refused.reason}: give the node its node credential (node-…) from the join command \`chunky master\` prints`)
    }
    if (refused?.why === 'id-in-use') throw new ChunkyError('NODE_ID_IN_USE', refused.reason)
    this.exit(0)
  }
}

function check(schema: typeof NodeId | typeof Zone, input: string, what: string): string {
  const result = schema.safeParse(input)
  if (!result.success) throw new Error(`"${input}" is not a valid ${what}: ${result.error.issues[0]?.message ?? 'bad value'}`)
  return result.data
}
