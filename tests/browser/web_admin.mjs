#!/usr/bin/env node
// The API tester and the operator's pages in headless Chromium, against a running openwinv on the
// simulated driver. Exits 0 when every step passed, 1 with the failing step and the page's text.
//
//   node web_admin.mjs <endpoint> <login> <password> <admin token> [--hosts HOST]
//
// The person (whose account has an access key): sends GET /v1/zones from the API tester and sees
// the 200 answer, the signature inputs and the curl text; sends GET /v1/flavors with a bad
// min_vcpu and sees the iwinv error envelope; cannot reach /admin/ with their session. The
// operator: a wrong token is refused; signs in with the token; creates the account `team`, sets
// its instances quota to 7, advances the clock by 2 hours, signs out. Any Content-Security-Policy
// violation fails the run.
//
// With --hosts HOST (a control plane in hosts mode where the registered agent of HOST holds an
// instance), the operator also, before moving the clock: sees HOST alive in the hosts list, adds
// the host `rack-2` and sees its token once (not in the URL, not after a reload), opens HOST's
// page and sees its placement, drains it and enables it again, and is refused removing it with
// the IN_USE code and message. axe-core checks those pages (no serious or critical violation).
//
// Chromium: /usr/bin/chromium or $CHROMIUM. Dependencies: `npm ci` in this directory.

import { existsSync } from 'node:fs';

const USAGE = 'usage: node web_admin.mjs <endpoint> <login> <password> <admin token> [--hosts HOST]';
function fail(message) {
  console.error(`web_admin.mjs: ${message}`);
  process.exit(1);
}
const args = process.argv.slice(2);
let hostName = null;
const at = args.indexOf('--hosts');
if (at >= 0) {
  hostName = args[at + 1];
  if (!hostName) fail(USAGE);
  args.splice(at, 2);
}
const [endpoint, login, password, adminToken] = args;
if (!adminToken) fail(USAGE);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!existsSync(executablePath)) fail(`${executablePath} is missing: apt-get install -y chromium (or set CHROMIUM)`);
let chromium;
let axeSource = null;
try {
  ({ chromium } = await import('playwright-core'));
  if (hostName) {
    const { readFileSync } = await import('node:fs');
    const { createRequire } = await import('node:module');
    axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  }
} catch (e) {
  fail(`playwright-core or axe-core is not installed: run \`npm ci\` in tests/browser (${e.message})`);
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
  return got;
}

async function newPage(browser) {
  const context = await browser.newContext({ locale: 'en-US', baseURL: endpoint });
  const p = await context.newPage();
  p.setDefaultTimeout(STEP_TIMEOUT);
  p.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
  p.on('pageerror', (e) => log.push(`page error: ${e.message}`));
  return p;
}

const axeFound = [];

// Runs axe-core on the page as it is; serious and critical violations fail the run at its end.
async function axe(name) {
  await page.waitForLoadState('load');
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } }),
  );
  log.push(`axe ${name}: ${result.passes.length} rules pass`);
  for (const v of result.violations) {
    if (v.impact !== 'serious' && v.impact !== 'critical') continue;
    const where = v.nodes.slice(0, 3).map((n) => n.target.join(' '));
    axeFound.push(`${name} ${page.url()}: [${v.impact}] ${v.id}: ${v.help} at ${where.join(', ')}`);
  }
}

function postTo(path) {
  return page.waitForResponse((r) => new URL(r.url()).pathname === path && r.request().method() === 'POST');
}

async function hostsJourney() {
  say(`hosts: the list shows ${hostName} alive`);
  await page.click('header nav a[href="/admin/hosts"]');
  await page.locator(`tr[data-host="${hostName}"] [data-field="status"] [data-status="alive"]`).waitFor();
  await expectText(`tr[data-host="${hostName}"] [data-field="instances"]`, '1');
  await axe('admin-hosts');

  say('hosts: adds a host and sees its token once');
  await page.fill('#h-name', 'rack-2');
  const added = postTo('/admin/hosts');
  await page.click('#host-add');
  if ((await added).status() !== 200) throw new Error(`adding a host answered ${(await added).status()}`);
  await page.locator('#issued-host-token').waitFor();
  const token = (await page.locator('#issued-host-token').textContent()).trim();
  if (!/^owh_[0-9A-Za-z]{43}$/.test(token)) throw new Error(`the token shown is ${JSON.stringify(token)}`);
  if (page.url().includes(token)) throw new Error(`the token is in the URL ${page.url()}`);
  await expectText('#issued-host-command', `--host-token ${token}`);
  await page.locator('tr[data-host="rack-2"] [data-status="new"]').waitFor();
  await axe('admin-host-added');
  await page.goto('/admin/hosts');
  if ((await page.content()).includes(token)) throw new Error('the token is shown again after a reload');

  say(`hosts: ${hostName}'s page shows its placement`);
  await Promise.all([page.waitForURL((u) => u.pathname === `/admin/hosts/${hostName}`), page.click(`tr[data-host="${hostName}"] a`)]);
  await expectText('tr[data-placement] [data-field="status"]', 'active');
  await expectText('#host-status', 'alive');
  await axe('admin-host');

  say(`hosts: drains ${hostName}, then enables it`);
  await Promise.all([page.waitForURL(/done=host_drain/), page.click('#host-drain')]);
  await expectText('#host-state', 'draining');
  await expectText('.notice', 'Host draining.');
  await Promise.all([page.waitForURL(/done=host_enable/), page.click('#host-enable')]);
  await expectText('#host-state', 'enabled');

  say(`hosts: removing ${hostName}, which holds an instance, is refused`);
  const removed = postTo(`/admin/hosts/${hostName}/remove`);
  await page.click('#host-remove');
  if ((await removed).status() !== 409) throw new Error(`removing a host in use answered ${(await removed).status()}, not 409`);
  await expectText('.error strong', 'IN_USE');
  await expectText('.error-message', `The host \`${hostName}\` holds 1 instance(s)`);
  await axe('admin-host-refused');
}

async function send() {
  await Promise.all([page.waitForURL(/\/api-test$/), page.click('#send')]);
  await page.locator('#response-status').waitFor();
}

async function journey(browser) {
  page = await newPage(browser);

  say('sign in');
  await page.goto('/signin');
  await page.fill('#login', login);
  await page.fill('#password', password);
  await Promise.all([page.waitForURL((u) => u.pathname === '/'), page.click('#signin-submit')]);

  say('API tester: GET /v1/zones');
  await page.click('header nav a[href="/api-test"]');
  await page.selectOption('#op', 'GET /v1/zones');
  await Promise.all([page.waitForURL(/op=GET/), page.click('#op-choose')]);
  await send();
  await expectText('#response-status', '200');
  await expectText('#response-body', '"error_code": "SUCCESS"');
  await expectText('#response-body', 'KR1-Z01');
  await expectText('#string-to-sign', '/v1/zones');
  const curl = await page.inputValue('#curl');
  for (const part of ['curl ', '/v1/zones', 'X-iwinv-Timestamp: ', 'X-iwinv-Credential: ', 'X-iwinv-Signature: ']) {
    if (!curl.includes(part)) throw new Error(`the curl text lacks ${JSON.stringify(part)}: ${curl}`);
  }
  const signature = (await page.locator('#signature').textContent()).trim();
  if (!/^[0-9a-f]{64}$/.test(signature) || !curl.includes(signature)) {
    throw new Error(`the curl text does not carry the request's signature ${signature}: ${curl}`);
  }

  say('API tester: a bad parameter shows the error envelope');
  await page.selectOption('#op', 'GET /v1/flavors');
  await Promise.all([page.waitForURL(/op=GET/), page.click('#op-choose')]);
  await page.fill('#q-min_vcpu', 'lots');
  await send();
  await expectText('#response-status', '400');
  await expectText('#response-body', '"error_code": "CHECK_PARAM"');
  await expectText('#response-body', 'min_vcpu');
  await expectText('#request', 'min_vcpu=lots');

  say('a person cannot reach the operator pages');
  await page.goto('/admin/');
  if (new URL(page.url()).pathname !== '/admin/signin') throw new Error(`/admin/ went to ${page.url()}`);
  await expectText('h1', 'Operator sign-in');

  say('a wrong operator token is refused');
  page = await newPage(browser);
  await page.goto('/admin/');
  await page.waitForURL(/\/admin\/signin$/);
  await page.fill('#admin-token', 'not-the-token');
  const refused = page.waitForResponse((r) => r.url().endsWith('/admin/signin') && r.request().method() === 'POST');
  await page.click('#admin-signin-submit');
  const status = (await refused).status();
  if (status !== 401) throw new Error(`a wrong token answered ${status}, not 401`);
  await expectText('.error-message', 'The operator token is wrong.');

  say('the operator signs in and creates an account');
  await page.fill('#admin-token', adminToken);
  await Promise.all([page.waitForURL((u) => u.pathname === '/admin/'), page.click('#admin-signin-submit')]);
  await page.fill('#a-name', 'team');
  await Promise.all([page.waitForURL(/done=account_created/), page.click('#account-create')]);
  await page.locator('tr[data-account="team"]').waitFor();

  say('sets a quota');
  await page.selectOption('#quota-account', 'team');
  await page.fill('#quota-instances', '7');
  await Promise.all([page.waitForURL(/done=quota/), page.click('#quota-submit')]);
  await expectText('tr[data-account="team"] [data-quota="instances"]', '7');

  if (hostName) await hostsJourney();

  say('advances the clock');
  await page.click('header nav a[href="/admin/clock"]');
  const before = Number(await page.locator('#clock-unix').textContent());
  await page.fill('#duration', '2h');
  await Promise.all([page.waitForURL(/done=clock/), page.click('#advance-submit')]);
  const after = Number(await page.locator('#clock-unix').textContent());
  if (!(after >= before + 7200)) throw new Error(`the clock went from ${before} to ${after}, not 2 hours on`);

  say('signs out');
  await Promise.all([page.waitForURL(/\/admin\/signin$/), page.click('#admin-signout')]);
  await page.goto('/admin/clock');
  if (new URL(page.url()).pathname !== '/admin/signin') throw new Error(`after sign-out /admin/clock went to ${page.url()}`);
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
if (!error && axeFound.length) error = `accessibility violations (serious or critical):\n${axeFound.join('\n')}`;
if (error) {
  console.error(`web_admin.mjs: step "${step}" failed: ${error}\n--- log ---\n${log.join('\n')}`);
  process.exit(1);
}
console.log(log.join('\n'));
console.log('web_admin.mjs: every step passed');
