// The openwinv browser console: the serial console in xterm.js and, when the machine has one, its
// screen in noVNC. Both talk to the server over websockets under the page's own URL; the page's
// HttpOnly cookie authorizes them until the link expires (open sockets stay open after that).
//
// Test hook: window.openwinvConsole.text() is the terminal's text (one line per row, wrapped rows
// joined); .serial and .screen are the sockets' states ("connecting", "connected", "closed: …").

import { Terminal } from './vendor/xterm/xterm.mjs';
import { FitAddon } from './vendor/xterm/addon-fit.mjs';

const config = JSON.parse(document.getElementById('openwinv-console-config').textContent);
const loadedAt = Date.now();
const statusEl = document.getElementById('status');
const reconnectEl = document.getElementById('reconnect');
const encoder = new TextEncoder();

const hook = {
  serial: 'connecting',
  screen: config.screen ? 'connecting' : 'none',
  terminal: null,
  text() {
    const buffer = term.buffer.active;
    const lines = [];
    for (let i = 0; i < buffer.length; i++) {
      const line = buffer.getLine(i);
      if (!line) continue;
      const text = line.translateToString(true);
      if (line.isWrapped && lines.length > 0) lines[lines.length - 1] += text;
      else lines.push(text);
    }
    while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
    return lines.join('\n');
  },
};
window.openwinvConsole = hook;

function socketUrl(path) {
  return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path;
}

function linkExpired() {
  return Date.now() - loadedAt > (config.expires_at - config.now) * 1000;
}

function closedText(code, reason) {
  if (reason) return reason;
  if (linkExpired()) return 'the console link expired; ask for a new one';
  return code === 1000 ? 'closed' : 'disconnected';
}

function showStatus() {
  const parts = [`serial: ${hook.serial}`];
  if (config.screen) parts.push(`screen: ${hook.screen}`);
  statusEl.textContent = parts.join(' · ') + ` · link valid until ${config.expires_text}`;
  const closed = hook.serial.startsWith('closed') || hook.screen.startsWith('closed');
  reconnectEl.hidden = !closed || linkExpired();
}

// --- serial --------------------------------------------------------------------------------------

const term = new Terminal({
  cursorBlink: true,
  scrollback: 10000,
  fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
  fontSize: 14,
  theme: { background: '#111111' },
});
hook.terminal = term;
const fit = new FitAddon();
term.loadAddon(fit);
term.open(document.getElementById('terminal'));
fit.fit();
window.addEventListener('resize', () => fit.fit());

let serial = null;
// True while the terminal parses the history frame.
let replaying = false;

function connectSerial() {
  hook.serial = 'connecting';
  showStatus();
  const ws = new WebSocket(socketUrl(config.serial));
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => {
    hook.serial = 'connected';
    showStatus();
    term.focus();
  };
  // The first frame is the history (the serial log so far). Replies the terminal makes to queries
  // in it (cursor position, device attributes) would reach the machine as stray input: drop them.
  let history = true;
  ws.onmessage = (e) => {
    const data = typeof e.data === 'string' ? e.data : new Uint8Array(e.data);
    if (!history) return term.write(data);
    term.reset(); // a reconnect: the history is everything the terminal showed, and more
    replaying = true;
    term.write(data, () => { replaying = false; });
    history = false;
  };
  ws.onclose = (e) => {
    hook.serial = `closed: ${closedText(e.code, e.reason)}`;
    term.write(`\r\n\x1b[2m[${hook.serial}]\x1b[0m\r\n`);
    showStatus();
  };
  serial = ws;
}

function sendSerial(bytes) {
  if (!replaying && serial && serial.readyState === WebSocket.OPEN) serial.send(bytes);
}
term.onData((data) => sendSerial(encoder.encode(data)));
term.onBinary((data) => sendSerial(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff)));

// --- screen --------------------------------------------------------------------------------------

let rfb = null;

async function connectScreen() {
  hook.screen = 'connecting';
  showStatus();
  let RFB;
  try {
    ({ default: RFB } = await import('./vendor/novnc/core/rfb.js'));
  } catch (e) {
    hook.screen = `closed: noVNC did not load (${e})`;
    showStatus();
    return;
  }
  const view = document.getElementById('screen-view');
  view.replaceChildren();
  rfb = new RFB(view, socketUrl(config.screen), { shared: true });
  rfb.scaleViewport = true;
  rfb.background = '#111111';
  rfb.addEventListener('connect', () => {
    hook.screen = 'connected';
    showStatus();
  });
  rfb.addEventListener('disconnect', (e) => {
    hook.screen = `closed: ${e.detail.clean ? closedText(1000, '') : closedText(1006, '')}`;
    rfb = null;
    showStatus();
  });
  rfb.addEventListener('credentialsrequired', () => {
    const password = window.prompt('The screen asks for a VNC password:');
    if (password === null) rfb.disconnect();
    else rfb.sendCredentials({ password });
  });
  rfb.addEventListener('securityfailure', (e) => {
    hook.screen = `closed: ${e.detail.reason || 'the screen refused the connection'}`;
    showStatus();
  });
}

// --- tabs ----------------------------------------------------------------------------------------

function select(paneId) {
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    const on = tab.dataset.pane === paneId;
    tab.setAttribute('aria-selected', String(on));
    document.getElementById(tab.dataset.pane).hidden = !on;
  }
  if (paneId === 'serial') {
    fit.fit();
    term.focus();
  } else if (rfb) {
    rfb.focus();
  }
}
for (const tab of document.querySelectorAll('[role="tab"]')) {
  tab.addEventListener('click', () => select(tab.dataset.pane));
}
document.getElementById('ctrl-alt-del')?.addEventListener('click', () => rfb?.sendCtrlAltDel());

reconnectEl.addEventListener('click', () => {
  if (hook.serial.startsWith('closed')) connectSerial();
  if (config.screen && hook.screen.startsWith('closed')) connectScreen();
});
setInterval(showStatus, 10000);

// Both sockets open now, while the link is valid; the screen tab may be looked at later.
connectSerial();
if (config.screen) connectScreen();
