// The floors (what the machine can do at best) and the neighbours (tools users would otherwise pick),
// each measured on the same file. Every server listens on 127.0.0.1 and is stopped before returning.
import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {mkdir, open, rm, writeFile} from 'node:fs/promises'
import {Agent, request} from 'node:http'
import {join} from 'node:path'
import {MiB, bounded, freePort, run, startProcess, timeRuns, tusUpload, waitFor, which} from './lib.mjs'

const BENCH_DIR = import.meta.dirname
const CHUNK = 10 * MiB

export async function sha256Floor(file, runs) {
  return timeRuns(runs, async () => {
    const hash = createHash('sha256')
    for await (const part of createReadStream(file, {highWaterMark: CHUNK})) hash.update(part)
    hash.digest('hex')
  })
}

export async function ddFloor(file, work, runs) {
  const out = join(work, 'dd-out')
  return timeRuns(runs, () => run('dd', [`if=${file}`, `of=${out}`, 'bs=4M', 'conv=fsync', 'status=none']), {cleanup: () => rm(out, {force: true})})
}

export async function threeCopiesFloor(file, work, runs) {
  const outs = [1, 2, 3].map((i) => join(work, `copy-${i}`))
  return timeRuns(runs, () => Promise.all(outs.map((out) => run('dd', [`if=${file}`, `of=${out}`, 'bs=4M', 'conv=fsync', 'status=none']))), {
    cleanup: () => Promise.all(outs.map((out) => rm(out, {force: true}))),
  })
}

/** The bare Node http sink in its own process; `batch` makes it write 4 MiB pieces. */
export async function startSink(work, file, batch = false) {
  const dir = join(work, batch ? 'sink-batch' : 'sink')
  await mkdir(dir, {recursive: true})
  const proc = await startProcess(process.execPath, [join(BENCH_DIR, 'sink-server.mjs'), dir, file, ...(batch ? ['--batch'] : [])], {ready: /^listening on /})
  return {url: proc.readyLine.split(' ').pop(), dir, pid: proc.pid, stop: async () => (await proc.stop(), await rm(dir, {recursive: true, force: true}))}
}

/** 10 MiB PUTs, `concurrency` in flight, hashing each chunk while it is sent, keep-alive connections. */
export async function putChunks(url, file, size, concurrency = 4) {
  const agent = new Agent({keepAlive: true, maxSockets: concurrency})
  const count = Math.ceil(size / CHUNK)
  let next = 0
  const one = (index) =>
    new Promise((resolve, reject) => {
      const start = index * CHUNK
      const end = Math.min(size, start + CHUNK)
      const hash = createHash('sha256')
      const req = request(`${url}/chunks/${index}`, {method: 'PUT', agent, headers: {'content-length': end - start}}, (res) => {
        res.resume()
        res.on('end', () => (res.statusCode === 200 ? resolve(hash.digest('hex')) : reject(new Error(`HTTP ${res.statusCode}`))))
      })
      req.on('error', reject)
      const body = createReadStream(file, {start, end: end - 1, highWaterMark: MiB})
      body.on('data', (part) => hash.update(part))
      body.on('error', reject)
      body.pipe(req)
    })
  const worker = async () => {
    while (next < count) await one(next++)
  }
  try {
    await Promise.all(Array.from({length: concurrency}, worker))
  } finally {
    agent.destroy()
  }
}

export async function barePutFloor(work, file, size, runs, batch = false) {
  const sink = await startSink(work, file, batch)
  try {
    return await timeRuns(runs, () => putChunks(sink.url, file, size))
  } finally {
    await sink.stop()
  }
}

/**
 * curl GET of the whole file from the bare server, written to disk (the download floor); with `fsync`,
 * the output is then fsynced (`dd conv=notrunc,fsync` of zero blocks: the fsync of that file alone).
 */
export async function curlGetFloor(url, work, runs, fsync = false) {
  const out = join(work, 'curl-out')
  return timeRuns(
    runs,
    async () => {
      await run('curl', ['-sS', '--fail', '-o', out, url])
      if (fsync) await run('dd', ['if=/dev/null', `of=${out}`, 'conv=notrunc,fsync', 'status=none'])
    },
    {cleanup: () => rm(out, {force: true})},
  )
}

/** `chunkSize` Infinity: tus-js-client's default, one PATCH for the whole file (it reads the file by path). */
export async function tusNeighbour(work, file, size, runs, chunkSize = CHUNK) {
  const dir = join(work, 'tus')
  await mkdir(dir, {recursive: true})
  const server = await startProcess(process.execPath, [join(BENCH_DIR, 'tus-server.mjs'), dir], {ready: /^listening on /})
  const url = server.readyLine.split(' ').pop()
  try {
    const seconds = []
    for (let i = 0; i < runs; i++) {
      const upload = await tusUpload({endpoint: `${url}/files`, file, size, chunkSize, metadata: {filename: 'bench.bin'}})
      const synced = performance.now()
      await run('sync', []) // the FileStore does not fsync: `sync` puts its bytes on disk as the others do
      seconds.push(upload + (performance.now() - synced) / 1000)
      await rm(dir, {recursive: true, force: true})
      await mkdir(dir, {recursive: true})
    }
    return seconds
  } finally {
    await server.stop()
    await rm(dir, {recursive: true, force: true})
  }
}

/** nginx WebDAV PUT of the whole file with curl, then `sync`; also a GET floor. Undefined when nginx is missing. */
export async function nginxNeighbour(work, file, runs) {
  const nginx = (await which('nginx')) ?? ((await which('/usr/sbin/nginx')) ? '/usr/sbin/nginx' : undefined)
  if (!nginx) return {skipped: 'nginx is not installed (npm run bench:setup installs it)'}
  const dir = join(work, 'nginx')
  const www = join(dir, 'www')
  await mkdir(join(dir, 'body'), {recursive: true})
  await mkdir(www, {recursive: true})
  const port = await freePort()
  const conf = join(dir, 'nginx.conf')
  await writeFile(
    conf,
    `${process.getuid?.() === 0 ? 'user root;\n' : ''}daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events {}
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  client_max_body_size 0;
  sendfile on;
  server {
    listen 127.0.0.1:${port};
    root ${www};
    location / { dav_methods PUT DELETE; create_full_put_path on; }
  }
}
`,
  )
  const server = await startProcess(nginx, ['-p', dir, '-c', conf])
  const url = `http://127.0.0.1:${port}`
  try {
    await waitFor('nginx to listen', async () => (await fetch(`${url}/`).catch(() => undefined)) !== undefined, 10_000)
    const put = await timeRuns(
      runs,
      async (i) => {
        await run('curl', ['-sS', '--fail', '-T', file, `${url}/up-${i}.bin`])
        await run('sync', [])
      },
      {cleanup: (i) => rm(join(www, `up-${i}.bin`), {force: true})},
    )
    return {put}
  } finally {
    await server.stop()
    await rm(dir, {recursive: true, force: true})
  }
}

/** rsync of the file's 10 MiB pieces to an rsync daemon with --fsync. Undefined when rsync is missing or too old. */
export async function rsyncNeighbour(work, file, size, runs) {
  if (!(await which('rsync'))) return {skipped: 'rsync is not installed (npm run bench:setup installs it)'}
  const help = await run('rsync', ['--help']).catch(() => ({stdout: ''}))
  if (!help.stdout.includes('--fsync')) return {skipped: 'this rsync has no --fsync (needs rsync 3.2.4 or newer)'}
  const dir = join(work, 'rsync')
  const pieces = join(dir, 'pieces')
  const dest = join(dir, 'dest')
  await mkdir(pieces, {recursive: true})
  await mkdir(dest, {recursive: true})
  await splitFile(file, size, pieces)
  const port = await freePort()
  const conf = join(dir, 'rsyncd.conf')
  const root = process.getuid?.() === 0
  await writeFile(conf, `pid file = ${dir}/rsyncd.pid\nuse chroot = no\n[bench]\n  path = ${dest}\n  read only = no\n${root ? '  uid = root\n  gid = root\n' : ''}`)
  const daemon = await startProcess('rsync', ['--daemon', '--no-detach', `--config=${conf}`, `--port=${port}`, '--address=127.0.0.1', `--log-file=${dir}/rsyncd.log`])
  try {
    await waitFor('rsync daemon to listen', () => run('rsync', [`rsync://127.0.0.1:${port}/`], {timeoutMs: 5_000}).then(() => true), 10_000)
    const seconds = await timeRuns(runs, (i) => run('rsync', ['-a', '--fsync', `${pieces}/`, `rsync://127.0.0.1:${port}/bench/run-${i}/`]), {
      cleanup: (i) => rm(join(dest, `run-${i}`), {recursive: true, force: true}),
    })
    return {put: seconds, files: Math.ceil(size / CHUNK)}
  } finally {
    await daemon.stop()
    await rm(dir, {recursive: true, force: true})
  }
}

async function splitFile(file, size, dir) {
  const source = await open(file, 'r')
  try {
    const buf = Buffer.alloc(CHUNK)
    for (let i = 0; i * CHUNK < size; i++) {
      const length = Math.min(CHUNK, size - i * CHUNK)
      await source.read(buf, 0, length, i * CHUNK)
      await writeFile(join(dir, `chunk-${String(i).padStart(5, '0')}`), buf.subarray(0, length))
    }
  } finally {
    await source.close()
  }
}

export {bounded}
