// Part of `npm run build`: puts the dashboard's HTML and CSS next to its compiled script in
// dist/dashboard (tsc compiles only the .ts files; the master serves that folder).
import {copyFile, mkdir, readdir} from 'node:fs/promises'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const from = join(root, 'src', 'dashboard')
const to = join(root, 'dist', 'dashboard')
await mkdir(to, {recursive: true})
for (const name of await readdir(from)) {
  if (/\.(html|css|svg|png)$/.test(name)) await copyFile(join(from, name), join(to, name))
}
