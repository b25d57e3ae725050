/*
 * What the browser scripts (dashboard.mjs, seats.mjs) share: Debian's Chromium and how
 * it is started, playwright-core found through NODE_PATH (scripts/install-browser.sh
 * prints the directory; no browser is ever downloaded), their timeouts, and what they
 * read of VS Code's workbench (its notices, its explorer, its workspace-trust prompt).
 */
import { createRequire } from 'node:module';
import path from 'node:path';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
export const STEP_TIMEOUT = 30_000;
export const TRUST_PROMPT_WAIT = 20_000; // code-server's "Do you trust the authors" dialog
export const OVERALL_TIMEOUT = 240_000;

/** playwright-core's `chromium`, or the end of the run with what to install. */
export function loadChromium() {
  const require = createRequire(import.meta.url);
  try {
    return require('playwright-core').chromium;
  } catch (err) {
    console.error(`cannot load playwright-core (NODE_PATH=${process.env.NODE_PATH || ''}): ${err.message}`);
    console.error('run scripts/install-browser.sh and set NODE_PATH to the directory it prints');
    process.exit(1);
  }
}

export const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;

/** The IDE's visible dialogs and notifications (a "reconnecting" dialog means the WebSocket failed). */
export async function ideNotices(ide) {
  const texts = [];
  for (const selector of ['.monaco-dialog-box', '.notification-toast', '.notifications-center .notification-list-item']) {
    for (const element of await ide.locator(selector).all()) {
      if (await element.isVisible().catch(() => false)) {
        texts.push((await element.innerText().catch(() => '')).replace(/\s+/g, ' ').trim());
      }
    }
  }
  return texts.filter(Boolean);
}

/** An explorer row of the IDE naming `file`. */
export const explorerItem = (ide, file) => ide.locator('.monaco-workbench [role=treeitem]', { hasText: file });

/**
 * Waits until the IDE's explorer shows `file`; a failure says what the IDE shows.
 */
export async function waitForExplorerItem(ide, file, timeout) {
  try {
    await explorerItem(ide, file).first().waitFor({ state: 'visible', timeout });
  } catch (err) {
    const notices = await ideNotices(ide);
    throw new Error(`${err.message.split('\n')[0]}${notices.length ? `\nIDE shows: ${notices.join(' | ')}` : ''}`);
  }
}

/**
 * code-server asks whether to trust a new folder, about a second after the explorer
 * shows, in a modal that blocks every click: answers it (restricted mode, the safe
 * choice) if it comes within TRUST_PROMPT_WAIT. Whether it came.
 */
export async function distrustWorkspace(ide) {
  const trust = ide.locator('.monaco-dialog-box', { hasText: 'trust the authors' });
  const distrust = trust.locator('.monaco-button', { hasText: "No, I don't trust the authors" });
  const prompted = await trust.waitFor({ timeout: TRUST_PROMPT_WAIT }).then(() => true, () => false);
  if (prompted) {
    await distrust.click();
    await trust.waitFor({ state: 'hidden' });
  }
  return { prompted, trust, distrust };
}

/** Prints why step `step` failed: the error's first line, then the rest of it. */
export function printFailure(step, err) {
  console.error(`FAIL ${step}: ${err?.message?.split('\n')[0] || err}`);
  if (err?.message?.includes('\n')) console.error(err.message.split('\n').slice(1).join('\n'));
}

/** Saves `page` (if open) as ARTIFACTS/failure.png, and says where, or why not. */
export async function failureScreenshot(page, artifacts) {
  if (!page || page.isClosed()) return;
  const file = path.join(artifacts, 'failure.png');
  try {
    await page.screenshot({ path: file });
    console.error(`  screenshot: ${file}`);
  } catch (err) {
    console.error(`  no failure screenshot: ${err.message}`);
  }
}
