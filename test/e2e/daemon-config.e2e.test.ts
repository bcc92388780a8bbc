import {writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, expect, it} from 'vitest'
import {NodeInfoList, StatusDoc} from '../../src/protocol/index.js'
import {killAll, runCli, startDaemon, tempDir, TOKEN, waitFor} from './harness.js'

// `chunky master --config FILE` and `chunky node --config FILE`: each setting from its flag, else its
// environment variable, else the file, else the default.
let dir: {path: string; remove: () => Promise<void>}

beforeAll(async () => {
  dir = await tempDir('chunky-daemon-config-')
  await writeFile(join(dir.path, 'secret'), `${TOKEN}\n`, {mode: 0o600})
})

afterAll(async () => {
  await killAll()
  await dir?.remove()
}, 120_000)

async function writeJson(name: string, value: unknown): Promise<string> {
  const path = join(dir.path, name)
  await writeFile(path, JSON.stringify(value))
  return path
}

it('runs a master and a node from their config files; a flag and an environment variable win over the file', async () => {
  const masterFile = await writeJson('master.json', {
    port: 0, 'data-dir': join(dir.path, 'master'), 'secret-file': join(dir.path, 'secret'), replicas: 1, 'node-timeout': '2s', rebalance: false,
  })
  const master = await startDaemon(['master', '--config', masterFile])
  expect(master.output()).toContain(`cluster secret from --secret-file ${join(dir.path, 'secret')}`)
  const env = {CHUNKY_MASTER: master.url, CHUNKY_TOKEN: TOKEN}

  const nodeFile = await writeJson('node.json', {
    master: master.url, port: 0, id: 'cfg1', zone: 'from-file', 'data-dir': join(dir.path, 'node'), 'token-file': join(dir.path, 'secret'), 'heartbeat-interval': '200ms',
  })
  const node = await startDaemon(['node', '--config', nodeFile, '--zone', 'from-flag'])
  const nodes = await waitFor('cfg1 alive', async () => {
    const result = await runCli(['nodes', '--json'], env)
    const listed = result.code === 0 ? NodeInfoList.parse(JSON.parse(result.stdout)).nodes : []
    return listed.length === 1 && listed[0]!.alive ? listed : undefined
  })
  expect(nodes[0]).toMatchObject({id: 'cfg1', zone: 'from-flag', url: node.url}) // the flag won over the file
  const status = await runCli(['status', '--json'], env)
  expect(StatusDoc.parse(JSON.parse(status.stdout)).replicas).toBe(1) // from the file

  // CHUNKY_SECRET wins over the file's secret-file; --replicas and --data-dir over the file's
  const second = await startDaemon(['master', '--config', masterFile, '--data-dir', join(dir.path, 'master2'), '--replicas', '2'], 20_000, {CHUNKY_SECRET: 'another-cluster-secret-0123456789'})
  expect(second.output()).toContain('cluster secret from CHUNKY_SECRET')
  const secondStatus = await runCli(['status', '--json'], {CHUNKY_MASTER: second.url, CHUNKY_TOKEN: 'another-cluster-secret-0123456789'})
  expect(secondStatus.code, secondStatus.stderr).toBe(0)
  expect(StatusDoc.parse(JSON.parse(secondStatus.stdout)).replicas).toBe(2)
  await Promise.all([second.stop(), node.stop()])
  await master.stop()
}, 120_000)

it('refuses a config file it cannot use, saying what is wrong (exit 2)', async () => {
  const cases: [unknown, string][] = [
    [{prot: 7400}, 'unknown setting "prot": the keys are the command\'s flag names (see --help)'],
    [{replicas: 'three'}, 'bad value for --replicas: Expected an integer but received: three (flags not on the command line come from the config file'],
    [{rebalance: 'yes'}, '"rebalance": Invalid input: expected boolean, received string'],
  ]
  for (const [value, message] of cases) {
    const path = await writeJson('bad.json', value)
    const result = await runCli(['master', '--config', path, '--data-dir', join(dir.path, 'unused')])
    expect(result.code, result.stderr).toBe(2)
    expect(result.stderr).toContain(message)
  }
  const notJson = join(dir.path, 'not.json')
  await writeFile(notJson, 'port = 7400\n')
  const result = await runCli(['node', '--config', notJson])
  expect(result.code).toBe(2)
  expect(result.stderr).toMatch(/^chunky: the config file .*not\.json is not JSON \(.*\): write \{"flag-name": value, …\}\n$/)
  const missing = await runCli(['node', '--config', join(dir.path, 'missing.json')])
  expect(missing.code).toBe(2)
  expect(missing.stderr).toBe(`chunky: cannot read the config file ${join(dir.path, 'missing.json')} (--config): ENOENT\n`)
}, 120_000)
