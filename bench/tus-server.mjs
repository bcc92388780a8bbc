// The tus neighbour: @tus/server with its FileStore, on 127.0.0.1, writing into DIR.
// Usage: node tus-server.mjs DIR
import {createServer} from 'node:http'
import {FileStore} from '@tus/file-store'
import {Server} from '@tus/server'

const dir = process.argv[2]
const tus = new Server({path: '/files', datastore: new FileStore({directory: dir})})
const server = createServer((req, res) => tus.handle(req, res))
server.listen(0, '127.0.0.1', () => console.log(`listening on http://127.0.0.1:${server.address().port}`))
process.on('SIGTERM', () => server.close(() => process.exit(0)))
