import {Args, Flags} from '@oclif/core'
import {setTimeout as sleep} from 'node:timers/promises'
import {ChunkyCommand} from '../src/cli/base-command.js'
import {clientFlags, durationFlag, fileName} from '../src/cli/flags.js'
import {checkHealth, UNHEALTHY_EXIT} from '../src/cli/health.js'
import {renderStatus} from '../src/cli/status-view.js'
import {getStatus, InterruptedError} from '../src/client/index.js'
import {ChunkyError, type StatusDoc} from '../src/protocol/index.js'
import {formatDuration} from '../src/util/parse.js'

export default class Status extends ChunkyCommand {
  static override summary = 'Show the version report: nodes, files, and each chunk\'s version on each node'
  static override description = `Without NAME: every node (zone, alive or dead, when it was last heard from, chunks and bytes it holds) and every file (size, chunks, the lowest count of fresh copies over its chunks).

With NAME: a grid of that file's chunks by node. Each cell is the version that node holds: "v2" is fresh, "v1 stale" is older than the master's version, "v2 CORRUPT" no longer matches its SHA-256, "-" means no copy. The summary line counts under-replicated (fewer than R fresh copies on alive nodes), stale and corrupt chunks; the cluster repairs them by itself.`

  static override examples = [
    {description: 'The whole cluster', command: '<%= config.bin %> <%= command.id %>'},
    {description: 'One file, chunk by node', command: '<%= config.bin %> <%= command.id %> talks/2026/keynote.mp4'},
    {description: 'Watch a node come back and its stale copies get repaired (Ctrl-C to stop)', command: '<%= config.bin %> <%= command.id %> talks/2026/keynote.mp4 --watch --interval 500ms'},
    {description: 'For scripts (the document SPEC.md describes)', command: '<%= config.bin %> <%= command.id %> --json'},
    {description: 'For cron and monitors: exit 0 healthy, 3 unhealthy (one line on stderr says what), 1 cannot ask', command: '<%= config.bin %> <%= command.id %> --check'},
  ]

  static override enableJsonFlag = true
  static override args = {name: Args.string({description: 'a file to show chunk by chunk', required: false, parse: fileName})}
  static override flags = {
    ...clientFlags,
    watch: Flags.boolean({description: 'redraw every --interval until Ctrl-C', exclusive: ['json', 'check']}),
    check: Flags.boolean({description: 'health check: exit 0 when healthy, 3 when a node is dead or a chunk is under-replicated, stale or corrupt (one line on stderr says what), 1 when the master cannot be asked'}),
    interval: durationFlag({default: '1s', description: 'time between redraws with --watch'}),
  }

  async run(): Promise<StatusDoc | undefined> {
    const {args, flags} = await this.parse(Status)
    const {master, token} = await this.clientSettings(flags)
    const conn = {master, token, signal: this.interrupt.signal}
    if (flags.check) {
      const doc = await getStatus(conn, args.name)
      const health = checkHealth(doc)
      if (health.healthy) {
        if (!this.jsonEnabled()) this.log(health.line)
        return doc
      }
      // exit() skips oclif's printing of what run() returns: the document goes out here
      if (this.jsonEnabled()) process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`)
      process.stderr.write(`chunky: ${health.line}\n`)
      return this.exit(UNHEALTHY_EXIT)
    }
    if (!flags.watch) {
      const doc = await getStatus(conn, args.name)
      if (!this.jsonEnabled()) this.log(renderStatus(doc, args.name))
      return doc
    }
    const signal = this.interrupt.signal
    while (!signal.aborted) {
      let text: string
      try {
        text = renderStatus(await getStatus(conn, args.name), args.name)
      } catch (err) {
        if (err instanceof InterruptedError || signal.aborted) break
        // The master restarting is exactly what one watches for: say so and keep watching.
        if (!(err instanceof ChunkyError && err.code === 'MASTER_UNREACHABLE')) throw err
        text = err.message
      }
      if (process.stdout.isTTY) process.stdout.write('\u001B[2J\u001B[H') // clear the screen, cursor home
      this.log(`${new Date().toLocaleTimeString()}  every ${formatDuration(flags.interval)}, Ctrl-C to stop\n\n${text}\n`)
      await sleep(flags.interval, undefined, {signal}).catch(() => {})
    }
    return undefined // Ctrl-C is how --watch ends: exit 0
  }
}
