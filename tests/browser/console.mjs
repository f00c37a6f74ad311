#!/usr/bin/env node
// Opens an openwinv console link in headless Chromium and waits until the xterm.js terminal shows
// the expected text. Exits 0 when it does, 1 (with what the terminal showed) when it does not.
//
//   node console.mjs <console url> <expected text> [timeout seconds, default 30] [options]
//
// Options (after the positional arguments):
//   --type <text>    once the expected text shows, type <text> into the terminal ("\r" for Enter,
//                    as in a JavaScript string: \r \n \t \\ \xNN)
//   --then <text>    after typing, wait for this text as well
//   --screen         also wait until the noVNC screen is connected
//
// Chromium: /usr/bin/chromium (Debian: apt-get install chromium), or $CHROMIUM. Dependencies:
// `npm ci` in this directory (playwright-core only).

import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const USAGE = 'usage: node console.mjs <console url> <expected text> [timeout seconds] [--type TEXT] [--then TEXT] [--screen]';

function fail(message) {
  console.error(`console.mjs: ${message}`);
  process.exit(1);
}

function unescape(s) {
  return s.replace(/\\(x[0-9a-fA-F]{2}|.)/g, (_, c) => {
    if (c[0] === 'x' && c.length === 3) return String.fromCharCode(parseInt(c.slice(1), 16));
    return { r: '\r', n: '\n', t: '\t', '\\': '\\' }[c] ?? c;
  });
}

function parseArgs(argv) {
  const positional = [];
  const opts = { type: null, then: null, screen: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--type' || a === '--then') {
      if (i + 1 >= argv.length) fail(`${a} needs a value\n${USAGE}`);
      opts[a.slice(2)] = unescape(argv[++i]);
    } else if (a === '--screen') {
      opts.screen = true;
    } else if (a.startsWith('--')) {
      fail(`unknown option ${a}\n${USAGE}`);
    } else {
      positional.push(a);
    }
  }
  if (positional.length < 2 || positional.length > 3) fail(USAGE);
  const [url, expected, timeout = '30'] = positional;
  const seconds = Number(timeout);
  if (!Number.isFinite(seconds) || seconds <= 0) fail(`the timeout must be a positive number of seconds, not ${timeout}`);
  return { url, expected, seconds, ...opts };
}

const args = parseArgs(process.argv.slice(2));
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!existsSync(executablePath)) fail(`${executablePath} is missing: apt-get install -y chromium (or set CHROMIUM)`);

let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  fail(`playwright-core is not installed: run \`npm ci\` in tests/browser (${e.message})`);
}

const userDataDir = mkdtempSync(join(tmpdir(), 'openwinv-chromium-'));
const deadline = Date.now() + args.seconds * 1000;
const log = [];
let context;

async function main() {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: args.seconds * 1000,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log.push(`page error: ${e.message}`));
  page.on('websocket', (ws) => {
    log.push(`websocket opened: ${ws.url()}`);
    ws.on('close', () => log.push(`websocket closed: ${ws.url()}`));
  });

  const response = await page.goto(args.url, { waitUntil: 'load', timeout: Math.max(1000, deadline - Date.now()) });
  if (!response) return `no response from ${args.url}`;
  if (response.status() !== 200) {
    const body = (await response.text()).replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim();
    return `${args.url} answered ${response.status()}: ${body}`;
  }

  const state = () => page.evaluate(() => {
    const c = window.openwinvConsole;
    return c ? { text: c.text(), serial: c.serial, screen: c.screen } : null;
  });

  async function waitFor(what, done) {
    let last = null;
    while (Date.now() < deadline) {
      last = await state();
      if (last && done(last)) return null;
      await new Promise((r) => setTimeout(r, 200));
    }
    if (!last) return `the page never set window.openwinvConsole (did console.js load?) while waiting for ${what}`;
    return `timed out after ${args.seconds} s waiting for ${what}\n` +
      `serial: ${last.serial}; screen: ${last.screen}\n--- terminal ---\n${last.text}\n--- end of terminal ---`;
  }

  const quoted = (s) => JSON.stringify(s);
  let err = await waitFor(`the terminal to show ${quoted(args.expected)}`, (s) => s.text.includes(args.expected));
  if (err) return err;
  if (args.type !== null) {
    await page.locator('#terminal').click();
    // Playwright's keyboard presses Enter for "\r" and "\n", as a person would.
    await page.keyboard.type(args.type);
  }
  if (args.then !== null) {
    err = await waitFor(`the terminal to show ${quoted(args.then)} after typing`, (s) => s.text.includes(args.then));
    if (err) return err;
  }
  if (args.screen) {
    err = await waitFor('the screen to connect', (s) => s.screen === 'connected');
    if (err) return err;
  }
  return null;
}

let error;
try {
  error = await main();
} catch (e) {
  error = `${e.name}: ${e.message}`;
} finally {
  await context?.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
}
if (error) {
  console.error(`console.mjs: FAIL: ${error}`);
  if (log.length) console.error(`--- browser log ---\n${log.join('\n')}`);
  process.exit(1);
}
console.log(`console.mjs: ok: the terminal shows ${JSON.stringify(args.expected)}${args.then ? ` and ${JSON.stringify(args.then)}` : ''}`);
process.exit(0);
