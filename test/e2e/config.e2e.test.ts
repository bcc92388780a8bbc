import {createServer} from 'node:net'
import {readFile, stat} from 'node:fs/promises'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {killAll, runCli, startDaemon, tempDir, TOKEN, type Daemon} from './harness.js'

// Issue 4: where client commands find the master and the token: the flag, then the environment
// (CHUNKY_MASTER, CHUNKY_TOKEN), then the config file `chunky config set` writes into oclif's config
// dir (here a temp XDG_CONFIG_HOME: the real home is never touched), then the default.
let master: Daemon
let dir: {path: string; remove: () => Promise<void>}
let closedMaster: string
let home: Record<string, string>

beforeAll(async () => {
  dir = await tempDir('chunky-config-')
  master = await startDaemon(['master', '--port', '0', '--data-dir', join(dir.path, 'master'), '--token', TOKEN])
  const server = createServer()
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
  closedMaster = `http://127.0.0.1:${(server.address() as {port: number}).port}`
  await new Promise((done) => server.close(done)) // a port nothing listens on
  home = {XDG_CONFIG_HOME: join(dir.path, 'xdg')}
})

afterAll(async () => {
  await master?.stop()
  await killAll()
  await dir?.remove()
})

const configFile = () => join(dir.path, 'xdg', 'chunky', 'config.json')

describe('chunky config', () => {
  it('path is in the config dir', async () => {
    const result = await runCli(['config', 'path'], home)
    expect(result.code, result.stderr).toBe(0)
    expect(result.stdout.trim()).toBe(configFile())
  })

  it('set writes master and token to a file only its owner can read', async () => {
    for (const [key, value] of [['master', master.url], ['token', TOKEN]]) {
      const result = await runCli(['config', 'set', key!, value!], home)
      expect(result.code, result.stderr).toBe(0)
    }
    expect((await stat(configFile())).mode & 0o777).toBe(0o600)
    expect(JSON.parse(await readFile(configFile(), 'utf8'))).toEqual({master: master.url, token: TOKEN})
    const get = await runCli(['config', 'get', 'master'], home)
    expect(get.stdout.trim()).toBe(master.url)
  })

  it('refuses a bad value with exit 2 and keeps the file', async () => {
    const result = await runCli(['config', 'set', 'master', 'not-a-url'], home)
    expect(result.code).toBe(2)
    expect(result.stderr).toMatch(/^chunky: .*not a URL/)
    expect(JSON.parse(await readFile(configFile(), 'utf8')).master).toBe(master.url)
  })
})

describe('precedence: flag, then environment, then config file', () => {
  it('the config file alone is enough', async () => {
    const result = await runCli(['ls', '--json'], home)
    expect(result.code, result.stderr).toBe(0)
    expect(JSON.parse(result.stdout)).toEqual({files: [], replicas: 3})
  })

  it('the environment beats the file', async () => {
    const master = await runCli(['ls'], {...home, CHUNKY_MASTER: closedMaster})
    expect(master.code).toBe(1)
    expect(master.stderr).toContain(`cannot reach the master at ${closedMaster}`)
    const token = await runCli(['ls'], {...home, CHUNKY_TOKEN: 'wrong-token'})
    expect(token.code).toBe(1)
    expect(token.stderr).toMatch(/refused the credential/)
  })

  it('the flag beats the environment', async () => {
    const result = await runCli(['ls', '--json', '--master', master.url, '--token', TOKEN], {...home, CHUNKY_MASTER: closedMaster, CHUNKY_TOKEN: 'wrong-token'})
    expect(result.code, result.stderr).toBe(0)
  })

  it('unset removes a setting: without a token the master asks for one', async () => {
    expect((await runCli(['config', 'unset', 'token'], home)).code).toBe(0)
    expect(JSON.parse(await readFile(configFile(), 'utf8'))).toEqual({master: master.url})
    const result = await runCli(['ls'], home)
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(/requires a credential/)
  })
})
