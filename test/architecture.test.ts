import {readdir, readFile} from 'node:fs/promises'
import {dirname, join, relative, resolve, sep} from 'node:path'
import {expect, test} from 'vitest'

// The import rules of the layout: master and node share only protocol, util, the HTTP edge helpers and
// telemetry (logger, metrics), and never import each other; nothing below commands/ imports a command.
const ALLOWED: Record<string, string[]> = {
  protocol: [],
  util: [],
  http: ['protocol'],
  telemetry: ['protocol', 'util'],
  storage: ['protocol', 'util'],
  master: ['protocol', 'util', 'http', 'telemetry'],
  node: ['protocol', 'storage', 'util', 'http', 'telemetry'],
  client: ['protocol', 'util'],
  cli: ['client', 'protocol', 'util'],
}

test.each(Object.entries(ALLOWED))('src/%s imports only from %j', async (folder, allowed) => {
  const root = resolve('src')
  const files = (await readdir(join(root, folder), {recursive: true})).filter((f) => f.endsWith('.ts'))
  expect(files.length).toBeGreaterThan(0)
  for (const file of files) {
    const path = join(root, folder, file)
    for (const [, spec] of (await readFile(path, 'utf8')).matchAll(/from '(\.[^']+)'/g)) {
      const target = relative(root, resolve(dirname(path), spec!)).split(sep)[0]!
      expect([folder, ...allowed], `${relative('.', path)} imports ${spec}`).toContain(target)
    }
  }
})

test('protocol imports nothing but zod and node:crypto', async () => {
  const root = resolve('src/protocol')
  for (const file of await readdir(root)) {
    const text = await readFile(join(root, file), 'utf8')
    for (const [, spec] of text.matchAll(/from '([^.][^']*)'/g)) expect(['zod', 'node:crypto']).toContain(spec)
  }
})
