#!/usr/bin/env node
/*
 * Real-browser end-to-end test of the devbox dashboard (run by tests/browser.rs).
 *
 *   node tests/browser/dashboard.mjs BASE_URL GIT_URL ARTIFACTS_DIR FILE_NAME TOKEN
 *
 * Drives Debian's Chromium (/usr/bin/chromium, headless, fresh profile) through
 * playwright-core, which is found through NODE_PATH (scripts/install-browser.sh prints
 * the directory) and never downloads a browser. Against a running devbox whose
 * workspaces may be `file://` git URLs and which needs the API token TOKEN, it:
 *   logs in through the token dialog and checks that no script of the page can read the
 *   token or the session (not in document.cookie, not in localStorage); lets a page of
 *   another origin on the same site (another loopback port, served by this script) try a
 *   cross-origin fetch PUT of a spec, a no-cors POST that would start a server, and a
 *   form POST that would create one, and checks through the API that none happened;
 *   creates a server through the form (a display name with a space, workspace = GIT_URL),
 *   starts it with its Start button and waits for `running`, screenshots the narrow
 *   (390×844) layout, opens the IDE through the Open IDE link (a new tab on
 *   /vscode/<port>/) and waits until VS Code's explorer shows FILE_NAME (the file list
 *   arrives over the proxied WebSocket), answers the workspace trust prompt, opens the
 *   file in the editor, opens the server's log panel on the dashboard and sees lines,
 *   stops it, opens its IDE URL and starts it again with the stopped page's Start button
 *   (landing in the IDE), deletes it through the confirm dialog and waits until its row
 *   is gone.
 * Only the selectors listed at the top of ui/app.js are used on the dashboard.
 *
 * Each passing step prints `ok <step> (<seconds>)`. Any step that fails or times out,
 * and any JavaScript error on the dashboard (pageerror), ends the run with exit code 1,
 * a message naming the step, and ARTIFACTS_DIR/failure.png.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import {
  CHROMIUM, CHROMIUM_ARGS, OVERALL_TIMEOUT, STEP_TIMEOUT, distrustWorkspace, explorerItem,
  failureScreenshot, ideNotices, loadChromium, printFailure, seconds, waitForExplorerItem,
} from './harness.mjs';

const USAGE = 'usage: node dashboard.mjs BASE_URL GIT_URL ARTIFACTS_DIR FILE_NAME TOKEN';
const DISPLAY_NAME = 'Browser Test';
const SLUG = 'Browser-Test'; // the API's file stem of DISPLAY_NAME (spaces become '-')
const START_TIMEOUT = 60_000; // clone + code-server start + health
const IDE_TIMEOUT = 60_000; // workbench + explorer over the proxied WebSocket

const [baseArg, gitUrl, artifacts, fileName, token] = process.argv.slice(2);
if (!baseArg || !gitUrl || !artifacts || !fileName || !token) {
  console.error(USAGE);
  process.exit(2);
}
const baseUrl = baseArg.endsWith('/') ? baseArg : `${baseArg}/`;

const chromium = loadChromium();

fs.mkdirSync(artifacts, { recursive: true });
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'devbox-chromium-'));
const started = Date.now();
const pageErrors = []; // JavaScript errors of the dashboard: each one fails the run
const ideErrors = []; // the IDE's, reported only (VS Code is not ours to test)
let context = null;
let dashboard = null;
let activePage = null; // what failure.png shows
let currentStep = 'launch Chromium';

const shot = (page, name, options = {}) => page.screenshot({ path: path.join(artifacts, name), ...options });
const server = () => dashboard.locator(`tbody[data-server="${SLUG}"]`);

/** Runs one step: prints it when it passes; the first failure ends the run. */
async function step(name, action) {
  currentStep = name;
  const begin = Date.now();
  await action();
  if (pageErrors.length) throw new Error(`JavaScript error on the dashboard: ${pageErrors.join(' | ')}`);
  console.log(`ok ${name} (${seconds(Date.now() - begin)})`);
}

/** Waits until the server's row reports `status` (data-status, as the status cell says). */
async function waitStatus(status, timeout) {
  const row = server();
  await row.and(dashboard.locator(`[data-status="${status}"]`)).waitFor({ timeout });
  const text = (await row.locator('[data-field=status]').innerText()).trim();
  if (text !== status) throw new Error(`the status cell says "${text}", data-status says "${status}"`);
}

/** What the dashboard shows when something goes wrong: the banner, the row's error and message. */
async function dashboardState() {
  if (!dashboard || dashboard.isClosed()) return '';
  const parts = [];
  const visibleText = async (locator) => ((await locator.isVisible().catch(() => false))
    ? (await locator.innerText().catch(() => '')).trim() : '');
  const banner = await visibleText(dashboard.locator('#error .banner-text'));
  if (banner) parts.push(`error banner: ${banner}`);
  const formError = await visibleText(dashboard.locator('#create-error'));
  if (formError) parts.push(`form error: ${formError}`);
  if (await server().count()) {
    const row = server();
    parts.push(`row: status=${await row.getAttribute('data-status')} phase=${await row.getAttribute('data-phase')}`
      + ` busy=${await row.getAttribute('data-busy')}`);
    const message = await visibleText(row.locator('[data-field=message]'));
    if (message) parts.push(`row message: ${message}`);
    const error = await visibleText(row.locator('[data-field=error]'));
    if (error) parts.push(`row error: ${error}`);
  }
  return parts.join('\n  ');
}

async function fail(err) {
  printFailure(currentStep, err);
  try {
    const state = await dashboardState();
    if (state) console.error(`  dashboard: ${state}`);
  } catch (_) { /* best effort */ }
  if (ideErrors.length) console.error(`  IDE page errors: ${ideErrors.join(' | ')}`);
  await failureScreenshot(activePage && !activePage.isClosed() ? activePage : dashboard, artifacts);
  await cleanup();
  process.exit(1);
}

async function cleanup() {
  try {
    await context?.close();
  } catch (_) { /* the browser is gone already */ }
  fs.rmSync(profile, { recursive: true, force: true });
}

const watchdog = setTimeout(() => fail(new Error(`the whole run took longer than ${seconds(OVERALL_TIMEOUT)}`)),
  OVERALL_TIMEOUT);

try {
  await step('launch Chromium', async () => {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 900 },
    });
    context.setDefaultTimeout(STEP_TIMEOUT);
    dashboard = context.pages()[0] || await context.newPage();
    activePage = dashboard;
    dashboard.on('pageerror', (err) => pageErrors.push(err.stack || err.message || String(err)));
    dashboard.on('console', (message) => {
      if (message.type() === 'error') console.log(`  (dashboard console error: ${message.text()})`);
    });
  });

  await step('open the dashboard; it asks for the token and logs in', async () => {
    await dashboard.goto(baseUrl);
    await dashboard.locator('#token-dialog[open]').waitFor();
    await dashboard.locator('#token-input').fill(token);
    await dashboard.locator('#token-save').click();
    await dashboard.locator('#token-dialog').waitFor({ state: 'hidden' });
    await dashboard.locator('#logout-button').waitFor({ state: 'visible' });
    await dashboard.locator('#whoami', { hasText: 'signed in as admin' }).waitFor();
    await dashboard.locator('#connection[data-state=ok]').waitFor();
    await dashboard.locator('#servers-empty').waitFor({ state: 'visible' }); // a fresh devbox has no servers
    await dashboard.locator('#create-form input[name=workspace][value=git]').waitFor();
  });

  await step('no script of the page can read the token or the session', async () => {
    const seen = await dashboard.evaluate(() => ({
      cookie: document.cookie,
      storage: JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }),
    }));
    for (const [where, text] of Object.entries(seen)) {
      if (text.includes(token)) throw new Error(`the token is readable in ${where}: ${text}`);
      if (text.includes('devbox_session')) throw new Error(`the session is readable in ${where}: ${text}`);
    }
  });

  await step('a page of another origin on the same site changes nothing', async () => {
    const target = baseUrl.replace(/\/$/, '');
    const page = `<!doctype html><title>evil</title><body>
<iframe name="sink"></iframe>
<form id="f" method="POST" enctype="multipart/form-data" target="sink"
      action="${target}/servers/create-with-workspace">
  <input name="name" value="evil-form"><input name="github_url" value="https://example.invalid/r.git">
</form>
<script>
(async () => {
  const results = {};
  try {
    const r = await fetch('${target}/specs/evil-fetch', { method: 'PUT', credentials: 'include',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ apiVersion: 'devbox/v1', kind: 'DevServer', metadata: { name: 'evil-fetch' },
        spec: { state: 'running' } }) });
    results.put = 'answered ' + r.status;
  } catch (err) { results.put = 'refused: ' + err.message; }
  try {
    await fetch('${target}/servers/create-metadata', { method: 'POST', mode: 'no-cors', credentials: 'include',
      headers: { 'Content-Type': 'text/plain' }, body: '{"name": "evil-simple"}' });
    results.simple = 'sent';
  } catch (err) { results.simple = 'refused: ' + err.message; }
  document.getElementById('f').submit();
  await new Promise((resolve) => document.querySelector('iframe').addEventListener('load', resolve));
  results.form = 'sent';
  document.title = 'done ' + JSON.stringify(results);
})();
</script></body>`;
    const evil = http.createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(page);
    });
    await new Promise((resolve) => evil.listen(0, '127.0.0.1', resolve));
    const attacker = await context.newPage();
    activePage = attacker;
    try {
      await attacker.goto(`http://127.0.0.1:${evil.address().port}/`);
      await attacker.waitForFunction(() => document.title.startsWith('done'), null, { timeout: STEP_TIMEOUT });
      const title = await attacker.title();
      console.log(`  foreign page: ${title}`);
      if (!title.includes('"put":"refused')) throw new Error(`the cross-origin PUT was not refused: ${title}`);
    } finally {
      await attacker.close();
      evil.close();
      activePage = dashboard;
    }
    const listed = await dashboard.evaluate(async () => (await fetch('servers')).json());
    const names = listed.map((s) => s.name);
    if (names.some((n) => n.startsWith('evil'))) throw new Error(`a foreign page created servers: ${names}`);
  });

  await step(`create "${DISPLAY_NAME}" with a git workspace through the form`, async () => {
    const form = dashboard.locator('#create-form');
    await form.locator('input[name=name]').fill(DISPLAY_NAME);
    await form.locator('input[name=workspace][value=git]').check();
    await form.locator('input[name=github_url]').fill(gitUrl);
    await form.locator('input[name=start_now]').uncheck();
    await dashboard.locator('#create-submit').click();
    await waitStatus('stopped', STEP_TIMEOUT);
    const name = (await server().locator('[data-field=name]').innerText()).trim();
    if (name !== DISPLAY_NAME) throw new Error(`the row is named "${name}", not "${DISPLAY_NAME}"`);
    if (await dashboard.locator('#create-error').isVisible()) {
      throw new Error(`the form reports: ${await dashboard.locator('#create-error').innerText()}`);
    }
    await dashboard.locator('#servers-empty').waitFor({ state: 'hidden' });
    await shot(dashboard, 'dashboard-created.png');
  });

  let idePath = '';
  await step('start it with its Start button; the row turns running', async () => {
    await server().locator('button[data-action=start]').click();
    await waitStatus('running', START_TIMEOUT);
    // The start request answers once code-server is healthy; the button is no longer busy.
    await server().and(dashboard.locator(':not([data-busy])')).waitFor();
    const open = server().locator('a[data-action=open]');
    await open.waitFor({ state: 'visible' });
    const port = (await server().locator('[data-field=port]').innerText()).trim();
    idePath = new URL(await open.getAttribute('href'), baseUrl).pathname;
    if (idePath !== `/vscode/${port}/`) throw new Error(`Open IDE links to ${idePath}, the port is ${port}`);
    await shot(dashboard, 'dashboard-running.png');
  });

  await step('narrow layout (390×844)', async () => {
    await dashboard.setViewportSize({ width: 390, height: 844 });
    await server().locator('button[data-action=stop]').waitFor({ state: 'visible' });
    const overflow = await dashboard.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await shot(dashboard, 'dashboard-narrow.png');
    if (overflow > 1) throw new Error(`the page scrolls sideways by ${overflow}px at 390px wide`);
    await dashboard.setViewportSize({ width: 1280, height: 900 });
  });

  await step(`Open IDE shows ${fileName} in VS Code's explorer and opens it`, async () => {
    const begin = Date.now();
    const [ide] = await Promise.all([
      context.waitForEvent('page'),
      server().locator('a[data-action=open]').click(),
    ]);
    activePage = ide;
    ide.on('pageerror', (err) => ideErrors.push(err.message || String(err)));
    await ide.waitForURL((url) => url.pathname.startsWith(idePath), { timeout: IDE_TIMEOUT });
    await ide.locator('.monaco-workbench').waitFor({ timeout: IDE_TIMEOUT });
    await waitForExplorerItem(ide, fileName, IDE_TIMEOUT);
    const elapsed = Date.now() - begin;
    // The trust prompt blocks every click: answered now, and again should it come
    // later, before any action.
    const { prompted, trust, distrust } = await distrustWorkspace(ide);
    await ide.addLocatorHandler(trust, () => distrust.click()); // registered after: it would race the wait
    // Its contents come over the same WebSocket: open it and see text in the editor.
    await explorerItem(ide, fileName).first().click();
    const editor = ide.locator('.editor-group-container .monaco-editor .view-lines');
    await ide.locator('.tabs-container [role=tab]', { hasText: fileName }).waitFor({ timeout: IDE_TIMEOUT });
    await editor.filter({ hasText: /\S/ }).first().waitFor({ timeout: IDE_TIMEOUT });
    const notices = await ideNotices(ide);
    const broken = notices.filter((text) => /reconnect|disconnected|cannot|unable|error/i.test(text));
    await shot(ide, 'ide-explorer.png');
    if (broken.length) throw new Error(`the IDE shows: ${broken.join(' | ')}`);
    const firstLine = (await editor.first().innerText()).split('\n')[0];
    console.log(`  IDE at ${new URL(ide.url()).pathname}${new URL(ide.url()).search}; explorer showed`
      + ` ${fileName} ${seconds(elapsed)} after the click; its editor starts "${firstLine}";`
      + ` ${prompted ? 'answered the workspace trust prompt with "No"' : 'no workspace trust prompt'}`
      + `${notices.length ? `; notices: ${notices.join(' | ')}` : ''}`);
    if (ideErrors.length) console.log(`  (IDE page errors, not counted: ${ideErrors.join(' | ')})`);
    await ide.close();
    activePage = dashboard;
    await dashboard.bringToFront();
  });

  await step('a page the IDE can read, framed by another port or opened in a tab, runs nothing as devbox', async () => {
    // code-server serves any file its user can read at vscode-remote-resource?path=…;
    // a participant can write such a file. Its script tries to PUT a spec as the
    // signed-in operator.
    const planted = path.join(profile, 'planted.html');
    fs.writeFileSync(planted, `<!doctype html><title>planted</title><script>
document.title = 'ran';
fetch('/specs/evil-resource', { method: 'PUT', headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({ apiVersion: 'devbox/v1', kind: 'DevServer', metadata: { name: 'evil-resource' },
    spec: { state: 'stopped' } }) }).then((r) => { document.title = 'put ' + r.status; });
</script>`);
    const resource = new URL(`${idePath}vscode-remote-resource?path=${encodeURIComponent(planted)}`, baseUrl).href;
    // The door is real: devbox's own page reads the file through it, marked as no page of devbox's.
    const probe = await dashboard.evaluate(async (url) => {
      const r = await fetch(url);
      return { status: r.status, csp: r.headers.get('content-security-policy'), body: await r.text() };
    }, resource);
    if (probe.status !== 200 || !probe.body.includes('planted')) throw new Error(`the resource answered ${probe.status}`);
    if (probe.csp !== 'sandbox') throw new Error(`the resource's CSP is ${probe.csp}, not sandbox`);
    const framing = http.createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(`<!doctype html><title>framing</title><iframe src="${resource}"></iframe>`);
    });
    await new Promise((resolve) => framing.listen(0, '127.0.0.1', resolve));
    const attacker = await context.newPage();
    activePage = attacker;
    try {
      const answered = attacker.waitForResponse((r) => r.url() === resource);
      await attacker.goto(`http://127.0.0.1:${framing.address().port}/`);
      const framed = await answered;
      if (framed.status() !== 403) throw new Error(`framed by another port, the file answered ${framed.status()}`);
      const opened = await attacker.goto(resource);
      if (opened.status() !== 200) throw new Error(`opened in a tab, the file answered ${opened.status()}`);
      await attacker.waitForTimeout(1000);
      const title = await attacker.title();
      if (title !== 'planted') throw new Error(`the planted page's script ran on devbox's origin: "${title}"`);
    } finally {
      await attacker.close();
      framing.close();
      activePage = dashboard;
    }
    const listed = await dashboard.evaluate(async () => (await fetch('servers')).json());
    if (listed.some((s) => s.name.startsWith('evil'))) throw new Error(`the planted page created a server`);
  });

  await step('the log panel shows lines', async () => {
    await server().locator('button[data-action=logs]').click();
    const panel = dashboard.locator(`[id="logs-${SLUG}"]`);
    await panel.waitFor({ state: 'visible' });
    await panel.locator('.log-line').first().waitFor({ state: 'visible' });
    console.log(`  ${await panel.locator('.log-line').count()} lines`);
  });

  await step('stop it with its Stop button; the row turns stopped', async () => {
    await server().locator('button[data-action=stop]').click();
    await waitStatus('stopped', STEP_TIMEOUT);
    await server().and(dashboard.locator(':not([data-busy])')).waitFor();
    await server().locator('a[data-action=open]').waitFor({ state: 'hidden' });
    await shot(dashboard, 'dashboard-stopped.png');
  });

  await step('the stopped IDE\'s page starts it with its Start button and opens the IDE', async () => {
    const ide = await context.newPage();
    activePage = ide;
    ide.on('pageerror', (err) => pageErrors.push(`IDE start page: ${err.stack || err.message}`));
    try {
      const answer = await ide.goto(new URL(idePath, baseUrl).href);
      if (answer.status() !== 503) throw new Error(`the stopped IDE answered ${answer.status()}`);
      const start = ide.locator('#ide-start');
      await start.waitFor({ state: 'visible' });
      await start.click();
      await ide.locator('.monaco-workbench').waitFor({ timeout: IDE_TIMEOUT });
      if (!new URL(ide.url()).pathname.startsWith(idePath)) throw new Error(`landed on ${ide.url()}`);
    } finally {
      await ide.close();
      activePage = dashboard;
    }
    await waitStatus('running', STEP_TIMEOUT);
  });

  await step('delete it through the confirm dialog; the row disappears', async () => {
    await server().locator('button[data-action=delete]').click();
    await dashboard.locator('#confirm-dialog[open]').waitFor();
    await dashboard.locator('#confirm-yes').click();
    await server().waitFor({ state: 'detached' });
    await dashboard.locator('#servers-empty').waitFor({ state: 'visible' });
    // A refresh (↻) asked for after the delete must not bring it back.
    const refreshed = dashboard.waitForRequest((r) => r.method() === 'GET' && new URL(r.url()).pathname.endsWith('/servers'));
    await dashboard.locator('#refresh').click();
    const listed = await (await (await refreshed).response()).json();
    if (listed.some((s) => s.slug === SLUG)) throw new Error(`GET /servers still lists ${SLUG}`);
    await dashboard.locator('#connection[data-state=ok]').waitFor();
    if (await server().count()) throw new Error('the row came back after a refresh');
  });

  clearTimeout(watchdog);
  await cleanup();
  console.log(`passed in ${seconds(Date.now() - started)}`);
} catch (err) {
  clearTimeout(watchdog);
  await fail(err);
}
