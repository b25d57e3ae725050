#!/usr/bin/env node
/*
 * Real-browser test of a template's pool of prebuilt servers on the dashboard (run by
 * tests/browser.rs).
 *
 *   node tests/browser/pool.mjs SOCKET USER TAB TEMPLATE SIZE SERVER_NAME FILE_NAME ARTIFACTS_DIR
 *
 * devbox trusts the header X-Forwarded-User on its proxy socket SOCKET (as behind an
 * institution's single sign-on): this script serves a reverse proxy on a loopback port
 * that names USER in that header for every request (HTTP and WebSocket) and drives
 * Debian's Chromium (headless, through playwright-core found on NODE_PATH, as
 * dashboard.mjs does) through it. The pool of TEMPLATE (in tab TAB) keeps SIZE servers
 * and has them all ready when the script starts; the pool of STUCK_TEMPLATE keeps one
 * server, which cannot come up. It:
 *   opens the dashboard as USER and sees the template's card say "ready: SIZE of SIZE",
 *   STUCK_TEMPLATE's "ready: 0 of 1" and "1 failing" (and no server in the list: the
 *   pools' are not USER's); screenshots it in the light and the dark theme; sees
 *   STUCK_TEMPLATE's dialog say that no prebuilt server is ready (the server would come
 *   stopped); creates SERVER_NAME from the template through its dialog, which
 *   says a prebuilt server is ready; sees the create answer 201 with a running server,
 *   the row appear already running with its Open IDE link, and the card count one
 *   fewer ready (screenshots of that, both themes); sees the pool refilled, "ready:
 *   SIZE of SIZE", on the dashboard's own auto-refresh; screenshots the templates at
 *   390 px wide; opens the IDE through Open IDE and sees FILE_NAME (a file of the
 *   template's repository) in VS Code's explorer.
 * Only the selectors listed at the top of ui/app.js are used on the dashboard.
 *
 * Each passing step prints `ok <step> (<seconds>)`; the last line before `passed` is
 * `claimed <slug>`. Any step that fails or times out, and any JavaScript error on the
 * dashboard, ends the run with exit code 1, a message naming the step, and
 * ARTIFACTS_DIR/failure.png.
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import {
  CHROMIUM, CHROMIUM_ARGS, OVERALL_TIMEOUT, STEP_TIMEOUT, distrustWorkspace, failureScreenshot,
  loadChromium, printFailure, seconds, waitForExplorerItem,
} from './harness.mjs';

const USAGE = 'usage: node pool.mjs SOCKET USER TAB TEMPLATE SIZE STUCK_TEMPLATE SERVER_NAME FILE_NAME ARTIFACTS_DIR';
const HEADER = 'X-Forwarded-User';
const REFILL_TIMEOUT = 120_000; // clone + code-server start of a new member, then a refresh
const IDE_TIMEOUT = 60_000;

const [socketPath, user, tabName, template, sizeArg, stuck, serverName, fileName, artifacts] = process.argv.slice(2);
const size = Number(sizeArg);
if (!socketPath || !user || !tabName || !template || !(size > 0) || !stuck || !serverName || !fileName || !artifacts) {
  console.error(USAGE);
  process.exit(2);
}
const chromium = loadChromium();
fs.mkdirSync(artifacts, { recursive: true });

const started = Date.now();
const pageErrors = []; // JavaScript errors of the dashboard: each one fails the run
let proxy = null;
let browser = null;
let dashboard = null;
let activePage = null; // what failure.png shows
let currentStep = 'start the proxy';

const shot = (page, name) => page.screenshot({ path: path.join(artifacts, name) });
const card = (name = template) => dashboard.locator(`#template-items [data-template="${name}"]`);
const poolLine = (name = template) => card(name).locator('[data-field=pool]');
const claimed = () => dashboard.locator('tbody[data-server]', {
  has: dashboard.locator('[data-field=name]', { hasText: serverName }),
});

/** Runs one step: prints it when it passes; the first failure ends the run. */
async function step(name, action) {
  currentStep = name;
  const begin = Date.now();
  await action();
  if (pageErrors.length) throw new Error(`JavaScript error on the dashboard: ${pageErrors.join(' | ')}`);
  console.log(`ok ${name} (${seconds(Date.now() - begin)})`);
}

/**
 * The single sign-on proxy: every request (and WebSocket upgrade) goes on to devbox's
 * socket naming `user` in the header; one the browser sent itself is dropped.
 */
function startProxy() {
  const ours = (name) => name.toLowerCase() === HEADER.toLowerCase();
  // No connection outlives its request: the run ends when the browser is closed.
  const agent = new http.Agent({ keepAlive: false });
  const tunnels = new Set();
  const server = http.createServer((req, res) => {
    const headers = Object.fromEntries(Object.entries(req.headers).filter(([name]) => !ours(name)));
    headers[HEADER] = user;
    const upstream = http.request({ socketPath, agent, method: req.method, path: req.url, headers }, (answer) => {
      res.writeHead(answer.statusCode, answer.rawHeaders);
      answer.pipe(res);
    });
    upstream.on('error', (err) => res.destroy(err));
    req.pipe(upstream);
  });
  server.on('upgrade', (req, socket, head) => {
    const upstream = net.connect(socketPath, () => {
      tunnels.add(upstream);
      upstream.on('close', () => {
        tunnels.delete(upstream);
        socket.destroy();
      });
      socket.on('close', () => upstream.destroy());
      const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        if (!ours(req.rawHeaders[i])) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      }
      lines.push(`${HEADER}: ${user}`);
      upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length) upstream.write(head);
      socket.pipe(upstream).pipe(socket);
    });
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
  });
  server.stop = () => {
    for (const tunnel of tunnels) tunnel.destroy();
    server.closeAllConnections();
    server.close();
    agent.destroy();
  };
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/** Picks a theme in the dashboard's theme menu and waits until the page shows it. */
async function theme(choice) {
  await dashboard.locator('#theme-choice').selectOption(choice);
  await dashboard.locator(`html[data-theme=${choice}]`).waitFor({ state: 'attached' });
}

/** The page in light, then in dark, then back in light. */
async function bothThemes(name) {
  await shot(dashboard, `${name}-light.png`);
  await theme('dark');
  await shot(dashboard, `${name}-dark.png`);
  await theme('light');
}

/** What a card's pool line says, its figures and its text. */
async function poolShown(name = template) {
  const line = poolLine(name);
  const [ready, poolSize, coming, down, text] = await Promise.all([
    line.getAttribute('data-ready'), line.getAttribute('data-size'), line.getAttribute('data-coming'),
    line.getAttribute('data-down'), line.innerText(),
  ]);
  return {
    ready: Number(ready), size: Number(poolSize), coming: Number(coming), down: Number(down),
    text: text.replace(/\s+/g, ' ').trim(),
  };
}

/**
 * Waits until the pool line of `name`'s card says `ready: <ready> of <poolSize>`; its
 * figures and its text agree, and it says "<n> starting" exactly when n > 0 come up and
 * "<n> failing" exactly when n > 0 are down.
 */
async function waitPoolReady(ready, timeout, name = template, poolSize = size) {
  await poolLine(name).and(dashboard.locator(`[data-ready="${ready}"][data-size="${poolSize}"]`)).waitFor({ timeout });
  const shown = await poolShown(name);
  if (!shown.text.includes(`ready: ${ready} of ${poolSize}`)) {
    throw new Error(`the pool line says "${shown.text}", its data says ready ${shown.ready} of ${shown.size}`);
  }
  const hint = shown.text.match(/(\d+) starting/);
  if (Number(hint?.[1] ?? 0) !== shown.coming) {
    throw new Error(`${shown.coming} members come up but the line says "${shown.text}"`);
  }
  const failing = shown.text.match(/(\d+) failing/);
  if (Number(failing?.[1] ?? 0) !== shown.down) {
    throw new Error(`${shown.down} members are down but the line says "${shown.text}"`);
  }
  return shown;
}

/** What the dashboard shows when something goes wrong: the banner, the pool line, the rows. */
async function dashboardState() {
  if (!dashboard || dashboard.isClosed()) return '';
  const parts = [];
  const visibleText = async (locator) => ((await locator.isVisible().catch(() => false))
    ? (await locator.innerText().catch(() => '')).trim() : '');
  const banner = await visibleText(dashboard.locator('#error .banner-text'));
  if (banner) parts.push(`error banner: ${banner}`);
  const dialogError = await visibleText(dashboard.locator('#template-error'));
  if (dialogError) parts.push(`template dialog: ${dialogError}`);
  if (await poolLine().count()) parts.push(`pool line: ${JSON.stringify(await poolShown().catch((e) => e.message))}`);
  for (const row of await dashboard.locator('tbody[data-server]').all()) {
    parts.push(`row ${await row.getAttribute('data-server')}: status=${await row.getAttribute('data-status')}`);
  }
  return parts.join('\n  ');
}

async function cleanup() {
  try {
    await browser?.close();
  } catch (_) { /* the browser is gone already */ }
  proxy?.stop();
}

async function fail(err) {
  printFailure(currentStep, err);
  try {
    const shown = await dashboardState();
    if (shown) console.error(`  dashboard: ${shown}`);
  } catch (_) { /* best effort */ }
  await failureScreenshot(activePage && !activePage.isClosed() ? activePage : dashboard, artifacts);
  await cleanup();
  process.exit(1);
}

const watchdog = setTimeout(() => fail(new Error(`the whole run took longer than ${seconds(OVERALL_TIMEOUT)}`)),
  OVERALL_TIMEOUT);

try {
  let baseUrl = '';
  await step(`start the proxy naming ${user}`, async () => {
    proxy = await startProxy();
    baseUrl = `http://127.0.0.1:${proxy.address().port}/`;
    console.log(`  dashboard at ${baseUrl} through ${socketPath}`);
  });

  await step('launch Chromium', async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    const context = await browser.newContext({ colorScheme: 'light', viewport: { width: 1280, height: 900 } });
    context.setDefaultTimeout(STEP_TIMEOUT);
    dashboard = await context.newPage();
    activePage = dashboard;
    dashboard.on('pageerror', (err) => pageErrors.push(err.stack || err.message || String(err)));
    dashboard.on('console', (message) => {
      if (message.type() === 'error') console.log(`  (dashboard console error: ${message.text()})`);
    });
  });

  await step(`the dashboard shows "${template}" with "ready: ${size} of ${size}" and no server of ${user}`, async () => {
    await dashboard.goto(baseUrl);
    await dashboard.locator('#whoami', { hasText: `signed in as ${user}` }).waitFor();
    await dashboard.locator('#connection[data-state=ok]').waitFor();
    await dashboard.locator(`#template-tabs [data-tab="${tabName}"][aria-selected=true]`).waitFor();
    const shown = await waitPoolReady(size, STEP_TIMEOUT);
    console.log(`  pool line: "${shown.text}"`);
    // A pool whose member cannot come up (its repository is not there yet) says so.
    const none = await waitPoolReady(0, STEP_TIMEOUT, stuck, 1);
    if (none.down !== 1 || none.coming !== 0) throw new Error(`the stuck pool's line says "${none.text}"`);
    console.log(`  ${stuck}: "${none.text}"`);
    // The pool's servers run, but they are nobody's yet: not in the list.
    await dashboard.locator('#servers-empty').waitFor({ state: 'visible' });
    const rows = await dashboard.locator('tbody[data-server]').count();
    if (rows) throw new Error(`${user} sees ${rows} servers before creating any`);
    await bothThemes('pool-ready');
  });

  await step(`the dialog of "${stuck}" says its server comes stopped`, async () => {
    await card(stuck).locator('button[data-action=use-template]').click();
    await dashboard.locator('#template-dialog[open]').waitFor();
    const info = (await dashboard.locator('#template-dialog-info').innerText()).trim();
    if (!info.includes('No prebuilt server is ready')) throw new Error(`the dialog says "${info}"`);
    await shot(dashboard, 'pool-dialog-stuck.png');
    await dashboard.locator('#template-cancel').click();
    await dashboard.locator('#template-dialog').waitFor({ state: 'hidden' });
  });

  let slug = '';
  await step(`create "${serverName}" from the template: it is there running at once`, async () => {
    await card().locator('button[data-action=use-template]').click();
    await dashboard.locator('#template-dialog[open]').waitFor();
    const info = (await dashboard.locator('#template-dialog-info').innerText()).trim();
    if (!info.includes('A prebuilt server is ready')) throw new Error(`the dialog says "${info}"`);
    await dashboard.locator('#template-dialog input[name=name]').fill(serverName);
    await shot(dashboard, 'pool-dialog.png');
    // The status each row of the list first shows, whenever it shows up.
    await dashboard.evaluate(() => {
      const first = {};
      window.devboxTestFirstStatus = first;
      new MutationObserver(() => {
        for (const body of document.querySelectorAll('tbody[data-server]')) {
          if (!(body.dataset.server in first) && body.dataset.status) first[body.dataset.server] = body.dataset.status;
        }
      }).observe(document.querySelector('#servers'), { childList: true, subtree: true, attributes: true });
    });
    const [answer] = await Promise.all([
      dashboard.waitForResponse((r) => r.request().method() === 'POST'
        && new URL(r.url()).pathname.endsWith('/servers/create-from-template')),
      dashboard.locator('#template-create').click(),
    ]);
    const created = await answer.json();
    if (answer.status() !== 201 || created.status !== 'running') {
      throw new Error(`the create answered ${answer.status()}: ${JSON.stringify(created)}`);
    }
    slug = created.slug;
    await dashboard.locator('#template-dialog').waitFor({ state: 'hidden' });
    // The first the list shows of it is a running server with its IDE link.
    await claimed().waitFor();
    const first = await dashboard.evaluate((name) => window.devboxTestFirstStatus[name], slug);
    if (first !== 'running') throw new Error(`the new row first shows "${first}", not running`);
    const status = (await claimed().locator('[data-field=status]').innerText()).trim();
    if (status !== 'running') throw new Error(`the status cell says "${status}"`);
    if (await claimed().getAttribute('data-server') !== slug) throw new Error(`the row is not ${slug}`);
    await claimed().locator('a[data-action=open]').waitFor({ state: 'visible' });
    await claimed().locator('button[data-action=start]').waitFor({ state: 'hidden' });
    await dashboard.locator('#toasts .toast', { hasText: 'a prebuilt server, running' }).first().waitFor();
    console.log(`  ${serverName} is ${slug}, on port ${created.port}`);
  });

  await step('the card counts one fewer ready, then the pool refills', async () => {
    const down = await waitPoolReady(size - 1, STEP_TIMEOUT);
    console.log(`  pool line after the claim: "${down.text}"`);
    await bothThemes('pool-claimed');
    const begin = Date.now();
    const up = await waitPoolReady(size, REFILL_TIMEOUT);
    console.log(`  pool line refilled: "${up.text}" (${seconds(Date.now() - begin)} after the claim showed)`);
    await bothThemes('pool-refilled');
    const rows = await dashboard.locator('tbody[data-server]').count();
    if (rows !== 1) throw new Error(`${user} sees ${rows} servers, not only ${serverName}`);
    if (await claimed().getAttribute('data-status') !== 'running') throw new Error(`${serverName} is no longer running`);
  });

  await step('narrow layout (390×844): the templates card', async () => {
    await dashboard.setViewportSize({ width: 390, height: 844 });
    await poolLine().waitFor({ state: 'visible' });
    const overflow = await dashboard.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await card().scrollIntoViewIfNeeded();
    await card().screenshot({ path: path.join(artifacts, 'pool-narrow.png') });
    if (overflow > 1) throw new Error(`the page scrolls sideways by ${overflow}px at 390px wide`);
    await dashboard.setViewportSize({ width: 1280, height: 900 });
  });

  await step(`Open IDE shows ${fileName} of the template's repository in VS Code's explorer`, async () => {
    const begin = Date.now();
    const [ide] = await Promise.all([
      dashboard.context().waitForEvent('page'),
      claimed().locator('a[data-action=open]').click(),
    ]);
    activePage = ide;
    await ide.locator('.monaco-workbench').waitFor({ timeout: IDE_TIMEOUT });
    await waitForExplorerItem(ide, fileName, IDE_TIMEOUT);
    const elapsed = Date.now() - begin;
    const { prompted } = await distrustWorkspace(ide);
    await shot(ide, 'pool-ide.png');
    console.log(`  IDE at ${new URL(ide.url()).pathname}; explorer showed ${fileName} ${seconds(elapsed)} after the click`
      + `${prompted ? '; answered the workspace trust prompt with "No"' : ''}`);
    await ide.close();
    activePage = dashboard;
  });

  clearTimeout(watchdog);
  await cleanup();
  console.log(`claimed ${slug}`);
  console.log(`passed in ${seconds(Date.now() - started)}`);
} catch (err) {
  clearTimeout(watchdog);
  await fail(err);
}
