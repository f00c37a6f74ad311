#!/usr/bin/env node
// Visits every page of the web console in headless Chromium and checks each with axe-core
// (WCAG 2 A/AA rules and axe's best practices); exits 1 listing every serious or critical
// violation. With --screenshots DIR it also saves a PNG of each page (scripts/screenshots).
//
//   node pages.mjs <endpoint> <login> <password> <admin token> [--screenshots DIR]
//
// The pages: the sign-in form, then signed in the dashboard and every entry of the header's
// navigation (so pages added later are checked without editing this list), an instance's page and
// the wizard's three steps, the API tester with an answer shown, then the operator's sign-in and
// every entry of the operator's navigation, a host's page (if there is a host), and an account's
// keys. The account should have an instance, a volume and an access key for those pages to show
// rows.
//
// axe-core is a devDependency (node_modules/axe-core); its source is evaluated in the page by the
// test, never served by openwinv. Chromium: /usr/bin/chromium or $CHROMIUM.

import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const USAGE = 'usage: node pages.mjs <endpoint> <login> <password> <admin token> [--screenshots DIR]';
function fail(message) {
  console.error(`pages.mjs: ${message}`);
  process.exit(1);
}
const args = process.argv.slice(2);
let shots = null;
const at = args.indexOf('--screenshots');
if (at >= 0) {
  shots = args[at + 1];
  if (!shots) fail(USAGE);
  args.splice(at, 2);
}
const [endpoint, login, password, adminToken] = args;
if (!adminToken) fail(USAGE);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!existsSync(executablePath)) fail(`${executablePath} is missing: apt-get install -y chromium (or set CHROMIUM)`);
let chromium;
let axeSource;
try {
  ({ chromium } = await import('playwright-core'));
  axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
} catch (e) {
  fail(`playwright-core or axe-core is not installed: run \`npm ci\` in tests/browser (${e.message})`);
}
if (shots) mkdirSync(shots, { recursive: true });

const STEP_TIMEOUT = 60_000;
const log = [];
const found = [];
const checked = [];
let page;

async function newPage(browser) {
  const context = await browser.newContext({ locale: 'en-US', baseURL: endpoint, viewport: { width: 1280, height: 800 } });
  const p = await context.newPage();
  p.setDefaultTimeout(STEP_TIMEOUT);
  p.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
  p.on('pageerror', (e) => log.push(`page error: ${e.message}`));
  return p;
}

// Runs axe on the page as it is and records serious and critical violations.
async function check(name) {
  await page.waitForLoadState('load');
  const loaded = await page.evaluate(() => typeof window.axe === 'object');
  if (!loaded) await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } }),
  );
  checked.push(`${name} (${new URL(page.url()).pathname}): ${result.passes.length} rules pass`);
  for (const v of result.violations) {
    if (v.impact !== 'serious' && v.impact !== 'critical') continue;
    const where = v.nodes.slice(0, 3).map((n) => `${n.target.join(' ')}: ${n.failureSummary?.split('\n')[1] ?? ''}`);
    found.push(`${name} ${page.url()}: [${v.impact}] ${v.id}: ${v.help}\n    ${where.join('\n    ')}`);
  }
  if (shots) {
    await page.screenshot({ path: join(shots, `${name}.png`), fullPage: false });
  }
}

async function visit(name, path) {
  const resp = await page.goto(path);
  if (!resp || resp.status() >= 400) throw new Error(`${path} answered ${resp?.status()}`);
  await check(name);
}

// The entries of a navigation landmark, as [name, path].
async function navEntries(label) {
  const links = await page.locator(`header nav[aria-label="${label}"] a`).evaluateAll((as) =>
    as.map((a) => new URL(a.href).pathname),
  );
  return links;
}

function nameOf(path, prefix) {
  const rest = path.replace(/^\/admin\/?/, '').replace(/^\//, '').replace(/\/$/, '').replaceAll('/', '-');
  return `${prefix}${rest || (prefix ? 'accounts' : 'dashboard')}`;
}

async function run(browser) {
  page = await newPage(browser);
  await visit('signin', '/signin');
  await page.fill('#login', login);
  await page.fill('#password', password);
  await Promise.all([page.waitForURL((u) => u.pathname === '/'), page.click('#signin-submit')]);
  await check('dashboard');
  const label = await page.locator('header nav').first().getAttribute('aria-label');
  for (const path of await navEntries(label)) {
    if (path === '/') continue;
    await visit(nameOf(path, ''), path);
  }
  // An instance's page, if the account has one.
  await page.goto('/instances');
  const first = page.locator('tr[data-instance] a').first();
  if ((await first.count()) > 0) {
    await first.click();
    await page.waitForURL(/\/instances\/[^/]+$/);
    await check('instance');
  } else {
    log.push('no instance: the instance page is not checked');
    found.push('the account has no instance, so its page could not be checked; seed one');
  }
  await visit('wizard-zone', '/instances/new');
  await page.locator('input[name=zone_id]:not([disabled])').first().check();
  await Promise.all([page.waitForURL(/zone_id=/), page.click('#wizard-next')]);
  await check('wizard-image');
  await page.locator('input[name=image_id]').first().check();
  await Promise.all([page.waitForURL(/image_id=/), page.click('#wizard-next')]);
  await check('wizard-flavor');
  // The API tester with an answer.
  await page.goto('/api-test?op=GET%20/v1/zones');
  await Promise.all([page.waitForURL(/\/api-test$/), page.click('#send')]);
  await page.locator('#response-status').waitFor();
  await check('api-test-answer');

  // The operator's pages, in a browser of their own.
  page = await newPage(browser);
  await visit('admin-signin', '/admin/signin');
  await page.fill('#admin-token', adminToken);
  await Promise.all([page.waitForURL((u) => u.pathname === '/admin/'), page.click('#admin-signin-submit')]);
  await check('admin-accounts');
  const adminLabel = await page.locator('header nav').first().getAttribute('aria-label');
  for (const path of await navEntries(adminLabel)) {
    if (path === '/admin/') continue;
    await visit(nameOf(path, 'admin-'), path);
  }
  // A host's page, if there is a host.
  await page.goto('/admin/hosts');
  const host = page.locator('tr[data-host] a').first();
  if ((await host.count()) > 0) {
    await Promise.all([page.waitForURL(/\/admin\/hosts\/[^/]+$/), host.click()]);
    await check('admin-host');
  } else {
    log.push('no host: the host page is not checked');
  }
  await page.goto('/admin/');
  await Promise.all([page.waitForURL(/\/keys$/), page.locator('tr[data-account] a').last().click()]);
  await check('admin-keys');
}

let browser;
let error = null;
try {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  await run(browser);
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
if (!error && found.length) error = `accessibility violations (serious or critical):\n${found.join('\n')}`;
console.log(checked.join('\n'));
if (error) {
  console.error(`pages.mjs: ${error}\n--- log ---\n${log.join('\n')}`);
  process.exit(1);
}
console.log(`pages.mjs: ${checked.length} pages, no serious or critical accessibility violation`);
