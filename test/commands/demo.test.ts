import {spawn} from 'node:child_process'
import {existsSync} from 'node:fs'
import {beforeAll, expect, it} from 'vitest'
import {waitFor} from '../poll.js'
import {assertBuilt, BIN, runCli} from './run-cli.js'

// A smoke run of `chunky demo` (real master and nodes as child processes), and its cleanup on Ctrl-C.

beforeAll(() => assertBuilt())

it('tells the whole story, passes every check, and removes its folder', async () => {
  const result = await runCli(['demo'], {}, 90_000)
  expect(result.code, result.stderr).toBe(0)
  expect(result.stdout).toMatch(/committed in .* 3 chunks sent/)
  expect(result.stdout).toMatch(/1 chunk sent, 2 already stored/)
  expect(result.stdout).toMatch(/healed .* after n3 came back/)
  expect(result.stdout).toContain('all checks passed')
  const dir = /in (\/\S+chunky-demo-\S+)/.exec(result.stdout)?.[1]
  expect(dir).toBeDefined()
  expect(existsSync(dir!)).toBe(false)
}, 90_000)

it('on Ctrl-C stops its daemons, removes its folder and exits 130', async () => {
  const child = spawn(process.execPath, [BIN, 'demo'], {stdio: ['ignore', 'pipe', 'pipe'], env: {...process.env, NO_COLOR: '1'}})
  let stdout = ''
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no upload step in time:\n${stdout}`)), 30_000)
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString()
      if (stdout.includes('3. uploading')) {
        clearTimeout(timer)
        resolve()
      }
    })
  })
  const ports = [...stdout.matchAll(/listening on http:\/\/127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1]))
  expect(ports).toHaveLength(4) // master and three nodes were up
  child.kill('SIGINT')
  expect(await exited).toBe(130)
  const dir = /in (\/\S+chunky-demo-\S+)/.exec(stdout)![1]!
  expect(existsSync(dir)).toBe(false)
  for (const port of ports) {
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow() // nothing listens any more
  }
}, 60_000)

it('with --keep: its dashboard answers while the link is printed, and the cluster can be used from another shell as it says', async () => {
  const child = spawn(process.execPath, [BIN, 'demo', '--keep'], {stdio: ['ignore', 'pipe', 'pipe'], env: {...process.env, NO_COLOR: '1'}})
  let stdout = ''
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve))
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  try {
    const dashboard = await waitFor('the dashboard line', () => /dashboard: (http:\/\/127\.0\.0\.1:\d+)\/#token=ro-/.exec(stdout)?.[1], 30_000)
    expect((await fetch(`${dashboard}/`)).status).toBe(200)
    const use = await waitFor('the --keep lines', () => /export CHUNKY_MASTER=(\S+) CHUNKY_TOKEN=(rw-\S+), then `\.\/bin\/run\.js status`/.exec(stdout) ?? undefined, 90_000)
    const status = await runCli(['status', '--check'], {CHUNKY_MASTER: use[1]!, CHUNKY_TOKEN: use[2]!})
    expect(status.code, status.stderr).toBe(0)
  } finally {
    child.kill('SIGINT')
  }
  expect(await exited).toBe(0) // Ctrl-C is how a kept demo ends, after every check passed
  expect(existsSync(/in (\/\S+chunky-demo-\S+)/.exec(stdout)![1]!)).toBe(false)
}, 120_000)

