#!/usr/bin/env node
/*
 * Real-browser check of an IDE that runs as a Slurm job (run by tests/slurm.rs).
 *
 *   node tests/browser/slurm_ide.mjs IDE_URL ARTIFACTS_DIR FILE
 *
 * Opens IDE_URL (devbox's /vscode/<port>/ of a server whose code-server runs as a Slurm
 * job with password auth; devbox signs in on the browser's behalf) in Debian's Chromium
 * (headless, through playwright-core found on NODE_PATH), waits for VS Code's workbench
 * and for its explorer to show FILE (read from the job over the IDE's WebSocket), and
 * checks that the IDE shows no connection trouble and that the browser holds no
 * code-server session cookie. Saves ARTIFACTS_DIR/slurm-ide.png.
 *
 * Each passing step prints `ok <step> (<seconds>)`. A failing step ends the run with
 * exit code 1 and ARTIFACTS_DIR/failure.png.
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  CHROMIUM, CHROMIUM_ARGS, OVERALL_TIMEOUT, STEP_TIMEOUT, failureScreenshot, ideNotices,
  loadChromium, printFailure, seconds, waitForExplorerItem,
} from './harness.mjs';

const USAGE = 'usage: node slurm_ide.mjs IDE_URL ARTIFACTS_DIR FILE';
const [ideUrl, artifacts, fileName] = process.argv.slice(2);
if (!ideUrl || !artifacts || !fileName) {
  console.error(USAGE);
  process.exit(2);
}
const chromium = loadChromium();
fs.mkdirSync(artifacts, { recursive: true });

let browser = null;
let page = null;
let currentStep = 'launch Chromium';
const pageErrors = [];

async function step(name, action) {
  currentStep = name;
  const begin = Date.now();
  await action();
  console.log(`ok ${name} (${seconds(Date.now() - begin)})`);
}

async function main() {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(STEP_TIMEOUT);
  page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(err.message || String(err)));

  await step('the workbench renders', async () => {
    const answer = await page.goto(ideUrl);
    if (!answer || answer.status() !== 200) throw new Error(`${ideUrl} answered ${answer?.status()}`);
    const landed = new URL(page.url());
    if (landed.pathname !== new URL(ideUrl).pathname) throw new Error(`landed on ${page.url()}, not the IDE`);
    await page.locator('.monaco-workbench').waitFor({ timeout: STEP_TIMEOUT });
  });

  await step(`the explorer shows ${fileName} from the job's workspace`, async () => {
    await waitForExplorerItem(page, fileName, STEP_TIMEOUT);
    const broken = (await ideNotices(page)).filter((text) => /reconnect|disconnected|cannot|unable|error/i.test(text));
    if (broken.length) throw new Error(`the IDE shows: ${broken.join(' | ')}`);
    await page.screenshot({ path: path.join(artifacts, 'slurm-ide.png') });
  });

  await step('the browser holds no code-server session', async () => {
    const names = (await context.cookies()).map((cookie) => cookie.name);
    if (names.some((name) => name.startsWith('code-server-session'))) {
      throw new Error(`the browser got code-server's session cookie: ${names.join(', ')}`);
    }
  });
}

const overall = setTimeout(() => {
  console.error(`FAIL ${currentStep}: the run took longer than ${seconds(OVERALL_TIMEOUT)}`);
  process.exit(1);
}, OVERALL_TIMEOUT);

try {
  await main();
  console.log(`PASS${pageErrors.length ? ` (page errors: ${pageErrors.join(' | ')})` : ''}`);
} catch (err) {
  printFailure(currentStep, err);
  await failureScreenshot(page, artifacts);
  process.exitCode = 1;
} finally {
  clearTimeout(overall);
  await browser?.close().catch(() => {});
}
