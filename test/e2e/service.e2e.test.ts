import type {ChildProcess} from 'node:child_process'
import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, expect, it} from 'vitest'
import {deriveCredentials, StatusDoc} from '../../src/protocol/index.js'
import {killAll, ROOT, runCli, startDaemon, tempDir, waitFor} from './harness.js'

// docs/systemd/*.service: the ExecStart= lines run as written (the binary, paths and addresses
// swapped for this machine's temporary ones), and SIGTERM, what `systemctl stop` sends, ends both
// daemons with exit status 0.
let dir: {path: string; remove: () => Promise<void>}
const SECRET = 'service-test-secret-0123456789'

beforeAll(async () => {
  dir = await tempDir('chunky-service-')
})

afterAll(async () => {
  await killAll()
  await dir?.remove()
})

/** The ExecStart= arguments of a unit file, after `chunky`. */
async function execStart(unit: string): Promise<string[]> {
  const text = await readFile(join(ROOT, 'docs/systemd', unit), 'utf8')
  const line = text.split('\n').find((l) => l.startsWith('ExecStart='))!
  const [binary, ...args] = line.slice('ExecStart='.length).trim().split(/\s+/)
  expect(binary).toBe('/usr/local/bin/chunky')
  return args
}

function exitOf(child: ChildProcess): Promise<{code: number | null; signal: NodeJS.Signals | null}> {
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({code, signal})))
}

it('the documented units start a master and a node, and SIGTERM stops each with exit 0', async () => {
  const credentials = join(dir.path, 'credentials')
  await mkdir(credentials, {mode: 0o700})
  await writeFile(join(credentials, 'secret'), `${SECRET}\n`, {mode: 0o600})
  await writeFile(join(credentials, 'node-token'), `${deriveCredentials(SECRET).node}\n`, {mode: 0o600})
  const local = (args: string[], swaps: Record<string, string>) =>
    args.map((arg) => arg.replace('${CREDENTIALS_DIRECTORY}', credentials)).map((arg) => swaps[arg] ?? arg)

  const masterArgs = local(await execStart('chunky-master.service'), {
    '0.0.0.0': '127.0.0.1', '7400': '0', '/var/lib/chunky/master': join(dir.path, 'master'),
  })
  expect(masterArgs).toContain('--secret-file')
  const master = await startDaemon(masterArgs)
  expect(master.output()).toContain(`cluster secret from --secret-file ${join(credentials, 'secret')}`)

  const nodeArgs = local(await execStart('chunky-node.service'), {
    'http://master.example:7400': master.url, '0.0.0.0': '127.0.0.1', '7401': '0', '/var/lib/chunky/node': join(dir.path, 'node'),
  })
  expect(nodeArgs).toContain('--token-file')
  // --public-url names the machine the unit is for; here the node is reached where it listens
  const node = await startDaemon(nodeArgs.filter((a, i, all) => a !== '--public-url' && all[i - 1] !== '--public-url'))
  const status = async () => {
    const result = await runCli(['status', '--json'], {CHUNKY_MASTER: master.url, CHUNKY_TOKEN: deriveCredentials(SECRET).ro})
    return StatusDoc.parse(JSON.parse(result.stdout))
  }
  await waitFor('the node alive in the master', async () => (await status()).nodes.some((n) => n.zone === 'eu-west' && n.state === 'alive'), 15_000)

  const nodeExit = exitOf(node.child)
  node.child.kill('SIGTERM')
  expect(await nodeExit).toEqual({code: 0, signal: null})
  const masterExit = exitOf(master.child)
  master.child.kill('SIGTERM')
  expect(await masterExit).toEqual({code: 0, signal: null})
}, 60_000)
