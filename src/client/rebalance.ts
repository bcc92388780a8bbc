import {setTimeout as sleep} from 'node:timers/promises'
import type {BalanceReport} from '../protocol/index.js'
import {InterruptedError} from './errors.js'
import {masterApi} from './master-api.js'
import type {MasterConnection} from './operations.js'

/** How full each node is against the mean, and the rebalancing moves under way. */
export function getBalance(conn: MasterConnection): Promise<BalanceReport> {
  return masterApi(conn.master, conn.token, {signal: conn.signal}).balance()
}

/**
 * Polls until every node is within the band and no move is running (the master moves copies by itself;
 * this only watches). `onReport` sees every answer, for progress.
 */
export async function waitForBalance(conn: MasterConnection, onReport: (report: BalanceReport) => void, pollMs = 1000): Promise<BalanceReport> {
  for (;;) {
    const report = await getBalance(conn)
    onReport(report)
    if (report.balanced && report.moving === 0) return report
    try {
      await sleep(pollMs, undefined, {signal: conn.signal})
    } catch {
      throw new InterruptedError()
    }
  }
}
