import {existsSync} from 'node:fs'
import {readdir, readFile} from 'node:fs/promises'
import type {IncomingMessage, ServerResponse} from 'node:http'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {ChunkyError} from '../../protocol/index.js'

// The dashboard page: GET / and GET /dashboard/<file>, served WITHOUT a credential. The page is an
// empty shell (HTML, CSS, script); every byte of cluster data comes from authenticated /api routes.
// `npm run build` puts it in dist/dashboard (tsconfig.dashboard.json + scripts/copy-dashboard.mjs).

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
}

/** Scripts only from this master, data only to this master, no framing, no inline code. */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  'media-src http: https:', // the play button's video reads a share link from a node (another origin)
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')

/** True for the paths of the page: `/` and `/dashboard/<file>` (segments as pathSegments gives them). */
export function isDashboardPath(segments: string[]): boolean {
  if (segments.length === 1 && segments[0] === '') return true
  return segments.length === 2 && segments[0] === 'dashboard'
}

interface Asset {
  body: Buffer
  type: string
}

/** The built page, read once from dist/dashboard of this package. */
export class DashboardAssets {
  private loaded: Promise<Map<string, Asset>> | undefined

  constructor(private readonly dir = builtDashboardDir()) {}

  async serve(req: IncomingMessage, res: ServerResponse, segments: string[]): Promise<void> {
    const assets = await (this.loaded ??= this.load())
    const file = segments.length === 1 ? 'index.html' : segments[1]!
    const asset = assets.get(file)
    if (!asset) {
      if (assets.size === 0) throw new ChunkyError('NOT_FOUND', `the dashboard is not built (no ${this.dir}): run npm run build`)
      throw new ChunkyError('NOT_FOUND', `no such dashboard file: ${file}`)
    }
    res.writeHead(200, {
      'content-type': asset.type,
      'content-length': asset.body.length,
      'cache-control': 'no-cache', // small; always the page of the binary that runs
      'content-security-policy': CONTENT_SECURITY_POLICY,
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'referrer-policy': 'no-referrer',
    })
    res.end(req.method === 'HEAD' ? undefined : asset.body)
  }

  /** Every file of the built folder, by name (only these names are ever served: no path reaches the disk). */
  private async load(): Promise<Map<string, Asset>> {
    const assets = new Map<string, Asset>()
    let names: string[]
    try {
      names = await readdir(this.dir)
    } catch {
      this.loaded = undefined // not built yet: look again next time
      return assets
    }
    for (const name of names) {
      const type = CONTENT_TYPES[name.slice(name.lastIndexOf('.'))]
      if (type) assets.set(name, {body: await readFile(join(this.dir, name)), type})
    }
    return assets
  }
}

/**
 * dist/dashboard of the package this module belongs to: found from the module's own location, so it
 * works from dist/src/master/dashboard (the built binary) and from src/master/dashboard (vitest).
 */
export function builtDashboardDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir)
    if (parent === dir) break
    dir = parent
  }
  return join(dir, 'dist', 'dashboard')
}
