// One tus-js-client upload from a process of its own, as a browser or an ingest service is: the
// runner's own heap (after every step before) then weighs on neither side of a tus comparison.
// argv: endpoint file size chunkSize(bytes or "Infinity") metadata-JSON [bearer-token]
// Prints the seconds from the upload's start to its success (module loading left out).
import {createReadStream} from 'node:fs'
import {Upload} from 'tus-js-client'

const [endpoint, file, size, chunkSize, metadata, token] = process.argv.slice(2)
const started = performance.now()
await new Promise((resolve, reject) => {
  const upload = new Upload(createReadStream(file, {highWaterMark: 1024 * 1024}), {
    endpoint,
    chunkSize: Number(chunkSize),
    uploadSize: Number(size),
    retryDelays: [],
    ...(token ? {headers: {authorization: `Bearer ${token}`}} : {}),
    metadata: JSON.parse(metadata),
    onError: reject,
    onSuccess: resolve,
  })
  upload.start()
})
console.log(((performance.now() - started) / 1000).toFixed(4))
