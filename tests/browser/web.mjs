#!/usr/bin/env node
// Walks the web console in headless Chromium as a person would, against a running openwinv on the
// simulated driver. Exits 0 when every step passed, 1 with the failing step and the page's text.
//
//   node web.mjs <endpoint> <login> <password> <ssh public key> <another account's instance id>
//
// The journey: sign in in Korean (Accept-Language ko); add an SSH key; create an instance with the
// wizard and watch it become active without a reload (htmx polling); shut it down from its page;
// create a volume on it, detach it, attach it again; open another account's instance (404 page);
// bulk-delete the instance with one confirmation; sign out. Then sign in in English and switch to
// Korean with the header's switch. Any Content-Security-Policy violation fails the run.
//
// Chromium: /usr/bin/chromium or $CHROMIUM. Dependencies: `npm ci` in this directory.

import { existsSync } from 'node:fs';

const USAGE = 'usage: node web.mjs <endpoint> <login> <password> <ssh public key> <foreign instance id>';
function fail(message) {
  console.error(`web.mjs: ${message}`);
  process.exit(1);
}
const [endpoint, login, password, sshKey, foreign] = process.argv.slice(2);
if (!foreign) fail(USAGE);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!existsSync(executablePath)) fail(`${executablePath} is missing: apt-get install -y chromium (or set CHROMIUM)`);
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  fail(`playwright-core is not installed: run \`npm ci\` in tests/browser (${e.message})`);
}

const STEP_TIMEOUT = 60_000;
const log = [];
let step = 'start';
let page;

function say(s) {
  step = s;
  log.push(`step: ${s}`);
}

async function expectText(selector, text) {
  const got = (await page.locator(selector).first().textContent({ timeout: STEP_TIMEOUT })) ?? '';
  if (!got.includes(text)) throw new Error(`${selector} shows ${JSON.stringify(got)}, not ${JSON.stringify(text)}`);
}

async function newPage(browser, locale) {
  const context = await browser.newContext({ locale, baseURL: endpoint });
  const p = await context.newPage();
  p.setDefaultTimeout(STEP_TIMEOUT);
  p.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
  p.on('pageerror', (e) => log.push(`page error: ${e.message}`));
  return p;
}

async function signIn(h1) {
  await page.goto('/signin');
  await expectText('h1', h1);
  await page.fill('#login', login);
  await page.fill('#password', password);
  await Promise.all([page.waitForURL((u) => u.pathname === '/'), page.click('#signin-submit')]);
}

async function journey(browser) {
  page = await newPage(browser, 'ko-KR');

  say('sign in (ko)');
  await signIn('로그인');
  await expectText('h1', '대시보드');
  if ((await page.evaluate(() => typeof window.htmx)) !== 'object') throw new Error('htmx did not load');

  say('add an SSH key');
  await page.goto('/ssh-keys');
  await page.fill('#k-name', 'laptop');
  await page.fill('#k-key', sshKey);
  await page.click('#key-submit');
  await page.waitForURL(/\/ssh-keys\?done=created/);
  await expectText('tbody', 'laptop');

  say('create an instance with the wizard');
  await page.goto('/instances');
  await page.click('#new-instance');
  await page.locator('input[name=zone_id]:not([disabled])').first().check();
  await page.click('#wizard-next');
  await page.locator('input[name=image_id]').first().check();
  await page.click('#wizard-next');
  await page.locator('input[name=flavor_id]').first().check();
  await page.fill('#name', 'web-1');
  await page.locator('input[name=ssh_key_id]').first().check();
  await page.click('#create-submit');
  await page.waitForURL(/\/instances\?done=created/);

  say('watch it become active without a reload');
  await page.evaluate(() => { window.__openwinvNoReload = true; });
  const row = page.locator('tr[data-instance]', { hasText: 'web-1' });
  await row.locator('[data-status="active"]').waitFor();
  if (!(await page.evaluate(() => window.__openwinvNoReload === true))) throw new Error('the page was reloaded');
  const id = await row.getAttribute('data-instance');

  say('shut it down from its page');
  await row.locator('a', { hasText: 'web-1' }).click();
  await page.waitForURL(new RegExp(`/instances/${id}$`));
  await page.click('#act-shutdown');
  await page.waitForURL(/done=shutdown/);
  await page.locator('#instance-status [data-status="off"]').waitFor();

  say('create a volume on it, detach it, attach it again');
  await page.goto('/volumes');
  await page.selectOption('#v-instance', id);
  await page.fill('#v-name', 'data-1');
  await page.fill('#v-size', '10');
  await page.click('#volume-create');
  await page.waitForURL(/\/volumes\?done=created/);
  const vol = page.locator('tr[data-volume]', { hasText: 'data-1' });
  await vol.locator('[data-status="in-use"]').waitFor();
  const volumeId = await vol.getAttribute('data-volume');
  await page.click(`#detach-${volumeId}`);
  await page.waitForURL(/\/volumes\?done=detach/);
  await vol.locator('[data-status="available"]').waitFor();
  await page.selectOption(`#attach-to-${volumeId}`, id);
  await page.click(`#attach-${volumeId}`);
  await page.waitForURL(/\/volumes\?done=attach/);
  await vol.locator('[data-status="in-use"]').waitFor();

  say("another account's instance is a 404 page");
  const resp = await page.goto(`/instances/${foreign}`);
  if (resp.status() !== 404) throw new Error(`/instances/${foreign} answered ${resp.status()}, not 404`);
  await expectText('.error-message', foreign);

  say('bulk delete with one confirmation');
  await page.goto('/instances');
  await page.locator(`input[name=id][value="${id}"]`).check();
  await page.selectOption('#bulk-action', 'delete');
  await page.click('#bulk-submit');
  await expectText('#bulk-question', '삭제');
  await page.click('#bulk-confirm');
  await page.waitForURL(/\/instances\?done=bulk/);
  await page.locator(`tr[data-instance="${id}"]`).waitFor({ state: 'detached' });

  say('sign out');
  await page.click('#signout');
  await page.waitForURL(/\/signin$/);
  const back = await page.goto('/');
  if (!back.url().endsWith('/signin')) throw new Error(`after sign-out / went to ${back.url()}`);

  say('sign in (en) and switch to Korean');
  page = await newPage(browser, 'en-US');
  await signIn('Sign in');
  await expectText('h1', 'Dashboard');
  await page.click('#lang-switch');
  await expectText('h1', '대시보드');
}

let browser;
let error = null;
try {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  await journey(browser);
} catch (e) {
  let text = '';
  try {
    text = ((await page?.locator('body').innerText({ timeout: 2000 })) ?? '').slice(0, 3000);
  } catch {}
  error = `${e.message}\nat ${page?.url()}\n--- page ---\n${text}\n--- end of page ---`;
} finally {
  await browser?.close().catch(() => {});
}
const violations = log.filter((l) => /Content Security Policy|Refused to/.test(l));
if (!error && violations.length) error = `Content-Security-Policy violations:\n${violations.join('\n')}`;
if (error) {
  console.error(`web.mjs: step "${step}" failed: ${error}\n--- log ---\n${log.join('\n')}`);
  process.exit(1);
}
console.log(log.join('\n'));
console.log('web.mjs: every step passed');
