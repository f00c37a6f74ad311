#!/usr/bin/env node
// The web console's part 2a in headless Chromium, against a running openwinv on the simulated
// driver. Exits 0 when every step passed, 1 with the failing step and the page's text.
//
//   node web2.mjs <endpoint> <login> <password> <instance id> <firewall id>
//
// The journey (the instance is active, the firewall has no rules and is not attached): add a rule
// with a bad port and see the API's message beside the port field, then a good one; attach the
// firewall to the instance; ask the instance page whether port 443 and 22 are reachable; open the
// console in place (the address bar and the history stay as they were); read the live bill's
// breakdown and see the SVG chart; create two API keys, see each secret once, reload and see them
// gone.
// Any Content-Security-Policy violation fails the run.
//
// Chromium: /usr/bin/chromium or $CHROMIUM. Dependencies: `npm ci` in this directory.

import { existsSync } from 'node:fs';

const USAGE = 'usage: node web2.mjs <endpoint> <login> <password> <instance id> <firewall id>';
function fail(message) {
  console.error(`web2.mjs: ${message}`);
  process.exit(1);
}
const [endpoint, login, password, instance, firewall] = process.argv.slice(2);
if (!firewall) fail(USAGE);
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

function check(ok, what) {
  if (!ok) throw new Error(what);
}

async function textOf(selector) {
  return (await page.locator(selector).first().textContent({ timeout: STEP_TIMEOUT })) ?? '';
}

async function expectText(selector, text) {
  const got = await textOf(selector);
  check(got.includes(text), `${selector} shows ${JSON.stringify(got)}, not ${JSON.stringify(text)}`);
}

async function journey(browser) {
  const context = await browser.newContext({ locale: 'en-US', baseURL: endpoint });
  page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);
  page.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log.push(`page error: ${e.message}`));

  say('sign in');
  await page.goto('/signin');
  await page.fill('#login', login);
  await page.fill('#password', password);
  await Promise.all([page.waitForURL((u) => u.pathname === '/'), page.click('#signin-submit')]);
  await expectText('nav', 'Firewalls');

  say('add a rule with a bad port: the API refuses it beside the port field');
  await page.click('nav >> text=Firewalls');
  await page.waitForURL(/\/firewalls$/);
  await page.click(`tr[data-firewall="${firewall}"] a`);
  await page.waitForURL(new RegExp(`/firewalls/${firewall}$`));
  await expectText('.semantics', 'inbound traffic passes only by IN rules');
  await page.fill('#add-port', '70000');
  await page.fill('#add-title', 'https');
  await page.click('#add-rule');
  await page.locator('#add-port-error').waitFor();
  await expectText('#add-port-error', '`port`');
  await expectText('#add-port-error', '70000');
  check((await page.getAttribute('#add-port', 'aria-invalid')) === 'true', 'the port field is not marked invalid');
  check((await page.locator('tr[data-rule]').count()) === 0, 'a refused rule was added');

  say('then a good one');
  await page.fill('#add-port', '443');
  await page.click('#add-rule');
  await page.waitForURL(/done=rule_added/);
  check((await page.locator('#add-port-error').count()) === 0, 'the error stayed after a good rule');
  const rule = page.locator('tr[data-rule]');
  check((await rule.count()) === 1, 'the rule is not listed');
  check((await rule.locator('input[name=port]').inputValue()) === '443', 'the rule does not show port 443');

  say('attach the firewall to the instance');
  await page.selectOption('#attach-instance_id', instance);
  await page.click('#attach');
  await page.waitForURL(/done=attached/);
  await page.locator(`#attached li[data-instance="${instance}"]`).waitFor();

  say("the instance page: its firewall, and who can reach which port");
  await page.click(`#attached a[href="/instances/${instance}"]`);
  await page.waitForURL(new RegExp(`/instances/${instance}$`));
  await expectText('#instance-firewalls', 'web tier');
  await page.fill('#reach-from', '203.0.113.7');
  await page.selectOption('#reach-protocol', 'TCP');
  await page.fill('#reach-port', '443');
  await page.click('#reach-check');
  await page.waitForURL(/reach_port=443/);
  check((await page.getAttribute('#reach-result', 'data-verdict')) === 'accept', `443: ${await textOf('#reach-result')}`);
  await page.fill('#reach-port', '22');
  await page.click('#reach-check');
  await page.waitForURL(/reach_port=22/);
  check((await page.getAttribute('#reach-result', 'data-verdict')) === 'drop', `22: ${await textOf('#reach-result')}`);

  say('open the console in place');
  const before = page.url();
  const historyBefore = await page.evaluate(() => history.length);
  await page.click('#act-console');
  const frameElement = page.locator('iframe#console-frame');
  await frameElement.waitFor();
  const src = await frameElement.getAttribute('src');
  check(src.startsWith('/console/'), `the frame opens ${src}`);
  const frame = page.frameLocator('iframe#console-frame');
  await frame.locator('#terminal').waitFor();
  await frame.locator('#status').waitFor();
  check(page.url() === before, `the address bar moved to ${page.url()}`);
  check(!page.url().includes('/console/'), 'the console link is in the address bar');
  const historyAfter = await page.evaluate(() => history.length);
  check(historyAfter === historyBefore, `the history grew from ${historyBefore} to ${historyAfter}`);

  say('read the live bill breakdown and see the chart');
  await page.click('nav >> text=Billing');
  await page.waitForURL(/\/billing$/);
  await page.locator(`#live-items tr[data-resource="${instance}"]`).waitFor();
  const chart = page.locator('svg#daily-chart');
  await chart.waitFor();
  check((await chart.getAttribute('role')) === 'img', 'the chart is not an image for assistive technology');
  await expectText('#daily-chart-title', 'Cost by day and by resource');
  check((await chart.locator('rect').count()) >= 1, 'the chart has no bars');
  const box = await chart.boundingBox();
  check(box && box.width > 100 && box.height > 50, `the chart is not drawn: ${JSON.stringify(box)}`);
  await page.click('#chart-table summary');
  await page.locator('#chart-table tbody tr').first().waitFor();

  say('create an API key: the secret shows once');
  await page.click('nav >> text=API keys');
  await page.waitForURL(/\/api-keys$/);
  const keysBefore = await page.locator('tr[data-key]').count();
  await page.click('#key-create');
  await page.locator('#key-secret').waitFor();
  const secret = (await textOf('#key-secret')).trim();
  const access = (await textOf('#new-access-key')).trim();
  check(secret.length >= 32, `the secret is ${JSON.stringify(secret)}`);
  check(page.url().endsWith('/api-keys'), `the address is ${page.url()}`);
  await page.locator(`tr[data-key="${access}"]`).waitFor();
  check((await page.locator('tr[data-key]').count()) === keysBefore + 1, 'the list did not get the new key');

  say('a second key replaces the first secret in place');
  await page.click('#key-create');
  await page.locator(`#new-access-key:not(:text-is("${access}"))`).waitFor();
  const secondSecret = (await textOf('#key-secret')).trim();
  check(secondSecret !== secret && secondSecret.length >= 32, 'the second key shows the first secret');
  check((await page.locator('#key-secret').count()) === 1, 'two secrets on the page');
  check((await page.locator('#key-rows').count()) === 1, 'the list was duplicated');
  check((await page.locator('tr[data-key]').count()) === keysBefore + 2, 'the list did not get the second key');

  say('a reload does not show the secret again');
  await page.reload();
  await page.locator(`tr[data-key="${access}"]`).waitFor();
  check((await page.locator('#key-secret').count()) === 0, 'the secret is shown again after a reload');
  check(!(await page.content()).includes(secret), 'the secret is in the reloaded page');
  check(!(await page.content()).includes(secondSecret), 'the second secret is in the reloaded page');
  check((await page.locator('tr[data-key]').count()) === keysBefore + 2, 'the reload made another key');
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
  console.error(`web2.mjs: step "${step}" failed: ${error}\n--- log ---\n${log.join('\n')}`);
  process.exit(1);
}
console.log(log.join('\n'));
console.log('web2.mjs: every step passed');
