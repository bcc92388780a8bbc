import type {IncomingMessage, ServerResponse} from 'node:http'
import type {MasterContext} from '../context.js'
import {DashboardAssets} from './assets.js'
import {type LiveOptions, LiveStreams} from './live.js'
import {DashboardData, type DashboardSources} from './snapshot.js'

export {isDashboardPath} from './assets.js'
export type {LiveOptions} from './live.js'

/** The master's web dashboard: the page (no credential) and its live data stream (read credential). */
export interface Dashboard {
  /** GET / and /dashboard/<file> (isDashboardPath). */
  servePage(req: IncomingMessage, res: ServerResponse, segments: string[]): Promise<void>
  /** GET /api/live[?file=NAME], once authorized. */
  openLive(req: IncomingMessage, res: ServerResponse, file: string | undefined): void
  /** Ends the live streams (before the HTTP server closes). */
  close(): void
}

export function createDashboard(
  ctx: MasterContext,
  sources: DashboardSources,
  live: Partial<LiveOptions> = {},
): Dashboard {
  const assets = new DashboardAssets()
  const streams = new LiveStreams(new DashboardData(ctx, sources), live)
  return {
    servePage: (req, res, segments) => assets.serve(req, res, segments),
    openLive: (req, res, file) => streams.open(req, res, file),
    close: () => streams.closeAll(),
  }
}
