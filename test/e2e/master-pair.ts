import {join} from 'node:path'
import {startPostgres, type PostgresServer} from '../../scripts/postgres-server.mjs'
import {MasterHealth} from '../../src/protocol/index.js'
import {startDaemon, tempDir, TOKEN, waitFor, type Daemon} from './harness.js'

export interface MasterPair {
  pg: PostgresServer
  dir: {path: string; remove: () => Promise<void>}
  /** CHUNKY_MASTER (both masters) and CHUNKY_TOKEN for the CLI. */
  env: Record<string, string>
  /** Starts master i again on its data dir; `port` brings it back on its old address. */
  startMaster: (i: number, port?: string) => Promise<Daemon>
}

/**
 * Two masters on one throwaway PostgreSQL, the first one leading, and nodes n1-n3 following both
 * (R=2, 200 ms heartbeats). `masters` and `nodes` are filled in place, index i being master i.
 */
export async function startMasterPair(opts: {nodeTimeoutMs: number; masters: Daemon[]; nodes?: Daemon[]}): Promise<MasterPair> {
  const pg = await startPostgres()
  const dir = await tempDir()
  const masterArgs = [0, 1].map((i) => ['master', '--port', '0', '--data-dir', join(dir.path, `master${i}`), '--token', TOKEN, '--meta', pg.url,
    '--node-timeout', `${opts.nodeTimeoutMs}ms`, '--repair-interval', '300ms', '--replicas', '2'])
  const startMaster = async (i: number, port = '0'): Promise<Daemon> => {
    const args = masterArgs[i]!.map((a, k) => (masterArgs[i]![k - 1] === '--port' ? port : a))
    opts.masters[i] = await startDaemon(args)
    return opts.masters[i]!
  }
  const first = await startMaster(0)
  await waitFor('the first master to lead', async () => {
    const res = await fetch(`${first.url}/healthz`, {signal: AbortSignal.timeout(1000)}).catch(() => undefined)
    return res !== undefined && MasterHealth.parse(await res.json()).role === 'leader'
  })
  await startMaster(1)
  const list = opts.masters.map((m) => m.url).join(',')
  for (const id of ['n1', 'n2', 'n3']) {
    const node = await startDaemon(['node', '--master', list, '--port', '0', '--id', id, '--zone', id, '--data-dir', join(dir.path, id), '--token', TOKEN, '--heartbeat-interval', '200ms'])
    opts.nodes?.push(node)
  }
  return {pg, dir, env: {CHUNKY_MASTER: list, CHUNKY_TOKEN: TOKEN}, startMaster}
}
