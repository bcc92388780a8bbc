import {basename, isAbsolute, relative} from 'node:path'

// Hints print the command the user actually ran: `chunky` once it is on PATH (npm link, a global
// install, npx), `./bin/run.js` when run from a checkout, so a copied hint works as printed.

/** How to write this binary in a hint: `chunky`, or the script's path when it was run by its path. */
export function invokedAs(bin = 'chunky', script = process.argv[1] ?? '', cwd = process.cwd()): string {
  const name = basename(script)
  if (script === '' || name === bin || !/\.(m?js|ts)$/.test(name)) return bin
  const shown = isAbsolute(script) ? relative(cwd, script) : script
  if (shown === '' || shown.startsWith('..') || isAbsolute(shown)) return script // far away: the full path is clearer
  return shown.startsWith('./') || shown.startsWith('/') ? shown : `./${shown}`
}

/** `text` with every backquoted `chunky …` hint written the way this binary was run. */
export function withInvokedBin(text: string, bin = 'chunky', shown = invokedAs(bin)): string {
  return shown === bin ? text : text.replaceAll(`\`${bin} `, `\`${shown} `)
}
