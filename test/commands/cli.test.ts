import {mkdtemp, rm} from 'node:fs/promises'
import {createServer} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {beforeAll, describe, expect, it} from 'vitest'
import {assertBuilt, runCli} from './run-cli.js'

// The command-line contract of SPEC.md, checked on the built binary: help, exit codes, one-line
// errors on stderr, and nothing but one JSON document on stdout with --json.

let closedMaster: string

beforeAll(async () => {
  assertBuilt()
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  closedMaster = `http://127.0.0.1:${(server.address() as {port: number}).port}`
  await new Promise((resolve) => server.close(resolve)) // a port nothing listens on
})

const HELP: Record<string, string[]> = {
  master: ['--host', '--port', '--data-dir', '--replicas', '--min-replicas', '--node-timeout', '--repair-interval', '--token'],
  node: ['--master', '--host', '--port', '--public-url', '--id', '--zone', '--data-dir', '--heartbeat-interval', '--scrub-interval', '--token'],
  upload: ['--name', '--chunk-size', '--concurrency', '--node', '--zone', '--json', '--master', '--token'],
  download: ['-o, --output', '--json', '--master', '--token'],
  status: ['--json', '--watch', '--interval', '--check', '--master', '--token'],
  ls: ['--json', '--master'],
  rm: ['--json', '--master'],
  sync: ['DIR', '--prefix', '--delete', '--dry-run', '--json'],
  demo: ['FILE'],
}

describe.concurrent('help', () => {
  it.each(Object.entries(HELP))('chunky %s --help exits 0, lists its flags and has examples', async (command, flags) => {
    const result = await runCli([command, '--help'])
    expect(result.code).toBe(0)
    for (const flag of flags) expect(result.stdout).toContain(flag)
    expect(result.stdout).toContain('EXAMPLES')
  })

  it('chunky --help lists every command', async () => {
    const result = await runCli(['--help'])
    expect(result.code).toBe(0)
    for (const command of Object.keys(HELP)) expect(result.stdout).toMatch(new RegExp(`^\\s+${command}\\s`, 'm'))
  })
})

describe.concurrent('bad usage exits 2 with one line on stderr and nothing on stdout', () => {
  it.each([
    [['upload', 'x.mp4', '--chunk-size', '10QB'], /bad value for --chunk-size: "10QB" is not a size/],
    [['upload', 'x.mp4', '--chunk-size', '1KiB'], /too small/],
    [['master', '--node-timeout', 'soon'], /bad value for --node-timeout: "soon" is not a duration/],
    [['master', '--replicas', '2', '--min-replicas', '3'], /W must be between 1 and R/],
    [['upload', 'x.mp4', '--no-such-flag'], /no-such-flag/],
    [['upload'], /^chunky: missing FILE: .* \(see `\.\/bin\/run\.js upload --help`\)\n$/],
    [['nodes', 'drain'], /^chunky: missing ID: id of the node \(see `\.\/bin\/run\.js nodes`\) \(see `\.\/bin\/run\.js nodes drain --help`\)\n$/],
    [['upload', 'x.mp4', '--name', 'a/../b.mp4'], /"\.\." segments/],
    [['node', '--master', 'http://127.0.0.1:9'], /needs the node credential: pass --token-file or --token, or set CHUNKY_NODE_TOKEN/],
    [['status', '--watch', '--json'], /--watch/],
    [['sync', '.', '--delete'], /--delete needs --prefix/],
  ])('chunky %j', async (args, message) => {
    const result = await runCli(args)
    expect(result.code).toBe(2)
    expect(result.stderr.trim().split('\n')).toHaveLength(1)
    expect(result.stderr).toMatch(/^chunky: /)
    expect(result.stderr).toMatch(message)
    if (!args.includes('--json')) expect(result.stdout).toBe('')
  })
})

describe.concurrent('failures exit 1 with one line that says what to do', () => {
  it('upload of a missing file: clear message, empty stdout', async () => {
    const result = await runCli(['upload', 'no-such-file.mp4', '--master', closedMaster])
    expect(result.code).toBe(1)
    expect(result.stdout).toBe('')
    expect(result.stderr).toBe('chunky: cannot read no-such-file.mp4: no such file\n')
  })

  it.each([['status'], ['ls'], ['rm', 'a.mp4'], ['download', 'a.mp4', '-o', join(tmpdir(), 'a.mp4')]])(
    'chunky %s against a closed port says the master cannot be reached',
    async (...args) => {
      const result = await runCli([...args, '--master', closedMaster])
      expect(result.code).toBe(1)
      expect(result.stdout).toBe('')
      // download asks a master that does not answer a few more times (it may be restarting), and
      // says so on a line per try; the reason is the last line
      const lines = result.stderr.trimEnd().split('\n')
      for (const note of lines.slice(0, -1)) expect(note).toMatch(/^chunky: fetching the manifest: cannot reach the master at .*; try \d+ in [\d.]+s$/)
      if (args[0] !== 'download') expect(lines).toHaveLength(1)
      expect(`${lines.at(-1)}\n`).toBe(
        // hints name the binary as it was run (these tests run ./bin/run.js from the checkout)
        `chunky: cannot reach the master at ${closedMaster} (ECONNREFUSED): is \`./bin/run.js master\` running? set --master, CHUNKY_MASTER or \`./bin/run.js config set master URL\`\n`,
      )
    },
  )

  it.each([
    [['download', 'a.mp4', '-o', '/nonexistent-dir/sub/a.mp4'], 'chunky: cannot write /nonexistent-dir/sub/a.mp4: no such directory /nonexistent-dir/sub (create it first)\n'],
    [['download', 'a.mp4', '-o', '/nonexistent-dir/'], 'chunky: cannot write into /nonexistent-dir/: no such directory (create it first, or name a file with -o)\n'],
  ])('chunky %j refuses before asking anyone, naming the missing directory', async (args, message) => {
    const result = await runCli([...args, '--master', closedMaster])
    expect(result.code).toBe(1)
    expect(result.stderr).toBe(message)
  })

  it('CHUNKY_MASTER is read from the environment', async () => {
    const result = await runCli(['ls'], {CHUNKY_MASTER: closedMaster})
    expect(result.code).toBe(1)
    expect(result.stderr).toContain(closedMaster)
  })

  it('with --json, stdout is exactly one JSON document (the error) and stderr one line', async () => {
    for (const args of [['status', '--json'], ['upload', 'no-such-file.mp4', '--json']]) {
      const result = await runCli([...args, '--master', closedMaster])
      expect(result.code).toBe(1)
      const doc = JSON.parse(result.stdout) // throws if anything else is there
      expect(doc.error.code).toMatch(/MASTER_UNREACHABLE|BAD_REQUEST/)
      expect(result.stderr.trim().split('\n')).toHaveLength(1)
    }
  })
})

describe.concurrent('conventions of well-kept CLIs', () => {
  it('`help upload` and `upload -h` print the same help as `upload --help`', async () => {
    const [long, help, short] = await Promise.all([runCli(['upload', '--help']), runCli(['help', 'upload']), runCli(['upload', '-h'])])
    expect(long.code).toBe(0)
    expect(long.stdout).toContain('--concurrency=<value>  [default: 4] chunks in flight at once (1 to 32)')
    expect(help).toEqual(long)
    expect(short).toEqual(long)
  })

  it('a mistyped command gets one line naming the closest one, and exit 2', async () => {
    const result = await runCli(['uplaod', 'x.mp4'])
    expect(result.code).toBe(2)
    expect(result.stdout).toBe('')
    expect(result.stderr).toBe('chunky: "uplaod" is not a chunky command: did you mean `./bin/run.js upload`? (`./bin/run.js help` lists them)\n')
    const far = await runCli(['frobnicate'])
    expect(far.code).toBe(2)
    expect(far.stderr).toBe('chunky: "frobnicate" is not a chunky command (`./bin/run.js help` lists them)\n')
  })

  it('hints use the space form of topic commands', async () => {
    const result = await runCli(['config', 'set', 'master'])
    expect(result.code).toBe(2)
    expect(result.stderr).toMatch(/\(see `\.\/bin\/run\.js config set --help`\)\n$/)
  })

  it('hints in ordinary output name the binary as it was run, not only those in errors', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'chunky-hint-config-'))
    try {
      expect((await runCli(['config', 'set', 'token', 'rw-hint'], {CHUNKY_CONFIG_DIR: dir})).code).toBe(0)
      const result = await runCli(['config', 'get'], {CHUNKY_CONFIG_DIR: dir})
      expect(result.code, result.stderr).toBe(0)
      expect(result.stdout).toContain('token = (set; `./bin/run.js config get token` shows it)')
    } finally {
      await rm(dir, {recursive: true, force: true})
    }
  })

  it('shell completion: `autocomplete script bash` prints a script that completes chunky commands', async () => {
    const result = await runCli(['autocomplete', 'script', 'bash'], {XDG_CACHE_HOME: join(tmpdir(), `chunky-ac-${process.pid}`)})
    expect(result.code, result.stderr).toBe(0)
    expect(result.stdout).toMatch(/CHUNKY_AC_BASH_SETUP_PATH=/)
  })
})
