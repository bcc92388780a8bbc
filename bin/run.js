#!/usr/bin/env node
import {setFlagsFromString} from 'node:v8'

// Every command but the master moves bytes with a small heap: each socket read is a new 64 KiB
// buffer, garbage within milliseconds, whose memory counted against the old generation's limit (a
// few tens of MB here) until the next young-generation collection. Past that limit V8 started
// incremental marking again and again: a node taking a tus upload ran a full collection every
// 40-60 ms, each freeing almost nothing, and took 3.6-4.6 CPU-s per GiB instead of 2.0-2.5. Without
// incremental marking, a full collection runs only when that memory outgrows a far larger margin, and
// a heap this small is collected in a few ms at once. The master keeps V8's default: its heap is
// large and long-lived. Set before anything loads.
if (process.argv[2] !== 'master') setFlagsFromString('--no-incremental-marking')

const {execute} = await import('@oclif/core')
await execute({dir: import.meta.url})
