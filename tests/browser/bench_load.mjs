#!/usr/bin/env node
/*
 * The load of a class opening its IDEs, for the workshop benchmark's `--prebuilt N`
 * mode (benches/workshop.rs): while these pages load, the bench times a claim.
 *
 *   node tests/browser/bench_load.mjs FILE IDE_URL...
 *
 * Opens every IDE_URL (devbox's /vscode/<port>/ of a claimed server) at once in Debian's
 * Chromium (headless, through playwright-core found on NODE_PATH), each in a browser
 * context of its own (a participant's fresh profile), and waits on each page for VS
 * Code's workbench (`.monaco-workbench`) and then for its explorer to show FILE (read
 * from the workspace over the IDE's WebSocket).
 *
 * What it prints, one line each, for the bench to read (times in ms since `navigating`):
 *   navigating <pages>       every page has been sent to its IDE (the load begins)
 *   workbench <i> <ms>       page i shows the workbench
 *   explorer <i> <ms>        page i's explorer shows FILE
 *   failed <i> <message>     page i got no further (the others go on)
 *   done                     every page got its workbench and explorer, or failed
 * A failure of the browser itself ends the run with `FAIL <message>` on stderr and
 * exit code 1.
 */
import {
  CHROMIUM, CHROMIUM_ARGS, loadChromium, waitForExplorerItem,
} from './harness.mjs';

const USAGE = 'usage: node bench_load.mjs FILE IDE_URL...';
/** Per page: a class's pages load together on two cores, so this is generous. */
const PAGE_TIMEOUT = 240_000;
const OVERALL_TIMEOUT = 330_000;

const [fileName, ...urls] = process.argv.slice(2);
if (!fileName || urls.length === 0) {
  console.error(USAGE);
  process.exit(2);
}
const chromium = loadChromium();
let browser = null;

/** Sends page `i` to its IDE and reports when its workbench, then its explorer, show. */
async function load(page, i, url, navigating) {
  const since = () => Date.now() - navigating;
  try {
    const answer = await page.goto(url, { timeout: PAGE_TIMEOUT });
    if (!answer || answer.status() !== 200) throw new Error(`${url} answered ${answer?.status()}`);
    await page.locator('.monaco-workbench').waitFor({ timeout: PAGE_TIMEOUT });
    console.log(`workbench ${i} ${since()}`);
    await waitForExplorerItem(page, fileName, PAGE_TIMEOUT);
    console.log(`explorer ${i} ${since()}`);
  } catch (err) {
    console.log(`failed ${i} ${(err?.message || String(err)).split('\n')[0]}`);
  }
}

async function main() {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  // Every page open before any is sent anywhere: the load starts at one moment.
  const pages = [];
  for (const _ of urls) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    pages.push(await context.newPage());
  }
  const navigating = Date.now();
  const loads = pages.map((page, i) => load(page, i, urls[i], navigating));
  console.log(`navigating ${pages.length}`);
  await Promise.all(loads);
  console.log('done');
}

const overall = setTimeout(() => {
  console.error(`FAIL the load took longer than ${OVERALL_TIMEOUT / 1000} s`);
  process.exit(1);
}, OVERALL_TIMEOUT);

try {
  await main();
} catch (err) {
  console.error(`FAIL ${(err?.message || String(err)).split('\n')[0]}`);
  process.exitCode = 1;
} finally {
  clearTimeout(overall);
  await browser?.close().catch(() => {});
}
