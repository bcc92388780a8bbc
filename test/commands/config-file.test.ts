import {mkdtemp, readFile, rm, stat, writeFile, mkdir} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {checkConfigValue, configPath, readConfig, writeConfig} from '../../src/cli/config-file.js'
import {resumeHint, shellQuote} from '../../src/cli/resume.js'

let dir: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chunky-config-file-'))
})

afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

describe('config file', () => {
  it('is empty when missing, and written readable by its owner only', async () => {
    const configDir = join(dir, 'a', 'chunky')
    expect(await readConfig(configDir)).toEqual({})
    await writeConfig(configDir, {master: 'http://m:7400', token: 'secret'})
    expect((await stat(configPath(configDir))).mode & 0o777).toBe(0o600)
    expect(await readConfig(configDir)).toEqual({master: 'http://m:7400', token: 'secret'})
    await writeConfig(configDir, {})
    await expect(stat(configPath(configDir))).rejects.toMatchObject({code: 'ENOENT'})
  })

  it('names the file when it is not JSON or holds a bad value', async () => {
    const configDir = join(dir, 'b')
    await mkdir(configDir, {recursive: true})
    await writeFile(configPath(configDir), '{nope')
    await expect(readConfig(configDir)).rejects.toThrow(/config\.json is not JSON/)
    await writeFile(configPath(configDir), JSON.stringify({master: 'ftp://x'}))
    await expect(readConfig(configDir)).rejects.toThrow(/config\.json: bad master: .*not an http/)
    expect(await readFile(configPath(configDir), 'utf8')).toContain('ftp') // reading never rewrites it
  })

  it('checks values before they are saved', () => {
    expect(checkConfigValue('master', 'http://m:7400/')).toBe('http://m:7400')
    expect(() => checkConfigValue('master', 'm:7400')).toThrow()
    expect(() => checkConfigValue('token', 'two words')).toThrow(/one word/)
    expect(() => checkConfigValue('zone', 'eu west')).toThrow(/zone/)
    expect(checkConfigValue('zone', 'eu-west')).toBe('eu-west')
  })
})

describe('resume hint', () => {
  it('quotes what a shell would need quoted', () => {
    expect(shellQuote('talks/2026/key-note.mp4')).toBe('talks/2026/key-note.mp4')
    expect(shellQuote("my video's cut.mp4")).toBe(`'my video'\\''s cut.mp4'`)
    expect(resumeHint('chunky', ['upload', 'a b.mp4', '--name', 'x.mp4'])).toMatch(/to resume, run the same command again: chunky upload 'a b\.mp4' --name x\.mp4$/)
  })
})
