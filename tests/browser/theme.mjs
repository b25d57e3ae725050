#!/usr/bin/env node
/*
 * Real-browser test of the dashboard's theme (run by tests/browser.rs).
 *
 *   node tests/browser/theme.mjs BASE_URL ARTIFACTS_DIR
 *
 * Drives Debian's Chromium (headless, through playwright-core found on NODE_PATH, as
 * dashboard.mjs does) against a running devbox without a token. Two browser contexts,
 * one whose system prefers a dark scheme and one light, open the dashboard: each page
 * is in its system's theme (html[data-theme], and the page's background is dark or
 * light to the eye) and its theme choice says "system". In the dark one, the user picks
 * light: the page turns light, stays light after a reload and when the system switches
 * scheme; picking "system" again follows the system, live, and after a reload. In the
 * light one, the user picks dark, which survives a reload.
 * Only the selectors listed at the top of ui/app.js are used.
 *
 * Each passing step prints `ok <step> (<seconds>)`. A failing step or a JavaScript
 * error on the page ends the run with exit code 1 and ARTIFACTS_DIR/failure.png.
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  CHROMIUM, CHROMIUM_ARGS, OVERALL_TIMEOUT, STEP_TIMEOUT, failureScreenshot, loadChromium,
  printFailure, seconds,
} from './harness.mjs';

const USAGE = 'usage: node theme.mjs BASE_URL ARTIFACTS_DIR';
const [baseArg, artifacts] = process.argv.slice(2);
if (!baseArg || !artifacts) {
  console.error(USAGE);
  process.exit(2);
}
const baseUrl = baseArg.endsWith('/') ? baseArg : `${baseArg}/`;
const chromium = loadChromium();
fs.mkdirSync(artifacts, { recursive: true });

const started = Date.now();
const pageErrors = [];
let browser = null;
let activePage = null;
let currentStep = 'launch Chromium';

async function step(name, action) {
  currentStep = name;
  const begin = Date.now();
  await action();
  if (pageErrors.length) throw new Error(`JavaScript error on the dashboard: ${pageErrors.join(' | ')}`);
  console.log(`ok ${name} (${seconds(Date.now() - begin)})`);
}

/** A dashboard page in a context whose system prefers `colorScheme`, once it has loaded. */
async function openDashboard(colorScheme) {
  const context = await browser.newContext({ colorScheme, viewport: { width: 1100, height: 700 } });
  context.setDefaultTimeout(STEP_TIMEOUT);
  const page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(err.stack || err.message || String(err)));
  activePage = page;
  await load(page, () => page.goto(baseUrl));
  return page;
}

/** Runs `navigate` (a goto or a reload) and waits until the dashboard has its config. */
async function load(page, navigate) {
  const config = page.waitForResponse((r) => new URL(r.url()).pathname.endsWith('/config'));
  await navigate();
  if ((await config).status() !== 200) throw new Error(`GET /config answered ${(await config).status()}`);
  await page.locator('#connection[data-state=ok]').waitFor();
}

/**
 * What the page shows: the theme in effect (html[data-theme]), the choice the select
 * shows, and whether the page's background is dark to the eye (relative luminance).
 */
async function shown(page) {
  return page.evaluate(() => {
    const [r, g, b] = getComputedStyle(document.body).backgroundColor.match(/\d+/g).map(Number);
    const luminance = (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
    return {
      theme: document.documentElement.dataset.theme,
      choice: document.querySelector('#theme-choice').value,
      looks: luminance < 0.5 ? 'dark' : 'light',
    };
  });
}

/** Waits until the page shows `theme` (in data-theme and to the eye) and `choice`. */
async function expectShown(page, theme, choice, why) {
  const deadline = Date.now() + STEP_TIMEOUT;
  let now = await shown(page);
  while (now.theme !== theme || now.looks !== theme || now.choice !== choice) {
    if (Date.now() > deadline) {
      throw new Error(`${why}: expected the ${theme} theme with choice "${choice}", the page shows ${JSON.stringify(now)}`);
    }
    await page.waitForTimeout(100);
    now = await shown(page);
  }
}

async function choose(page, choice) {
  await page.locator('#theme-choice').selectOption(choice);
}

async function fail(err) {
  printFailure(currentStep, err);
  await failureScreenshot(activePage, artifacts);
  await browser?.close().catch(() => {});
  process.exit(1);
}

const watchdog = setTimeout(() => fail(new Error(`the whole run took longer than ${seconds(OVERALL_TIMEOUT)}`)),
  OVERALL_TIMEOUT);

try {
  await step('launch Chromium', async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  });

  let dark;
  let light;
  await step('a dark system gets the dark theme, a light system the light one', async () => {
    dark = await openDashboard('dark');
    await expectShown(dark, 'dark', 'system', 'system prefers dark');
    await dark.screenshot({ path: path.join(artifacts, 'theme-system-dark.png') });
    light = await openDashboard('light');
    await expectShown(light, 'light', 'system', 'system prefers light');
    await light.screenshot({ path: path.join(artifacts, 'theme-system-light.png') });
  });

  await step('a pick of light overrides the dark system, through a reload and a system switch', async () => {
    activePage = dark;
    await choose(dark, 'light');
    await expectShown(dark, 'light', 'light', 'picked light');
    await load(dark, () => dark.reload());
    await expectShown(dark, 'light', 'light', 'picked light, after a reload');
    await dark.emulateMedia({ colorScheme: 'dark' });
    await dark.waitForTimeout(300); // a change event, if the page wrongly followed it
    await expectShown(dark, 'light', 'light', 'picked light, the system still dark');
  });

  await step('choosing system again follows the system, live and after a reload', async () => {
    await choose(dark, 'system');
    await expectShown(dark, 'dark', 'system', 'back to the system (dark)');
    await dark.emulateMedia({ colorScheme: 'light' });
    await expectShown(dark, 'light', 'system', 'the system switched to light');
    await load(dark, () => dark.reload());
    await expectShown(dark, 'light', 'system', 'the light system, after a reload');
    await dark.emulateMedia({ colorScheme: 'dark' });
    await expectShown(dark, 'dark', 'system', 'the system switched back to dark');
  });

  await step('a pick of dark overrides the light system and survives a reload', async () => {
    activePage = light;
    await choose(light, 'dark');
    await expectShown(light, 'dark', 'dark', 'picked dark');
    await load(light, () => light.reload());
    await expectShown(light, 'dark', 'dark', 'picked dark, after a reload');
    await light.screenshot({ path: path.join(artifacts, 'theme-picked-dark.png') });
  });

  clearTimeout(watchdog);
  await browser.close();
  console.log(`passed in ${seconds(Date.now() - started)}`);
} catch (err) {
  clearTimeout(watchdog);
  await fail(err);
}
