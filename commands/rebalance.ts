import {Flags} from '@oclif/core'
import {ChunkyCommand} from '../src/cli/base-command.js'
import {clientFlags} from '../src/cli/flags.js'
import {getBalance, waitForBalance} from '../src/client/index.js'
import type {BalanceReport} from '../src/protocol/index.js'
import {formatBytes} from '../src/util/parse.js'

export default class Rebalance extends ChunkyCommand {
  static override summary = 'Show how evenly the nodes are filled; with --wait, wait until the master has evened them out'
  static override description = `The master moves chunk copies by itself, in the background, from the fullest nodes to the emptiest until every node's fill is within 10 % of the mean (plus two chunks' worth), a few transfers at a time and only while nothing needs repair. A node that joins empty is filled this way over time. A move copies, verifies and records the new copy before it deletes the old one, so a crash at any point loses nothing. A node's fill is the bytes of the committed copies it holds ÷ its capacity (used + free): copies of uploads not yet committed, or kept for a resume until the upload expires, take space but cannot move. This command only shows it; \`chunky master --no-rebalance\` turns it off.

--json prints {"enabled", "balanced", "meanFill", "band", "nodes": [{"id", "fill", "committedBytes", "usedBytes", "freeBytes", "outOfBand"}], "moving", "moved", "waiting"?}.`
  static override examples = [
    {description: 'How full each node is', command: '<%= config.bin %> <%= command.id %>'},
    {description: 'After adding a node: wait until it has its share', command: '<%= config.bin %> <%= command.id %> --wait'},
  ]

  static override enableJsonFlag = true
  static override flags = {
    ...clientFlags,
    wait: Flags.boolean({description: 'wait until every node is within the band and no move is running (progress on stderr); exit 0 then'}),
  }

  async run(): Promise<BalanceReport> {
    const {flags} = await this.parse(Rebalance)
    const {master, token} = await this.clientSettings(flags)
    const conn = {master, token, signal: this.interrupt.signal}
    if (!flags.wait) {
      const report = await getBalance(conn)
      if (!this.jsonEnabled()) this.log(renderBalance(report))
      return report
    }
    let last = ''
    const report = await waitForBalance(conn, (r) => {
      const line = `rebalancing: ${r.nodes.filter((n) => n.outOfBand).length} of ${r.nodes.length} nodes out of band, ${r.moving} copies moving, ${r.moved} moved${r.waiting ? ` (${r.waiting})` : ''}`
      if (!this.jsonEnabled() && line !== last) process.stderr.write(`${line}\n`)
      last = line
    })
    if (!this.jsonEnabled()) this.log(renderBalance(report))
    return report
  }
}

function renderBalance(report: BalanceReport): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`
  const rows = report.nodes.map((n) => `  ${n.id.padEnd(12)} ${pct(n.fill).padStart(7)}  ${formatBytes(n.committedBytes).padStart(10)} committed  ${formatBytes(n.usedBytes).padStart(10)} used  ${formatBytes(n.freeBytes).padStart(10)} free${n.outOfBand ? '  out of band' : ''}`)
  const head = `mean fill ${pct(report.meanFill)} ± ${pct(report.band)}: ${report.balanced ? 'balanced' : 'not balanced'}` +
    `; ${report.moving} copies moving, ${report.moved} moved since the master started${report.enabled ? '' : ' (rebalancing is off)'}` +
    (report.waiting && !report.balanced ? `; waiting: ${report.waiting}` : '')
  return [head, ...rows].join('\n')
}
