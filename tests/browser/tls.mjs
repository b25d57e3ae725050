#!/usr/bin/env node
/*
 * Real-browser test of devbox serving HTTPS itself (`server.tls`; run by
 * tests/browser.rs).
 *
 *   node tests/browser/tls.mjs BASE_URL CERT_FILE ARTIFACTS_DIR TOKEN SLUG FILE SEAT_LINK
 *
 * BASE_URL is `https://localhost:<port>/`; CERT_FILE the server's certificate (PEM),
 * signed by a CA of the test's that no browser knows. SLUG is a running server whose
 * workspace holds FILE, SEAT_LINK a seat link to it.
 *
 * Chromium trusts nothing blindly: it is told to accept the one public key of
 * CERT_FILE (`--ignore-certificate-errors-spki-list`, the SHA-256 of its
 * SubjectPublicKeyInfo), and first, without that, it must refuse devbox's page.
 * Then, in one browser context, it logs in through the dashboard's token dialog (the
 * session cookie must be Secure and HttpOnly), opens SLUG's IDE through the Open IDE
 * link (/vscode/<port>/) and waits until VS Code's explorer shows FILE (the file list
 * arrives over the IDE's WebSocket, which must be a wss:// one that stays open), and
 * opens the server's log panel (lines arrive over wss:// too). In a second context, a
 * participant opens SEAT_LINK and lands in the same IDE at /s/SLUG/, over wss://, with
 * a Secure session cookie of their own.
 *
 * Each passing step prints `ok <step> (<seconds>)`. Any step that fails or times out
 * ends the run with exit code 1, a message naming the step, and ARTIFACTS_DIR/failure.png.
 * Screenshots: tls-dashboard.png, tls-ide.png, tls-seat-ide.png.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  CHROMIUM, CHROMIUM_ARGS, OVERALL_TIMEOUT, STEP_TIMEOUT, distrustWorkspace, failureScreenshot,
  ideNotices, loadChromium, printFailure, seconds, waitForExplorerItem,
} from './harness.mjs';

const USAGE = 'usage: node tls.mjs BASE_URL CERT_FILE ARTIFACTS_DIR TOKEN SLUG FILE SEAT_LINK';
const IDE_TIMEOUT = 60_000; // workbench + explorer over the proxied WebSocket
const SESSION_COOKIE = 'devbox_session';

const [baseArg, certFile, artifacts, token, slug, fileName, seatLink] = process.argv.slice(2);
if (!baseArg || !certFile || !artifacts || !token || !slug || !fileName || !seatLink) {
  console.error(USAGE);
  process.exit(2);
}
const baseUrl = baseArg.endsWith('/') ? baseArg : `${baseArg}/`;
const origin = new URL(baseUrl).origin;

// The one key Chromium is to accept: base64 of the SHA-256 of the certificate's SPKI.
const certificate = new crypto.X509Certificate(fs.readFileSync(certFile));
const spki = crypto.createHash('sha256')
  .update(certificate.publicKey.export({ type: 'spki', format: 'der' }))
  .digest('base64');

const chromium = loadChromium();

fs.mkdirSync(artifacts, { recursive: true });
const started = Date.now();
const pageErrors = []; // the dashboard's JavaScript errors: each one fails the run
const ideErrors = []; // the IDE's, reported only (VS Code is not ours to test)
let browser = null;
let activePage = null; // what failure.png shows
let currentStep = 'launch Chromium';

const shot = (page, name) => page.screenshot({ path: path.join(artifacts, name) });

/** Runs one step: prints it when it passes; the first failure ends the run. */
async function step(name, action) {
  currentStep = name;
  const begin = Date.now();
  await action();
  if (pageErrors.length) throw new Error(`JavaScript error on the dashboard: ${pageErrors.join(' | ')}`);
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

/** The WebSockets `page` opens, as they come: { url, socket }. */
function recordWebSockets(page) {
  const sockets = [];
  page.on('websocket', (socket) => sockets.push({ url: socket.url(), socket }));
  return sockets;
}

/**
 * Checks that `sockets` holds an open wss:// socket to `prefix` (a path of devbox's
 * origin) and no plain ws:// one.
 */
function assertSecureSocket(sockets, prefix) {
  const plain = sockets.filter(({ url }) => !url.startsWith('wss://'));
  if (plain.length) throw new Error(`plain WebSockets: ${plain.map(({ url }) => url).join(', ')}`);
  const wanted = `${origin.replace(/^https:/, 'wss:')}${prefix}`;
  const open = sockets.filter(({ url, socket }) => url.startsWith(wanted) && !socket.isClosed());
  if (!open.length) {
    throw new Error(`no open WebSocket to ${wanted}: ${sockets.map(({ url }) => url).join(', ') || 'none'}`);
  }
  return open[0].url;
}

/** The context's session cookie for devbox's origin, which must be Secure and HttpOnly. */
async function secureSession(context) {
  const cookies = await context.cookies(baseUrl);
  const session = cookies.find((c) => c.name === SESSION_COOKIE);
  if (!session) throw new Error(`no ${SESSION_COOKIE} cookie: ${cookies.map((c) => c.name)}`);
  if (!session.secure || !session.httpOnly) throw new Error(`the session cookie is ${JSON.stringify(session)}`);
  return session;
}

/** Waits in `ide` for the workbench and FILE in its explorer; what it shows then. */
async function waitForIde(ide, sockets, prefix) {
  await ide.locator('.monaco-workbench').waitFor({ timeout: IDE_TIMEOUT });
  await waitForExplorerItem(ide, fileName, IDE_TIMEOUT);
  const { prompted } = await distrustWorkspace(ide);
  const broken = (await ideNotices(ide)).filter((text) => /reconnect|disconnected|cannot|unable|error/i.test(text));
  if (broken.length) throw new Error(`the IDE shows: ${broken.join(' | ')}`);
  const socket = assertSecureSocket(sockets, prefix);
  return `explorer shows ${fileName}; WebSocket ${socket.split('?')[0]}`
    + `${prompted ? '; answered the workspace trust prompt with "No"' : ''}`;
}

const watchdog = setTimeout(() => fail(new Error(`the whole run took longer than ${seconds(OVERALL_TIMEOUT)}`)),
  OVERALL_TIMEOUT);

try {
  await step('without the certificate\'s key pinned, Chromium refuses devbox\'s page', async () => {
    const untrusting = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    try {
      const page = await untrusting.newPage();
      const error = await page.goto(baseUrl).then(() => null, (err) => err);
      if (!error) throw new Error(`Chromium opened ${baseUrl} without trusting its certificate`);
      if (!/ERR_CERT_AUTHORITY_INVALID/.test(error.message)) throw new Error(`unexpected error: ${error.message}`);
      console.log(`  ${error.message.split('\n')[0]}`);
    } finally {
      await untrusting.close();
    }
  });

  let admin = null;
  let dashboard = null;
  await step(`launch Chromium accepting the key sha256/${spki} only`, async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_ARGS, `--ignore-certificate-errors-spki-list=${spki}`],
    });
    admin = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    admin.setDefaultTimeout(STEP_TIMEOUT);
    dashboard = await admin.newPage();
    activePage = dashboard;
    dashboard.on('pageerror', (err) => pageErrors.push(err.stack || err.message || String(err)));
  });

  let dashboardSockets = [];
  await step('the dashboard logs in over https; its session cookie is Secure and HttpOnly', async () => {
    dashboardSockets = recordWebSockets(dashboard);
    await dashboard.goto(baseUrl);
    if (new URL(dashboard.url()).protocol !== 'https:') throw new Error(`landed on ${dashboard.url()}`);
    await dashboard.locator('#token-dialog[open]').waitFor();
    await dashboard.locator('#token-input').fill(token);
    await dashboard.locator('#token-save').click();
    await dashboard.locator('#token-dialog').waitFor({ state: 'hidden' });
    await dashboard.locator('#whoami', { hasText: 'signed in as admin' }).waitFor();
    await dashboard.locator('#connection[data-state=ok]').waitFor();
    await dashboard.locator(`tbody[data-server="${slug}"][data-status=running]`).waitFor();
    const session = await secureSession(admin);
    console.log(`  ${SESSION_COOKIE}: secure=${session.secure} httpOnly=${session.httpOnly} sameSite=${session.sameSite}`);
    await shot(dashboard, 'tls-dashboard.png');
  });

  await step(`Open IDE loads the workbench over wss:// and its explorer shows ${fileName}`, async () => {
    const row = dashboard.locator(`tbody[data-server="${slug}"]`);
    const port = (await row.locator('[data-field=port]').innerText()).trim();
    // Listening from the moment the tab exists: its first WebSocket may come early.
    let sockets = [];
    const listen = (page) => { sockets = recordWebSockets(page); };
    admin.once('page', listen);
    const opened = admin.waitForEvent('page');
    await row.locator('a[data-action=open]').click();
    const ide = await opened;
    activePage = ide;
    ide.on('pageerror', (err) => ideErrors.push(err.message || String(err)));
    const idePath = `/vscode/${port}/`;
    await ide.waitForURL((url) => url.origin === origin && url.pathname.startsWith(idePath), { timeout: IDE_TIMEOUT });
    console.log(`  ${await waitForIde(ide, sockets, idePath)}`);
    await shot(ide, 'tls-ide.png');
    await ide.close();
    activePage = dashboard;
    await dashboard.bringToFront();
  });

  await step('the log panel shows lines streamed over wss://', async () => {
    await dashboard.locator(`tbody[data-server="${slug}"] button[data-action=logs]`).click();
    const panel = dashboard.locator(`[id="logs-${slug}"]`);
    await panel.locator('.log-line').first().waitFor({ state: 'visible' });
    const socket = assertSecureSocket(dashboardSockets, '/ws/logs/');
    console.log(`  ${await panel.locator('.log-line').count()} lines from ${socket.split('?')[0]}`);
  });

  await step(`a participant's seat link opens the IDE at /s/${slug}/ over wss://`, async () => {
    const participant = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    participant.setDefaultTimeout(STEP_TIMEOUT);
    const ide = await participant.newPage();
    activePage = ide;
    ide.on('pageerror', (err) => ideErrors.push(`seat: ${err.message || String(err)}`));
    const sockets = recordWebSockets(ide);
    const answer = await ide.goto(seatLink);
    if (answer.status() !== 200) throw new Error(`the seat link answered ${answer.status()}`);
    const idePath = `/s/${slug}/`;
    await ide.waitForURL((url) => url.origin === origin && url.pathname.startsWith(idePath), { timeout: IDE_TIMEOUT });
    console.log(`  ${await waitForIde(ide, sockets, idePath)}`);
    await secureSession(participant);
    await shot(ide, 'tls-seat-ide.png');
    await participant.close();
  });

  clearTimeout(watchdog);
  if (ideErrors.length) console.log(`  (IDE page errors, not counted: ${ideErrors.join(' | ')})`);
  await cleanup();
  console.log(`passed in ${seconds(Date.now() - started)}`);
} catch (err) {
  clearTimeout(watchdog);
  await fail(err);
}
