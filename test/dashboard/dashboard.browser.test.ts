import {existsSync} from 'node:fs'
import {mkdir} from 'node:fs/promises'
import {join} from 'node:path'
import {chromium, type Browser, type Page} from 'playwright-core'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {deriveCredentials} from '../../src/protocol/index.js'
import {killAll, MEDIA, ROOT, runCli, startCluster, TOKEN, type Cluster} from '../e2e/harness.js'
import {waitFor} from '../poll.js'

// The dashboard in real headless Chromium (Debian's package, driven by playwright-core) against a
// real cluster of processes: log in, watch a node die and its chunks get copied to the spare node,
// all without reloading the page.

const CHROMIUM = '/usr/bin/chromium'
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync']
const SAMPLE = join(MEDIA, 'forensics-movie-hello.mp4') // 4.1 MiB: 5 chunks of 1 MiB
const NAME = 'clips/hello.mp4'
const SCREENSHOT = join(ROOT, 'test-output', 'dashboard.png')
const READ_ONLY = deriveCredentials(TOKEN).ro

/** Each chunk row of the grid: chunk index -> node id -> cell state. */
async function gridStates(page: Page): Promise<Map<string, Map<string, string>>> {
  const cells = await page.$$eval('#grid td.cell', (tds) =>
    tds.map((td) => [(td as HTMLElement).dataset.chunk!, (td as HTMLElement).dataset.node!, (td as HTMLElement).dataset.state!] as const),
  )
  const rows = new Map<string, Map<string, string>>()
  for (const [chunk, node, state] of cells) {
    if (!rows.has(chunk)) rows.set(chunk, new Map())
    rows.get(chunk)!.set(node, state)
  }
  return rows
}


describe('the dashboard in headless Chromium', () => {
  let cluster: Cluster | undefined
  let browser: Browser | undefined
  let page: Page

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} is missing: the browser test needs Debian's chromium (apt-get install chromium; .ci/run does it)`)
    }
    cluster = await startCluster({nodes: 4, replicas: 3})
    const upload = await runCli(['upload', SAMPLE, '--name', NAME, '--chunk-size', '1MiB', '--json'], cluster.env)
    expect(upload.code, upload.stderr).toBe(0)
    browser = await chromium.launch({executablePath: CHROMIUM, args: CHROMIUM_ARGS})
    page = await browser.newPage({viewport: {width: 1280, height: 1000}})
  }, 90_000)

  afterAll(async () => {
    await browser?.close()
    await cluster?.close()
    await killAll()
  })

  it('refuses a wrong token on the login form, with a message', async () => {
    await page.goto(`${cluster!.master.url}/`)
    await page.fill('#token', 'ro-this-is-not-the-clusters')
    await page.click('#login-form button[type=submit]')
    await page.waitForSelector('#login-error:text("Wrong token")')
    expect(await page.isVisible('#dashboard')).toBe(false)
    // The page's own origin gets no data without a credential either.
    expect(await page.evaluate(async () => (await fetch('api/live')).status)).toBe(401)
  })

  it('logs in through the form and shows four nodes alive and the file', async () => {
    await page.fill('#token', READ_ONLY)
    await page.click('#login-form button[type=submit]')
    await page.waitForSelector('#connection[data-state=live]')
    await waitFor('four alive nodes', async () => (await page.$$('#nodes tr[data-state=alive]')).length === 4)
    const row = page.locator(`#files tr[data-file="${NAME}"]`)
    await row.waitFor()
    expect(await row.locator('td').nth(2).textContent()).toBe('5') // chunks
    expect(await row.locator('td').nth(3).textContent()).toBe('3 of 3') // lowest replica count
    await page.waitForSelector('#summary[data-health=healthy]:text("0 under-replicated, 0 stale, 0 corrupt")')
  })

  it('shows the grid fresh, then a killed node turn dead and its chunks repaired onto the spare node, without a reload', async () => {
    await page.click(`#files tr[data-file="${NAME}"]`)
    const before = await waitFor('the grid with 3 fresh copies of each of 5 chunks', async () => {
      const rows = await gridStates(page)
      const complete = rows.size === 5 && [...rows.values()].every((cells) => [...cells.values()].filter((s) => s === 'fresh').length === 3)
      return complete && rows
    })
    // Kill a node that holds chunk 0; the chunks it held must be copied to the nodes that had none.
    const victim = [...before.get('0')!].find(([, state]) => state === 'fresh')![0]
    const gaps = [...before].flatMap(([chunk, cells]) =>
      cells.get(victim) === 'fresh' ? [...cells].filter(([, state]) => state === 'missing').map(([node]) => `${chunk}@${node}`) : [],
    )
    expect(gaps.length).toBeGreaterThan(0)
    await page.evaluate(() => ((window as unknown as {notReloaded: boolean}).notReloaded = true))

    await cluster!.nodes.get(victim)!.kill9()
    await page.waitForSelector(`#nodes tr[data-node-id="${victim}"][data-state=dead]`, {timeout: 15_000})
    await page.waitForSelector(`#grid th.dead[data-node="${victim}"]`)
    const after = await waitFor('every chunk back to 3 fresh copies on alive nodes', async () => {
      const rows = await gridStates(page)
      const healed = [...rows.values()].every((cells) => [...cells].filter(([node, state]) => node !== victim && state === 'fresh').length === 3)
      return rows.size === 5 && healed && rows
    })
    for (const gap of gaps) {
      const [chunk, node] = gap.split('@') as [string, string]
      expect(after.get(chunk)!.get(node), `chunk ${chunk} on ${node}`).toBe('fresh') // the new copy
    }
    await page.waitForSelector('#repair-rate:text-matches("[1-9][0-9.]* MiB repaired")')
    await page.waitForSelector('#summary[data-health=healthy]:text("0 under-replicated, 0 stale, 0 corrupt")')
    expect(await page.evaluate(() => (window as unknown as {notReloaded?: boolean}).notReloaded)).toBe(true)

    await mkdir(join(ROOT, 'test-output'), {recursive: true})
    await page.screenshot({path: SCREENSHOT, fullPage: true})
    console.log(`dashboard screenshot: ${SCREENSHOT}`)
  })

  it('shows a node being drained, in its row and in the header, and back in service after undrain', async () => {
    // three nodes are alive now and R is 3: the drain cannot finish, so it stays draining
    const id = (await page.$$eval('#nodes tr[data-state=alive]', (trs) => trs.map((tr) => (tr as HTMLElement).dataset.nodeId!)))[0]!
    const drain = await runCli(['nodes', 'drain', id], cluster!.env)
    expect(drain.code, drain.stderr).toBe(0)
    await page.waitForSelector(`#nodes tr[data-node-id="${id}"][data-state=draining] .badge:text("draining")`, {timeout: 15_000})
    await page.waitForSelector('#summary:text("1 draining")')
    const undrain = await runCli(['nodes', 'undrain', id], cluster!.env)
    expect(undrain.code, undrain.stderr).toBe(0)
    await page.waitForSelector(`#nodes tr[data-node-id="${id}"][data-state=alive]`, {timeout: 15_000})
  })

  it('logs in from a #token= fragment and removes it from the address bar', async () => {
    const second = await browser!.newPage()
    try {
      await second.goto(`${cluster!.master.url}/#token=${READ_ONLY}`)
      await second.waitForSelector('#connection[data-state=live]')
      expect(second.url()).toBe(`${cluster!.master.url}/`)
      expect(await second.evaluate(() => sessionStorage.getItem('chunky-token'))).toBe(READ_ONLY)
    } finally {
      await second.close()
    }
  })
})
