#!/usr/bin/env node
/*
 * Real-browser test of per-seat access on a devbox with an origin per IDE (run by
 * tests/browser.rs).
 *
 *   node tests/browser/seats.mjs BASE_URL ARTIFACTS_DIR NAME FILE LINK NAME FILE LINK
 *
 * BASE_URL is devbox's public URL (`http://devbox.localhost:<port>/`, with
 * `server.ide_subdomains: true`: each IDE is at `http://<name>.devbox.localhost:<port>/`,
 * and Chromium resolves `*.localhost` to loopback by itself). Each NAME FILE LINK is a
 * running server, a file only its workspace holds, and its seat link. The first seat
 * is called "first" below, the second "second".
 *
 * Drives Debian's Chromium (/usr/bin/chromium, headless) through playwright-core,
 * found through NODE_PATH, with one browser context (a fresh profile) per participant:
 *   1. each context opens its seat link and lands in its own IDE on its own origin
 *      (the page's host is `<name>.devbox.localhost:<port>`), VS Code's explorer shows
 *      its own FILE and not the other seat's, and the IDE's cookie is HttpOnly and of
 *      that host only;
 *   2. each context opens the other's IDE origin and gets no IDE: it is sent to
 *      devbox's origin, which answers 404; `/s/<other>/` there is a 404 too;
 *   3. the first context's session is live on devbox's origin (a typed URL of the API
 *      lists its server), yet a page of an app served through its IDE (code-server's
 *      `/proxy/<port>/`, to a small HTTP server this script runs on 127.0.0.1) can
 *      neither read it (document.cookie holds no devbox cookie) nor use it: its fetch
 *      of devbox's `/servers`, its PUT of a spec and its no-cors POST that would create a
 *      server are refused or answered 401/403 (tests/browser.rs then checks that no
 *      spec was created).
 *
 * Each passing step prints `ok <step> (<seconds>)`. Any step that fails or times out
 * ends the run with exit code 1, a message naming the step, and ARTIFACTS_DIR/failure.png.
 * Screenshots: seat-<name>-ide.png for each seat, seat-<first>-app.png.
 */
import fs from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import {
  CHROMIUM, CHROMIUM_ARGS, OVERALL_TIMEOUT, STEP_TIMEOUT, distrustWorkspace, explorerItem,
  failureScreenshot, ideNotices, loadChromium, printFailure, seconds, waitForExplorerItem,
} from './harness.mjs';

const USAGE = 'usage: node seats.mjs BASE_URL ARTIFACTS_DIR NAME FILE LINK NAME FILE LINK';
const IDE_TIMEOUT = 60_000; // seat page + ticket + workbench + explorer over the WebSocket
const IDE_COOKIE = 'devbox_ide';

const [baseArg, artifacts, ...seatArgs] = process.argv.slice(2);
if (!baseArg || !artifacts || seatArgs.length !== 6 || seatArgs.some((arg) => !arg)) {
  console.error(USAGE);
  process.exit(2);
}
const baseUrl = baseArg.endsWith('/') ? baseArg : `${baseArg}/`;
const baseHost = new URL(baseUrl).host; // devbox.localhost:<port>
const seats = [0, 3].map((at) => {
  const [name, file, link] = seatArgs.slice(at, at + 3);
  return { name, file, link, host: `${name}.${baseHost}`, context: null, ide: null };
});
const [first, second] = seats;

const chromium = loadChromium();

fs.mkdirSync(artifacts, { recursive: true });
const started = Date.now();
const ideErrors = []; // the IDEs' JavaScript errors, reported only (VS Code is not ours to test)
let browser = null;
let activePage = null; // what failure.png shows
let currentStep = 'launch Chromium';

const shot = (page, name) => page.screenshot({ path: path.join(artifacts, name) });

/** Runs one step: prints it when it passes; the first failure ends the run. */
async function step(name, action) {
  currentStep = name;
  const begin = Date.now();
  await action();
  console.log(`ok ${name} (${seconds(Date.now() - begin)})`);
}

async function fail(err) {
  printFailure(currentStep, err);
  if (ideErrors.length) console.error(`  IDE page errors: ${ideErrors.join(' | ')}`);
  if (activePage && !activePage.isClosed()) console.error(`  page: ${activePage.url()}`);
  await failureScreenshot(activePage, artifacts);
  await cleanup();
  process.exit(1);
}

async function cleanup() {
  try {
    await browser?.close();
  } catch (_) { /* the browser is gone already */ }
}

/** Opens `seat`'s link in its context and waits for its IDE on its origin, showing its file. */
async function openSeat(seat, other) {
  const ide = await seat.context.newPage();
  seat.ide = ide;
  activePage = ide;
  ide.on('pageerror', (err) => ideErrors.push(`${seat.name}: ${err.message || String(err)}`));
  const begin = Date.now();
  const answer = await ide.goto(seat.link);
  if (answer.status() !== 200) throw new Error(`the seat link answered ${answer.status()}`);
  // The seat page signs in and refreshes to /s/<name>/, which sends the browser on to
  // the IDE's origin with a one-time ticket.
  await ide.waitForURL((url) => url.host === seat.host && !url.pathname.startsWith('/__devbox/'),
    { timeout: IDE_TIMEOUT });
  await ide.locator('.monaco-workbench').waitFor({ timeout: IDE_TIMEOUT });
  await waitForExplorerItem(ide, seat.file, IDE_TIMEOUT);
  const elapsed = Date.now() - begin;
  const { prompted } = await distrustWorkspace(ide);
  // The explorer lists the workspace's folder in one answer: the other seat's file,
  // were it there, would show with this one.
  const shown = (await ide.locator('.monaco-workbench .explorer-folders-view [role=treeitem]').allInnerTexts())
    .map((text) => text.trim());
  if (await explorerItem(ide, other.file).count()) {
    throw new Error(`${seat.name}'s explorer shows ${other.file}: ${shown.join(', ')}`);
  }
  const broken = (await ideNotices(ide)).filter((text) => /reconnect|disconnected|cannot|unable|error/i.test(text));
  await shot(ide, `seat-${seat.name}-ide.png`);
  if (broken.length) throw new Error(`the IDE shows: ${broken.join(' | ')}`);
  // The IDE's cookie: of this host only, and out of reach of the page's scripts.
  const cookies = await seat.context.cookies(`http://${seat.host}/`);
  const ideCookie = cookies.find((c) => c.name === IDE_COOKIE);
  if (!ideCookie) throw new Error(`no ${IDE_COOKIE} cookie for ${seat.host}: ${cookies.map((c) => c.name)}`);
  if (!ideCookie.httpOnly || ideCookie.domain !== seat.host.split(':')[0]) {
    throw new Error(`the IDE's cookie is ${JSON.stringify(ideCookie)}`);
  }
  const url = new URL(ide.url());
  console.log(`  ${seat.name}: IDE at ${url.host}${url.pathname}${url.search}, explorer showed ${seat.file}`
    + ` ${seconds(elapsed)} after opening the link (rows: ${shown.join(', ')});`
    + ` ${prompted ? 'answered the workspace trust prompt with "No"' : 'no workspace trust prompt'}`);
}

/** `seat`'s context asks for `other`'s IDE, on its origin and on devbox's: no IDE, 404. */
async function refused(seat, other) {
  const page = await seat.context.newPage();
  activePage = page;
  try {
    const sent = await page.goto(`http://${other.host}/`);
    const landed = new URL(page.url());
    if (landed.host !== baseHost || sent.status() !== 404) {
      throw new Error(`${other.name}'s IDE origin answered ${seat.name} ${sent.status()} at ${page.url()}`);
    }
    if (await page.locator('.monaco-workbench').count()) throw new Error(`${seat.name} sees a workbench at ${page.url()}`);
    const direct = await page.goto(`${baseUrl}s/${other.name}/`);
    if (direct.status() !== 404 || new URL(page.url()).host !== baseHost) {
      throw new Error(`/s/${other.name}/ answered ${seat.name} ${direct.status()} at ${page.url()}`);
    }
    if (await page.locator('.monaco-workbench').count()) throw new Error(`${seat.name} sees a workbench at ${page.url()}`);
    console.log(`  ${seat.name} → http://${other.host}/: sent to ${landed.pathname}, 404; /s/${other.name}/: 404`);
  } finally {
    await page.close();
  }
}

/** The app's page: tries devbox's API with the browser's credentials, reports in its title. */
function appPage() {
  const api = baseUrl.replace(/\/$/, '');
  return `<!doctype html><title>app</title><body><p>An app behind the IDE</p><script>
(async () => {
  const results = { cookie: document.cookie };
  try {
    const r = await fetch('${api}/servers', { credentials: 'include' });
    results.list = 'answered ' + r.status + ' ' + (await r.text()).slice(0, 200);
  } catch (err) { results.list = 'refused: ' + err.message; }
  try {
    const r = await fetch('${api}/specs/evil-app', { method: 'PUT', credentials: 'include',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ apiVersion: 'devbox/v1', kind: 'DevServer', metadata: { name: 'evil-app' },
        spec: { state: 'running' } }) });
    results.put = 'answered ' + r.status;
  } catch (err) { results.put = 'refused: ' + err.message; }
  try {
    await fetch('${api}/servers/create-metadata', { method: 'POST', mode: 'no-cors', credentials: 'include',
      headers: { 'Content-Type': 'text/plain' }, body: '{"name": "evil-simple"}' });
    results.post = 'sent';
  } catch (err) { results.post = 'refused: ' + err.message; }
  document.title = 'done ' + JSON.stringify(results);
})();
</script></body>`;
}

const watchdog = setTimeout(() => fail(new Error(`the whole run took longer than ${seconds(OVERALL_TIMEOUT)}`)),
  OVERALL_TIMEOUT);

try {
  await step('launch Chromium, a context per participant', async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    for (const seat of seats) {
      seat.context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      seat.context.setDefaultTimeout(STEP_TIMEOUT);
    }
  });

  for (const [seat, other] of [[first, second], [second, first]]) {
    await step(`${seat.name} opens their seat link and lands in their own IDE at ${seat.host},`
      + ` showing ${seat.file} and not ${other.file}`, () => openSeat(seat, other));
  }

  for (const [seat, other] of [[first, second], [second, first]]) {
    await step(`${seat.name} gets no IDE at ${other.host} nor at /s/${other.name}/ (404)`,
      () => refused(seat, other));
  }

  await step(`an app served through ${first.name}'s IDE can neither read nor use the dashboard's session`, async () => {
    // The session is live on devbox's origin: a typed URL of the API answers with it.
    const check = await first.context.newPage();
    activePage = check;
    const listed = await check.goto(`${baseUrl}servers`);
    const names = listed.status() === 200 ? (await listed.json()).map((s) => s.slug) : [];
    await check.close();
    if (names.join() !== first.name) {
      throw new Error(`${first.name}'s session on devbox's origin lists ${JSON.stringify(names)} (${listed.status()})`);
    }

    const requested = [];
    const app = http.createServer((req, res) => {
      requested.push(req.url);
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(appPage());
    });
    await new Promise((resolve) => app.listen(0, '127.0.0.1', resolve));
    const page = await first.context.newPage();
    activePage = page;
    // What devbox's origin answered the app's requests, read from the network layer
    // (DevTools protocol): a page sees no answer the CORS check withholds, the network does.
    const sent = new Map(); // requestId -> "METHOD /path"
    // An answer's status by request id. CDP sends the *ExtraInfo events in no fixed
    // order with the others: an answer may be reported before its request.
    const statuses = new Map();
    const answers = () => [...sent].filter(([id]) => statuses.has(id))
      .map(([id, request]) => `${request} ${statuses.get(id)}`); // "METHOD /path STATUS"
    const cdp = await first.context.newCDPSession(page);
    cdp.on('Network.requestWillBeSent', ({ requestId, request }) => {
      const url = new URL(request.url);
      if (url.host === baseHost) sent.set(requestId, `${request.method} ${url.pathname}`);
    });
    cdp.on('Network.responseReceivedExtraInfo', ({ requestId, statusCode }) => {
      statuses.set(requestId, statusCode);
    });
    await cdp.send('Network.enable');
    try {
      const appUrl = `http://${first.host}/proxy/${app.address().port}/`;
      const opened = await page.goto(appUrl);
      if (opened.status() !== 200 || new URL(page.url()).host !== first.host) {
        throw new Error(`the app answered ${opened.status()} at ${page.url()}`);
      }
      if (!requested.length) throw new Error('the app page did not come from the app');
      await page.waitForFunction(() => document.title.startsWith('done'), null, { timeout: STEP_TIMEOUT });
      const results = JSON.parse((await page.title()).slice('done '.length));
      await shot(page, `seat-${first.name}-app.png`);
      console.log(`  app at ${appUrl} (it got ${requested.join(', ')}): ${JSON.stringify(results)}`);
      if (results.cookie.includes('devbox')) throw new Error(`the app reads a devbox cookie: ${results.cookie}`);
      const refusedOr = (outcome) => outcome.startsWith('refused') || /^answered 40[13]\b/.test(outcome);
      if (!refusedOr(results.list)) throw new Error(`the app's GET /servers was ${results.list}`);
      if (!refusedOr(results.put)) throw new Error(`the app's PUT of a spec was ${results.put}`);
      // Every request the app got to devbox was turned away there, not only withheld
      // from the page by the browser.
      const reached = [...sent.values()];
      for (const request of ['GET /servers', 'PUT /specs/evil-app', 'POST /servers/create-metadata']) {
        if (!reached.includes(request)) throw new Error(`the app's ${request} never left: ${reached.join('; ')}`);
      }
      // A request whose CORS preflight (OPTIONS of its path) was refused is never sent.
      const answered = (request) => answers().some((a) => a.startsWith(`${request} `)
        || a.startsWith(`OPTIONS ${request.split(' ')[1]} `));
      // The network layer may report an answer after the page has moved on.
      const unanswered = () => [...sent.values()].filter((request) => !answered(request));
      for (const until = Date.now() + STEP_TIMEOUT; unanswered().length && Date.now() < until;) {
        await page.waitForTimeout(100);
      }
      console.log(`  devbox's origin answered: ${answers().join('; ') || 'nothing'}`);
      if (unanswered().length) throw new Error(`no answer seen to ${unanswered().join('; ')}`);
      const accepted = answers().filter((a) => !/ 40[13]$/.test(a));
      if (accepted.length) throw new Error(`devbox's origin accepted the app's requests: ${accepted.join('; ')}`);
    } finally {
      await page.close();
      app.close();
    }
  });

  clearTimeout(watchdog);
  if (ideErrors.length) console.log(`  (IDE page errors, not counted: ${ideErrors.join(' | ')})`);
  await cleanup();
  console.log(`passed in ${seconds(Date.now() - started)}`);
} catch (err) {
  clearTimeout(watchdog);
  await fail(err);
}
