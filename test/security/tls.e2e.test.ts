import {execFileSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {readFile, writeFile} from 'node:fs/promises'
import {request} from 'node:https'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {StatusDoc} from '../../src/protocol/index.js'
import {killAll, runCli, sha256File, startDaemon, tempDir, waitFor, type Daemon} from '../e2e/harness.js'

// Issue 5, end to end: a TLS cluster (master and three nodes as real processes, certificates from a
// throwaway CA made with openssl), credentials as the master prints them, certificate checks on.
let dir: {path: string; remove: () => Promise<void>}
let master: Daemon
const nodes: Daemon[] = []
let ca: string
let creds: {node: string; rw: string; ro: string}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, {cwd, stdio: 'pipe'})
}

/** A CA, and a server certificate for 127.0.0.1 / localhost signed by it. */
function makeCertificates(cwd: string): void {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=chunky test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], cwd)
  openssl(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'], cwd)
  execFileSync('sh', ['-c', 'printf "subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n" > ext.cnf'], {cwd})
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '1',
    '-extfile', 'ext.cnf'], cwd)
}

const tlsArgs = () => ['--tls-cert', join(dir.path, 'server.pem'), '--tls-key', join(dir.path, 'server.key')]
const clientEnv = (token: string, withCa = true) => ({CHUNKY_MASTER: master.url, CHUNKY_TOKEN: token, ...(withCa ? {CHUNKY_CA: ca} : {})})

beforeAll(async () => {
  dir = await tempDir('chunky-tls-')
  makeCertificates(dir.path)
  ca = join(dir.path, 'ca.pem')
  // no --token: the master makes the secret and prints the node and client credentials
  master = await startDaemon(['master', '--port', '0', '--data-dir', join(dir.path, 'master'), '--node-timeout', '3s', ...tlsArgs()])
  const printed = master.output()
  creds = {
    node: /CHUNKY_NODE_TOKEN=(node-[0-9a-f]{64}) \S+ node --master https:\/\/\S+ --ca/.exec(printed)![1]!,
    rw: /CHUNKY_TOKEN=(rw-[0-9a-f]{64})/.exec(printed)![1]!,
    ro: /CHUNKY_TOKEN=(ro-[0-9a-f]{64})/.exec(printed)![1]!,
  }
  for (const id of ['n1', 'n2', 'n3']) {
    nodes.push(await startDaemon(['node', '--master', master.url, '--port', '0', '--id', id, '--zone', id, '--data-dir', join(dir.path, id),
      '--token', creds.node, '--ca', ca, '--heartbeat-interval', '200ms', ...tlsArgs()]))
  }
}, 60_000)

afterAll(async () => {
  await killAll()
  await dir?.remove()
})

describe('a TLS cluster', () => {
  it('serves https and wss: nodes join with the node credential, and upload, status and download work with the CA', async () => {
    expect(master.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
    expect(nodes.every((n) => n.url.startsWith('https://'))).toBe(true)
    const status = await waitFor('three nodes alive over wss', async () => {
      const result = await runCli(['status', '--json'], clientEnv(creds.ro))
      if (result.code !== 0) throw new Error(result.stderr)
      const doc = StatusDoc.parse(JSON.parse(result.stdout))
      return doc.summary.aliveNodes === 3 ? doc : undefined
    })
    expect(status.nodes.every((n) => n.url.startsWith('https://'))).toBe(true)

    const file = join(dir.path, 'clip.bin')
    await writeFile(file, randomBytes(3 * 1024 * 1024 + 5))
    const upload = await runCli(['upload', file, '--name', 'secure/clip.bin', '--chunk-size', '1MiB', '--json'], clientEnv(creds.rw))
    expect(upload.stderr).toBe('')
    expect(upload.code).toBe(0)
    expect(JSON.parse(upload.stdout)).toMatchObject({chunks: 4, uploadedChunks: 4})

    const after = StatusDoc.parse(JSON.parse((await runCli(['status', 'secure/clip.bin', '--json'], clientEnv(creds.ro))).stdout))
    for (const chunk of after.files[0]!.chunks) expect(chunk.replicas.filter((r) => r.state === 'fresh')).toHaveLength(3)

    const out = join(dir.path, 'clip.copy')
    const download = await runCli(['download', 'secure/clip.bin', '-o', out, '--json'], clientEnv(creds.ro))
    expect(download.code).toBe(0)
    expect(await sha256File(out)).toBe(await sha256File(file))
  })

  it('copies chunks between nodes over https: a drained node\'s chunks reach a new node, each verified', async () => {
    const file = join(dir.path, 'moved.bin')
    await writeFile(file, randomBytes(3 * 1024 * 1024 + 5))
    const upload = await runCli(['upload', file, '--name', 'secure/moved.bin', '--chunk-size', '1MiB'], clientEnv(creds.rw))
    expect(upload.code, upload.stderr).toBe(0)
    nodes.push(await startDaemon(['node', '--master', master.url, '--port', '0', '--id', 'n4', '--zone', 'n4', '--data-dir', join(dir.path, 'n4'),
      '--token', creds.node, '--ca', ca, '--heartbeat-interval', '200ms', ...tlsArgs()]))
    const drained = await runCli(['nodes', 'drain', 'n1', '--wait', '--json'], clientEnv(creds.rw), 30_000)
    expect(drained.code, drained.stderr).toBe(0)
    const after = StatusDoc.parse(JSON.parse((await runCli(['status', 'secure/moved.bin', '--json'], clientEnv(creds.ro))).stdout))
    for (const chunk of after.files[0]!.chunks) {
      const fresh = chunk.replicas.filter((r) => r.state === 'fresh' && r.node !== 'n1').map((r) => r.node)
      expect(fresh.sort()).toEqual(['n2', 'n3', 'n4'])
    }
    const undrained = await runCli(['nodes', 'undrain', 'n1'], clientEnv(creds.rw))
    expect(undrained.code, undrained.stderr).toBe(0)
  })

  it('a node holding none of a file serves it over https, every byte fetched from its peers over https', async () => {
    const file = join(dir.path, 'played.bin')
    const bytes = randomBytes(5 * 1024 * 1024 + 77)
    await writeFile(file, bytes)
    const upload = await runCli(['upload', file, '--name', 'secure/played.bin', '--chunk-size', '1MiB'], clientEnv(creds.rw))
    expect(upload.code, upload.stderr).toBe(0)
    const empty = await startDaemon(['node', '--master', master.url, '--port', '0', '--id', 'n5', '--zone', 'n5', '--data-dir', join(dir.path, 'n5'),
      '--token', creds.node, '--ca', ca, '--heartbeat-interval', '200ms', ...tlsArgs()])
    nodes.push(empty)
    await waitFor('n5 alive', async () => StatusDoc.parse(JSON.parse((await runCli(['status', '--json'], clientEnv(creds.ro))).stdout)).nodes.some((n) => n.id === 'n5' && n.state === 'alive'))
    const whole = await httpsGet(`${empty.url}/v1/files/secure/played.bin`, {authorization: `Bearer ${creds.ro}`})
    expect(whole.status).toBe(200)
    expect(whole.body.equals(bytes)).toBe(true)
    const ranged = await httpsGet(`${empty.url}/v1/files/secure/played.bin`, {authorization: `Bearer ${creds.ro}`, range: 'bytes=1048000-4200000'})
    expect(ranged.status).toBe(206)
    expect(ranged.body.equals(bytes.subarray(1048000, 4200001))).toBe(true)
  })

  it('a client that does not trust the CA is refused with a clear one-line error', async () => {
    const result = await runCli(['status'], clientEnv(creds.ro, false))
    expect(result.code).toBe(1)
    expect(result.stdout).toBe('')
    const lines = result.stderr.trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/^chunky: the TLS certificate of https:\/\/127\.0\.0\.1:\d+ is not trusted here \(\w+\): pass --ca FILE or set CHUNKY_CA/)
  })

  it('credentials of the wrong kind or missing give one line and exit 1', async () => {
    const file = join(dir.path, 'small.bin')
    await writeFile(file, randomBytes(1000))
    const readOnly = await runCli(['upload', file], clientEnv(creds.ro))
    expect(readOnly.code).toBe(1)
    expect(readOnly.stderr.trim().split('\n')).toHaveLength(1)
    expect(readOnly.stderr).toContain('read-only credential (ro-…): uploading and removing need the read-write credential')

    const nodeCred = await runCli(['ls'], clientEnv(creds.node))
    expect(nodeCred.code).toBe(1)
    expect(nodeCred.stderr).toMatch(/^chunky: .*node credential \(node-…\): clients use/)

    const missing = await runCli(['ls'], {CHUNKY_MASTER: master.url, CHUNKY_CA: ca})
    expect(missing.code).toBe(1)
    expect(missing.stderr.trim().split('\n')).toHaveLength(1)
    expect(missing.stderr).toMatch(/credential/)
  })

  it('a node that does not trust the master\'s certificate never joins, and says why', async () => {
    const stray = await startDaemon(['node', '--master', master.url, '--port', '0', '--id', 'stray', '--data-dir', join(dir.path, 'stray'),
      '--token', creds.node, '--heartbeat-interval', '200ms'])
    try {
      await waitFor('the certificate failure in its log', () => /lost master link.*(certificate|UNABLE_TO_VERIFY|self.signed)/i.test(stray.output()), 15_000)
      const status = StatusDoc.parse(JSON.parse((await runCli(['status', '--json'], clientEnv(creds.ro))).stdout))
      expect(status.nodes.map((n) => n.id)).not.toContain('stray')
    } finally {
      await stray.stop()
    }
  })
})

/** A GET with this cluster's CA; the whole answer. */
async function httpsGet(url: string, headers: Record<string, string>): Promise<{status: number; body: Buffer}> {
  const trusted = await readFile(ca, 'utf8')
  return new Promise((resolve, reject) => {
    const req = request(url, {headers, ca: trusted}, (res) => {
      const parts: Buffer[] = []
      res.on('data', (d: Buffer) => parts.push(d))
      res.on('end', () => resolve({status: res.statusCode ?? 0, body: Buffer.concat(parts)}))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}
