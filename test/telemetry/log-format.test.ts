import {describe, expect, it} from 'vitest'
import {createDaemonLogger} from '../../src/telemetry/logger.js'
import {formatLogRecord, logLineMessage, messageLogger, parseLogLevel, parseLogLine, withFields} from '../../src/util/log.js'
import {runCli} from '../e2e/harness.js'

describe('the readable log format (a terminal)', () => {
  it('is HH:MM:SS.mmm LEVEL message key=value, in local time, without pid, hostname and role', () => {
    const time = new Date(2026, 10, 26, 9, 5, 7, 42) // local time
    const line = formatLogRecord({level: 'info', time: time.toISOString(), pid: 7, hostname: 'h', role: 'master', event: 'node.dead', nodeId: 'n2', timeoutMs: 2000, msg: 'node n2 is dead (no heartbeat for 2s)'})
    expect(line).toBe('09:05:07.042 INFO  node n2 is dead (no heartbeat for 2s) event=node.dead nodeId=n2 timeoutMs=2000')
  })

  it('quotes strings with spaces, writes arrays and objects as JSON, and cuts long values', () => {
    const line = formatLogRecord({level: 'warn', time: 0, msg: 'm', reason: 'a b', empty: '', chunks: [{chunkId: 'c1', version: 2}], long: 'x'.repeat(500)})
    expect(line).toMatch(/^\d\d:\d\d:\d\d\.\d{3} WARN  m reason="a b" empty="" chunks=\[\{"chunkId":"c1","version":2\}\] long=x{119}…$/)
  })

  it('survives a record with no time or message', () => {
    expect(formatLogRecord({level: 'error', time: 'not a time'})).toBe('--:--:--.--- ERROR')
  })
})

describe('--log-level', () => {
  it('takes trace, debug, info, warn, error and silent, in any case', () => {
    for (const level of ['trace', 'debug', 'info', 'warn', 'error', 'silent']) expect(parseLogLevel(level)).toBe(level)
    expect(parseLogLevel(' WARN ')).toBe('warn')
  })

  it('refuses anything else, naming the levels', () => {
    expect(() => parseLogLevel('verbose')).toThrow('"verbose" is not a log level: use one of trace, debug, info, warn, error, silent')
    expect(() => parseLogLevel('')).toThrow(/not a log level/)
  })

  it('is a usage error (exit 2) on the command line and in CHUNKY_LOG_LEVEL', async () => {
    const flag = await runCli(['master', '--log-level', 'loud', '--port', '0'])
    expect(flag.code).toBe(2)
    expect(flag.stderr).toContain('"loud" is not a log level')
    expect(flag.stdout).toBe('')
    const env = await runCli(['node', '--master', 'http://127.0.0.1:9', '--token', 't', '--port', '0'], {CHUNKY_LOG_LEVEL: 'chatty'})
    expect(env.code).toBe(2)
    expect(env.stderr).toContain('"chatty" is not a log level')
  })
})

describe('the daemon logger', () => {
  it('holds lines until released (the `listening on` line comes first), then writes JSON lines at once', () => {
    const out: string[] = []
    const logger = createDaemonLogger({level: 'info', base: {role: 'node'}, format: 'json', write: (text) => void out.push(text)})
    logger.log.info({event: 'store.cleaned', removed: 2}, 'removed 2 leftover file(s)')
    expect(out).toEqual([])
    logger.release()
    logger.log.warn({event: 'master.lost', retryInMs: 500}, 'lost master link')
    const records = out.join('').trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(records).toMatchObject([
      {level: 'info', role: 'node', event: 'store.cleaned', removed: 2, msg: 'removed 2 leftover file(s)'},
      {level: 'warn', event: 'master.lost', retryInMs: 500, msg: 'lost master link'},
    ])
    expect(new Date(records[0]!.time as string).getTime()).toBeGreaterThan(Date.now() - 60_000)
    expect(records[0]!.pid).toBe(process.pid)
  })

  it('adds fields to every line through withFields (a node id), the fields of the line itself first', () => {
    const out: string[] = []
    const logger = createDaemonLogger({level: 'info', format: 'json', write: (text) => void out.push(text)})
    logger.release()
    const log = withFields(logger.log, {nodeId: 'n1'})
    log.info({event: 'chunk.stored', chunkId: 'abc'}, 'stored chunk abc')
    log.warn('plain sentence')
    log.info({event: 'other', nodeId: 'n9'}, 'a line about another node')
    log.debug({event: 'hidden'}, 'below the level')
    const records = out.join('').trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(records).toMatchObject([
      {nodeId: 'n1', event: 'chunk.stored', chunkId: 'abc', msg: 'stored chunk abc'},
      {nodeId: 'n1', level: 'warn', msg: 'plain sentence'},
      {nodeId: 'n9', event: 'other'},
    ])
    expect(records).toHaveLength(3)
  })

  it('drops lines below its level and writes readable lines in the pretty format', () => {
    const out: string[] = []
    const logger = createDaemonLogger({level: 'warn', format: 'pretty', write: (text) => void out.push(text)})
    logger.release()
    logger.log.info({event: 'node.joined'}, 'not shown')
    logger.log.debug('not shown either')
    logger.log.error({event: 'http.failed', url: '/x'}, 'GET /x failed')
    expect(out.join('')).toMatch(/^\d\d:\d\d:\d\d\.\d{3} ERROR GET \/x failed event=http\.failed url=\/x\n$/)
  })

  it('writes nothing at level silent', () => {
    const out: string[] = []
    const logger = createDaemonLogger({level: 'silent', format: 'json', write: (text) => void out.push(text)})
    logger.release()
    logger.log.error('nothing')
    expect(out).toEqual([])
  })
})

describe('reading daemon output', () => {
  it('gives the message of a JSON line and plain lines as they are (the demo shows these)', () => {
    expect(logLineMessage('{"level":"info","event":"chunk.stale","msg":"chunk c on node n3 is stale (v1 < v2)"}')).toBe('chunk c on node n3 is stale (v1 < v2)')
    expect(logLineMessage('listening on http://127.0.0.1:7400')).toBe('listening on http://127.0.0.1:7400')
    expect(logLineMessage('{not json')).toBe('{not json')
    expect(parseLogLine('[1,2]')).toBeUndefined()
    expect(parseLogLine('{"event":"x"}')).toEqual({event: 'x'})
  })

  it('messageLogger hands tests the sentence and, if asked, the fields', () => {
    const sentences: string[] = []
    const fields: unknown[] = []
    const log = messageLogger((m) => void sentences.push(m), (f) => void fields.push(f))
    log.info({event: 'node.back', nodeId: 'n1'}, 'node n1 is back')
    log.debug('plain')
    expect(sentences).toEqual(['node n1 is back', 'plain'])
    expect(fields).toEqual([{event: 'node.back', nodeId: 'n1'}])
  })
})
