import {request} from 'node:http'

// Plain HTTP reads for the file-serving tests: node:http, so no cache and no automatic headers.

export interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

/** One request, the whole body read. */
export function get(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, {method, headers}, (res) => {
      const parts: Buffer[] = []
      res.on('data', (d: Buffer) => parts.push(d))
      res.on('end', () => resolve({status: res.statusCode!, headers: res.headers, body: Buffer.concat(parts)}))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/** The sum of a metric's series on a node's /metrics. */
export async function metric(nodeUrl: string, headers: Record<string, string>, name: string): Promise<number> {
  const text = (await get(`${nodeUrl}/metrics`, headers)).body.toString()
  return text
    .split('\n')
    .filter((line) => line.startsWith(name))
    .reduce((sum, line) => sum + Number(line.split(' ').pop()), 0)
}
