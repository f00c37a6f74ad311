#!/usr/bin/env node
// A benchmark, not a test (scripts/bench section `webclick`): the time from a click on "start" in
// an instance's page to its badge turning `active`, in headless Chromium against a running
// openwinv on the simulated driver (start it with `--sim-delay 0` so that the figure is the
// console's own: the redirect after the form, then the badge's polling).
//
//   node click_timing.mjs <endpoint> <login> <password> [rounds]
//
// Creates one instance with the wizard, then `rounds` times (default 20): shut it down and wait
// for `off`, click start and time until the badge shows `active`. Prints one line of figures.
//
// Chromium: /usr/bin/chromium or $CHROMIUM. Dependencies: `npm ci` in this directory.

import { existsSync } from 'node:fs';

function fail(message) {
  console.error(`click_timing.mjs: ${message}`);
  process.exit(1);
}
const [endpoint, login, password, roundsArg] = process.argv.slice(2);
if (!password) fail('usage: node click_timing.mjs <endpoint> <login> <password> [rounds]');
const rounds = Number(roundsArg || 20);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!existsSync(executablePath)) fail(`${executablePath} is missing: apt-get install -y chromium (or set CHROMIUM)`);
const { chromium } = await import('playwright-core');

const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
try {
  const context = await browser.newContext({ locale: 'en-US', baseURL: endpoint });
  const page = await context.newPage();
  page.setDefaultTimeout(60_000);

  await page.goto('/signin');
  await page.fill('#login', login);
  await page.fill('#password', password);
  await Promise.all([page.waitForURL((u) => u.pathname === '/'), page.click('#signin-submit')]);

  await page.goto('/instances');
  await page.click('#new-instance');
  await page.locator('input[name=zone_id]:not([disabled])').first().check();
  await page.click('#wizard-next');
  await page.locator('input[name=image_id]').first().check();
  await page.click('#wizard-next');
  await page.locator('input[name=flavor_id]').first().check();
  await page.fill('#name', 'timed');
  await page.click('#create-submit');
  await page.waitForURL(/\/instances\?done=created/);
  const row = page.locator('tr[data-instance]', { hasText: 'timed' });
  await row.locator('[data-status="active"]').waitFor();
  const id = await row.getAttribute('data-instance');

  const times = [];
  for (let i = 0; i < rounds; i++) {
    await page.goto(`/instances/${id}`);
    await page.click('#act-shutdown');
    await page.locator('#instance-status [data-status="off"]').waitFor();
    const clicked = performance.now();
    await page.click('#act-start');
    await page.locator('#instance-status [data-status="active"]').waitFor();
    times.push(performance.now() - clicked);
  }
  times.sort((a, b) => a - b);
  const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))];
  console.log(
    `click on start → badge active, ${times.length} rounds: p50 ${at(0.5).toFixed(0)} ms, ` +
      `p90 ${at(0.9).toFixed(0)} ms, min ${times[0].toFixed(0)} ms, max ${times[times.length - 1].toFixed(0)} ms`,
  );
} finally {
  await browser.close();
}
