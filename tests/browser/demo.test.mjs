// End-to-end test of the demo page (web/index.html + web/client.js) in
// headless Chromium against the single-process server:
//
//   node --test tests/browser/      (tests/browser/run installs and builds first)
//
// Needs: target/debug/herald (or HERALD_BIN), /usr/bin/chromium (or
// CHROMIUM_BIN), and `npm ci` done in tests/browser.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const HERALD = process.env.HERALD_BIN ?? path.join(ROOT, 'target/debug/herald');
const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const SCREENSHOT = path.join(ROOT, 'target/browser/demo.png');
const STARTUP_MS = 60_000;
const WAIT_MS = 30_000;

/** A port nobody listens on right now. */
async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * Starts `herald standalone` and resolves once it prints a line containing
 * `listening` (on stdout or stderr). Keeps the output for diagnostics.
 */
async function startHerald(port, dataDir) {
  const args = ['standalone', '--addr', `127.0.0.1:${port}`, '--data-dir', dataDir, '--demo'];
  const child = spawn(HERALD, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1', RUST_LOG: process.env.RUST_LOG ?? 'info' },
  });
  const output = [];
  let resolveReady;
  let rejectReady;
  const ready = new Promise((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  for (const stream of [child.stdout, child.stderr]) {
    // Read everything, always: a full pipe would block the server.
    readline.createInterface({ input: stream }).on('line', (line) => {
      output.push(line);
      if (output.length > 400) output.shift();
      if (line.includes('listening')) resolveReady();
    });
  }
  child.on('error', (e) => rejectReady(e));
  child.on('exit', (code, signal) =>
    rejectReady(new Error(`herald exited (code ${code}, signal ${signal}) before listening`)),
  );
  const timer = setTimeout(
    () => rejectReady(new Error(`herald did not print "listening" within ${STARTUP_MS} ms`)),
    STARTUP_MS,
  );
  try {
    await ready;
  } catch (e) {
    child.kill('SIGKILL');
    e.message += `\n--- herald output ---\n${output.join('\n')}`;
    throw e;
  } finally {
    clearTimeout(timer);
  }
  return { child, output };
}

async function killHard(server) {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return;
  const exited = once(server.child, 'exit');
  server.child.kill('SIGKILL');
  await exited;
}

/** POST JSON with the API key, retrying while the server answers 503 (still starting). */
async function post(base, apiKey, pathname, body) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const answer = await fetch(new URL(pathname, base), {
      method: 'POST',
      headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await answer.text();
    if (answer.status !== 503 || Date.now() > deadline) {
      return { status: answer.status, body: text ? JSON.parse(text) : null };
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function stateIs(page, wanted, negate = false) {
  return page.waitForFunction(
    ([w, n]) => (document.getElementById('state')?.textContent === w) !== n,
    [wanted, negate],
    { timeout: WAIT_MS },
  );
}

test('demo page: send, receive, survive a server restart without loss or duplicates', async (t) => {
  assert.ok(
    existsSync(HERALD),
    `${HERALD} is missing: build it with \`cargo build -p herald\` (tests/browser/run does)`,
  );
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: \`apt-get install chromium\` (tests/browser/run does)`);

  const port = await freePort();
  const base = `http://127.0.0.1:${port}/`;
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'herald-browser-'));
  let server = null;
  let browser = null;
  const pageLog = [];
  t.after(async () => {
    await browser?.close().catch(() => {});
    if (server) await killHard(server);
    await rm(dataDir, { recursive: true, force: true });
  });
  const diagnostics = () =>
    `\n--- page console ---\n${pageLog.join('\n')}\n--- herald output ---\n${server?.output.join('\n')}`;

  try {
    server = await startHerald(port, dataDir);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
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
    });
    const page = await browser.newPage({ viewport: { width: 900, height: 640 } });
    page.on('console', (m) => pageLog.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => pageLog.push(`pageerror: ${e.message}`));
    page.setDefaultTimeout(WAIT_MS);

    await page.goto(base);
    // --demo: the page found the API key by itself and asks only for a name.
    await page.waitForSelector('#connect:enabled');
    assert.equal(await page.isVisible('#apikey'), false, 'the API key field is hidden in demo mode');

    await page.fill('#user', 'alice');
    await page.click('#connect');
    await stateIs(page, 'connected');

    // 1. Through the page's own form (HeraldClient.publish on its connection).
    await page.fill('#to', 'alice');
    await page.fill('#text', 'hello from the page');
    await page.click('#send:enabled');
    await page.waitForSelector('#messages li[data-stream="user"][data-seq="1"]');

    // 2. Kill the server hard and start it again on the same port and data.
    await killHard(server);
    await stateIs(page, 'connected', true);
    server = await startHerald(port, dataDir);
    await stateIs(page, 'connected');

    // 3. A message sent by a backend (this test) over HTTP.
    const config = await fetch(new URL('/demo/config', base));
    assert.equal(config.status, 200, 'GET /demo/config answers 200 in --demo mode');
    const { api_key: apiKey } = await config.json();
    const sent = await post(base, apiKey, '/v1/messages', {
      to: { users: ['alice'] },
      payload: { text: 'after the restart', from: 'backend' },
    });
    assert.equal(sent.status, 202, `POST /v1/messages: ${JSON.stringify(sent.body)}`);
    await page.waitForSelector('#messages li[data-stream="user"][data-seq="2"]');

    // Exactly seqs 1 and 2, once each, in order.
    const items = await page.$$eval('#messages li', (lis) =>
      lis.map((li) => ({ stream: li.dataset.stream, seq: li.dataset.seq, text: li.textContent })),
    );
    assert.deepEqual(
      items.map((i) => [i.stream, i.seq]),
      [
        ['user', '1'],
        ['user', '2'],
      ],
    );
    assert.match(items[0].text, /hello from the page/);
    // The page published it through its connection: the server set `from`.
    assert.match(items[0].text, /^#1alice: /);
    assert.match(items[1].text, /after the restart/);
    assert.deepEqual(
      await page.evaluate(() => window.heraldClient.positions()),
      { user: 2 },
    );

    await mkdir(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  } catch (e) {
    e.message += diagnostics();
    throw e;
  }
});
