import {chmod, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {deriveCredentials, StatusDoc} from '../../src/protocol/index.js'
import {killAll, runCli, startDaemon, tempDir, waitFor, type Daemon} from './harness.js'

// SPEC.md "Operating a cluster": the master's secret, a node's credential and a client's are kept
// apart. The bug this pins: a shell with `export CHUNKY_TOKEN=rw-…` (what the master tells clients to
// run) silently re-keyed the cluster when the master was restarted in it.

let dir: {path: string; remove: () => Promise<void>}
const started: Daemon[] = []

beforeAll(async () => {
  dir = await tempDir('chunky-secrets-')
})

afterAll(async () => {
  await Promise.all(started.map((d) => d.kill9()))
  await killAll()
  await dir?.remove()
})

async function status(master: string, token: string): Promise<StatusDoc> {
  const result = await runCli(['status', '--json'], {CHUNKY_MASTER: master, CHUNKY_TOKEN: token})
  if (result.code !== 0) throw new Error(`status exited ${result.code}: ${result.stderr}`)
  return StatusDoc.parse(JSON.parse(result.stdout))
}

describe.concurrent('the master\'s secret', () => {
  it('ignores CHUNKY_TOKEN: a client credential in the shell does not re-key the cluster', async () => {
    const dataDir = join(dir.path, 'm-env')
    const first = await startDaemon(['master', '--port', '0', '--data-dir', dataDir])
    started.push(first)
    const secret = (await readFile(join(dataDir, 'token'), 'utf8')).trim()
    const creds = deriveCredentials(secret)
    await first.stop()
    // The restart happens in a shell that exported what the master told clients to export.
    const again = await startDaemon(['master', '--port', '0', '--data-dir', dataDir], 20_000, {CHUNKY_TOKEN: creds.rw})
    started.push(again)
    expect(again.output()).toContain(`cluster secret loaded from ${join(dataDir, 'token')}`)
    expect((await status(again.url, creds.ro)).summary.nodes).toBe(0) // the old credentials still work
    await again.stop()
  })

  it.each([
    [['--secret', deriveCredentials('s').rw], {}, /^chunky: --secret is a client credential \(rw-…\), not a cluster secret: /],
    [['--token', deriveCredentials('s').node], {}, /^chunky: --token is a node credential \(node-…\), not a cluster secret: /],
    [[], {CHUNKY_SECRET: deriveCredentials('s').ro}, /^chunky: CHUNKY_SECRET is a client credential \(ro-…\), not a cluster secret: /],
  ] as const)('refuses a derived credential as its secret: %j %j', async (args, env, message) => {
    const dataDir = join(dir.path, `m-refuse-${args[0] ?? 'env'}`)
    const result = await runCli(['master', '--port', '0', '--data-dir', dataDir, ...args], env, 20_000)
    expect(result.code).toBe(1)
    expect(result.stdout).toBe('')
    expect(result.stderr.trim().split('\n')).toHaveLength(1)
    expect(result.stderr).toMatch(message)
  })

  it('refuses a missing --secret-file with one line', async () => {
    const result = await runCli(['master', '--port', '0', '--data-dir', join(dir.path, 'm-nofile'), '--secret-file', join(dir.path, 'nope')])
    expect(result.code).toBe(1)
    expect(result.stderr).toBe(`chunky: cannot read --secret-file ${join(dir.path, 'nope')}: no such file\n`)
  })
})

describe('a cluster keyed from files, and nodes with the wrong credential', () => {
  let master: Daemon
  let creds: ReturnType<typeof deriveCredentials>

  beforeAll(async () => {
    const secretFile = join(dir.path, 'secret')
    await writeFile(secretFile, 'files-cluster-secret-0123456789\n')
    await chmod(secretFile, 0o600)
    creds = deriveCredentials('files-cluster-secret-0123456789')
    // CHUNKY_TOKEN in the environment too: the file wins, the variable is never the secret.
    master = await startDaemon(['master', '--port', '0', '--data-dir', join(dir.path, 'm-files'), '--secret-file', secretFile, '--node-timeout', '2s'], 20_000,
      {CHUNKY_TOKEN: creds.rw})
    started.push(master)
    expect(master.output()).toContain(`cluster secret from --secret-file ${secretFile}`)
    expect(master.output()).toMatch(new RegExp(`join a node: +CHUNKY_NODE_TOKEN=${creds.node} \\S+ node --master ${master.url}`))
    // the dashboard link logs in read-only by itself, as the demo's does
    expect(master.output()).toContain(`dashboard:    ${master.url}/#token=${creds.ro}  (open it in a browser`)
  })

  it('a node joins with --token-file, and with CHUNKY_NODE_TOKEN', async () => {
    const tokenFile = join(dir.path, 'node-token')
    await writeFile(tokenFile, `${creds.node}\n`, {mode: 0o600})
    const byFile = await startDaemon(['node', '--master', master.url, '--port', '0', '--id', 'f1', '--data-dir', join(dir.path, 'f1'), '--token-file', tokenFile, '--heartbeat-interval', '200ms'])
    started.push(byFile)
    // CHUNKY_TOKEN (a client's) is set as well and must not be what the node uses.
    const byEnv = await startDaemon(['node', '--master', master.url, '--port', '0', '--id', 'f2', '--data-dir', join(dir.path, 'f2'), '--heartbeat-interval', '200ms'], 20_000,
      {CHUNKY_NODE_TOKEN: creds.node, CHUNKY_TOKEN: creds.rw})
    started.push(byEnv)
    await waitFor('both nodes alive', async () => (await status(master.url, creds.ro)).nodes.filter((n) => n.state === 'alive').length === 2, 15_000)
  })

  it('a second node with the id of a connected one exits 1 saying so (not blaming its credential), and the first stays', async () => {
    const result = await runCli(['node', '--master', master.url, '--port', '0', '--id', 'f1', '--data-dir', join(dir.path, 'f1-copy'), '--token', creds.node], {}, 20_000)
    expect(result.code).toBe(1)
    const lines = result.stderr.trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/^chunky: .*node id f1 is in use by a connected node: give this node another --id \(or its own --data-dir\)$/)
    expect((await status(master.url, creds.ro)).nodes.find((n) => n.id === 'f1')).toMatchObject({state: 'alive'})
  })

  it('a node given a client credential exits 1 with the reason, before trying', async () => {
    const result = await runCli(['node', '--master', master.url, '--port', '0', '--id', 'c1', '--data-dir', join(dir.path, 'c1'), '--token', creds.rw], {}, 20_000)
    expect(result.code).toBe(1)
    expect(result.stderr).toBe('chunky: this is a client credential (rw-…): nodes join with the node credential (node-…) from the join command `./bin/run.js master` prints\n')
  })

  it('a node the master refuses (a credential of another cluster) exits 1 with the reason instead of retrying', async () => {
    const started = Date.now()
    const result = await runCli(
      ['node', '--master', master.url, '--port', '0', '--id', 'w1', '--data-dir', join(dir.path, 'w1'), '--token', deriveCredentials('another cluster').node],
      {}, 20_000,
    )
    expect(result.code).toBe(1)
    expect(Date.now() - started).toBeLessThan(15_000)
    const lines = result.stderr.trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/^chunky: the master refused this node's link \(HTTP 401: wrong credential: .*\): give the node its node credential \(node-…\)/)
    expect((await status(master.url, creds.ro)).nodes.map((n) => n.id)).not.toContain('w1')
  })
})
