import {randomInt} from 'node:crypto'
import {existsSync} from 'node:fs'
import {dirname, join, resolve} from 'node:path'
import {runCampaign} from './campaign.js'
import {killEverything, ROOT} from './procs.js'

// `npm run chaos -- --seed N --seconds S [--workers N] [--max-size-mib M] [--scrub-ms MS] [--meta sqlite|postgres] [--keep] [--bin PATH/bin/run.js]`: one campaign
// against the built binary (run `npm run build` first). Exit 0 when it passed, 1 when an invariant
// failed (the folder is kept and the replay command printed), 2 on bad usage. `--meta postgres` runs
// 2 masters on a throwaway PostgreSQL (needs PostgreSQL installed) instead of 1 on SQLite.

function usage(message: string): never {
  console.error(`chaos: ${message}\nusage: npm run chaos -- [--seed N] [--seconds S] [--workers N] [--max-size-mib M] [--scrub-ms MS] [--meta sqlite|postgres] [--keep] [--bin PATH/bin/run.js]`)
  process.exit(2)
}

const args = process.argv.slice(2)
const options: {seed?: number; seconds: number; workers?: number; maxSizeMiB?: number; keep: boolean; bin?: string; scrubIntervalMs?: number; meta?: 'sqlite' | 'postgres'} = {seconds: 60, keep: false}
for (let i = 0; i < args.length; i++) {
  const flag = args[i]!
  if (flag === '--keep') {
    options.keep = true
    continue
  }
  if (flag === '--bin') {
    const bin = args[++i]
    if (!bin || !existsSync(bin)) usage('--bin needs the path of a bin/run.js')
    options.bin = resolve(bin)
    continue
  }
  if (flag === '--meta') {
    const meta = args[++i]
    if (meta !== 'sqlite' && meta !== 'postgres') usage('--meta needs sqlite or postgres')
    options.meta = meta
    continue
  }
  const value = args[++i]
  const n = Number(value)
  if (value === undefined || !Number.isSafeInteger(n) || n < 0) usage(`${flag} needs a whole number`)
  if (flag === '--seed') options.seed = n
  else if (flag === '--seconds') options.seconds = n
  else if (flag === '--workers') options.workers = n
  else if (flag === '--max-size-mib') options.maxSizeMiB = n
  else if (flag === '--scrub-ms') options.scrubIntervalMs = n
  else usage(`unknown option ${flag}`)
}
if (!existsSync(join(options.bin ? dirname(dirname(options.bin)) : ROOT, 'dist', 'commands'))) usage('the binary is not built: run `npm run build` first')
// Ctrl-C or SIGTERM: stop every process the campaign started (by pid) before leaving; its folder stays.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`chaos: ${signal}: stopping every process the campaign started; the run's folder is left in place`)
    void killEverything().finally(() => process.exit(130))
  })
}
const seed = options.seed ?? randomInt(1, 2 ** 31)
console.log(`chaos: seed ${seed}`)
const result = await runCampaign({seed, seconds: options.seconds, workers: options.workers, maxSizeMiB: options.maxSizeMiB, keep: options.keep, bin: options.bin, scrubIntervalMs: options.scrubIntervalMs, meta: options.meta})
process.exit(result.passed ? 0 : 1)
