#!/usr/bin/env node
// Runs the compiled commands too: `npm run build` first. Kept so `bin/dev.js` works as in other oclif CLIs.
import {execute} from '@oclif/core'

await execute({development: true, dir: import.meta.url})
