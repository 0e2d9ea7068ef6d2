// Unit tests of web/client.js: `node --test web/`. No network, no real sleeps:
// a fake WebSocket, a fake clock and a scripted random source.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CloseCodes, HeraldClient, HeraldError, tokenExpiry } from './client.js';

/** Timers that only fire when the test advances the clock. */
class FakeClock {
  constructor() {
    this.now = 0;
    this.nextId = 1;
    this.timers = new Map(); // id -> {at, fn, delay}
    this.setTimeout = (fn, delay) => {
      const id = this.nextId++;
      this.timers.set(id, { at: this.now + delay, fn, delay });
      return id;
    };
    this.clearTimeout = (id) => {
      this.timers.delete(id);
    };
  }

  /** Runs every timer due within `ms`, in time order. */
  async advance(ms) {
    const end = this.now + ms;
    for (;;) {
      let next = null;
      for (const [id, t] of this.timers) {
        if (t.at <= end && (next === null || t.at < next[1].at)) next = [id, t];
      }
      if (next === null) break;
      this.timers.delete(next[0]);
      this.now = next[1].at;
      next[1].fn();
      await settle();
    }
    this.now = end;
  }

  delays() {
    return [...this.timers.values()].map((t) => t.delay);
  }
}

/** Lets promise callbacks (token functions, fetch probes) run. */
async function settle() {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** A WebSocket the test drives from the server side. */
function fakeWebSocketClass() {
  class FakeWebSocket {
    static instances = [];

    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      FakeWebSocket.instances.push(this);
    }

    get params() {
      return Object.fromEntries(new URL(this.url).searchParams);
    }

    frames() {
      return this.sent.map((s) => JSON.parse(s));
    }

    send(text) {
      if (this.readyState !== 1) throw new Error('not open');
      this.sent.push(text);
    }

    close(code, reason) {
      this.closedWith = { code, reason };
      this.readyState = 3;
    }

    // -- the server's side --
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }

    receive(frame) {
      this.onmessage?.({ data: JSON.stringify(frame) });
    }

    welcome(epoch = 'e1', extra = {}) {
      this.open();
      this.receive({ type: 'welcome', user: 'u1', node: 'n1', epochs: { user: epoch, ...extra } });
    }

    msg(seq, payload = { n: seq }, stream = 'user') {
      this.receive({ type: 'msg', id: `m${seq}`, stream, seq, ts: 1000 + seq, payload });
    }

    drop(code = 1006) {
      this.readyState = 3;
      this.onclose?.({ code, reason: '', wasClean: false });
    }

    /** A refused handshake as a browser reports it: error, then close 1006. */
    refuse() {
      this.readyState = 3;
      this.onerror?.({ type: 'error' });
      this.onclose?.({ code: 1006, reason: '', wasClean: false });
    }
  }
  return FakeWebSocket;
}

/** A random source that yields the given values in turn (then the last one). */
function scripted(...values) {
  let i = 0;
  return () => values[Math.min(i++, values.length - 1)];
}

function setup(options = {}) {
  const clock = new FakeClock();
  const WS = fakeWebSocketClass();
  const events = {
    message: [],
    state: [],
    reset: [],
    error: [],
    welcome: [],
    retry: [],
    subscribed: [],
    close: [],
    refreshed: [],
  };
  const client = new HeraldClient({
    url: 'ws://herald.test/ws',
    token: 'tok',
    WebSocket: WS,
    fetch: async () => ({ status: 400 }),
    random: () => 0.5,
    now: () => clock.now,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    pingIntervalMs: 0,
    connectTimeoutMs: 1e9, // only the tests of these timers turn them on
    ...options,
  });
  for (const name of Object.keys(events)) client.on(name, (v) => events[name].push(v));
  const socket = () => WS.instances.at(-1);
  return { client, clock, WS, events, socket };
}

test('emits each (stream, seq) once: drops seqs at or below the last seen', async () => {
  const { client, events, socket } = setup({ autoAck: false });
  client.connect();
  await settle();
  const ws = socket();
  ws.welcome();
  ws.msg(1);
  ws.msg(2);
  ws.msg(2);
  ws.msg(1);
  ws.msg(3);
  ws.msg(1, { n: 1 }, 'topic:news'); // same seq, other stream: not a duplicate
  ws.msg(1, { n: 1 }, 'topic:news');
  assert.deepEqual(
    events.message.map((m) => [m.stream, m.seq]),
    [
      ['user', 1],
      ['user', 2],
      ['user', 3],
      ['topic:news', 1],
    ],
  );
  assert.deepEqual(events.message[0], {
    stream: 'user',
    seq: 1,
    id: 'm1',
    ts: 1001,
    payload: { n: 1 },
    from: undefined,
  });
  assert.deepEqual(client.positions(), { user: 3, 'topic:news': 1 });
});

test('duplicates replayed after a reconnect are dropped too', async () => {
  const { client, clock, events, socket } = setup({ autoAck: false });
  client.connect();
  await settle();
  socket().welcome();
  socket().msg(1);
  socket().msg(2);
  socket().drop();
  await clock.advance(60_000);
  socket().welcome();
  socket().msg(2); // a server that replays from further back
  socket().msg(3);
  assert.deepEqual(
    events.message.map((m) => m.seq),
    [1, 2, 3],
  );
});

test('the first URL has only the token; after a drop it carries since and epoch', async () => {
  const { client, clock, WS, socket } = setup({ autoAck: false });
  client.connect();
  await settle();
  assert.equal(WS.instances.length, 1);
  assert.deepEqual(socket().params, { token: 'tok' });
  assert.equal(new URL(socket().url).pathname, '/ws');
  socket().welcome('ep7');
  socket().msg(4);
  socket().msg(5);
  socket().drop(4001);
  assert.equal(client.state, 'disconnected');
  await clock.advance(60_000);
  assert.equal(WS.instances.length, 2);
  assert.deepEqual(socket().params, { token: 'tok', since: '5', epoch: 'ep7' });
  assert.deepEqual(client.epochs(), { user: 'ep7' });
});

test('positions and epochs given as options are resumed from the first connection', async () => {
  const { client, socket } = setup({ positions: { user: 9 }, epochs: { user: 'old' } });
  client.connect();
  await settle();
  assert.deepEqual(socket().params, { token: 'tok', since: '9', epoch: 'old' });
  // The welcome's different epoch does not overwrite the one the position belongs to:
  // the server compares them and answers with a reset.
  socket().welcome('new');
  assert.deepEqual(client.epochs(), { user: 'old' });
});

test('a position given without its epoch adopts the epoch of the welcome', async () => {
  const { client, socket } = setup({ positions: { user: 4 } });
  client.connect();
  await settle();
  assert.deepEqual(socket().params, { token: 'tok', since: '4' });
  socket().welcome('e9');
  assert.deepEqual(client.epochs(), { user: 'e9' });
});

test('an http(s) URL is turned into ws(s)', async () => {
  const { client, socket } = setup({ url: 'https://herald.test/ws?x=1' });
  client.connect();
  await settle();
  assert.equal(socket().url, 'wss://herald.test/ws?x=1&token=tok');
});

test('backoff grows exponentially, is fully jittered, is capped, and resets after welcome', async () => {
  const randoms = [];
  let r = 0.5;
  const { client, clock, events, socket } = setup({
    minBackoffMs: 100,
    maxBackoffMs: 1000,
    random: () => {
      randoms.push(r);
      return r;
    },
  });
  client.connect();
  await settle();
  // Five failed handshakes in a row (network failures: the probe says 400).
  for (let i = 0; i < 5; i++) {
    socket().refuse();
    await settle();
    await clock.advance(events.retry.at(-1).delayMs);
  }
  assert.deepEqual(
    events.retry.map((e) => e.delayMs),
    [50, 100, 200, 400, 500], // 0.5 * min(1000, 100 * 2^n)
  );
  assert.deepEqual(
    events.retry.map((e) => e.attempt),
    [1, 2, 3, 4, 5],
  );

  // Jitter: the delay is random * ceiling, so 0 and just under the ceiling are possible.
  r = 0;
  socket().refuse();
  await settle();
  assert.equal(events.retry.at(-1).delayMs, 0);
  await clock.advance(0);
  r = 0.999;
  socket().refuse();
  await settle();
  assert.equal(events.retry.at(-1).delayMs, 999);
  await clock.advance(999);

  // A welcome starts the backoff over.
  socket().welcome();
  assert.equal(client.state, 'connected');
  r = 0.5;
  socket().drop();
  assert.equal(events.retry.at(-1).delayMs, 50);
  assert.equal(events.retry.at(-1).attempt, 1);
  // No reconnection before the delay has passed.
  const before = events.state.length;
  await clock.advance(49);
  assert.equal(events.state.length, before);
  await clock.advance(1);
  assert.equal(client.state, 'connecting');
});

test('the default random source is used when none is given, within [0, ceiling)', async () => {
  const { client, events, socket } = setup({ random: undefined, minBackoffMs: 1000 });
  client.connect();
  await settle();
  socket().refuse();
  await settle();
  const { delayMs } = events.retry[0];
  assert.ok(delayMs >= 0 && delayMs < 1000, `delay ${delayMs}`);
  client.close();
});

test('states: connecting, connected, disconnected, connecting, connected, closed', async () => {
  const { client, clock, events, socket } = setup();
  client.connect();
  await settle();
  socket().welcome();
  socket().drop();
  await clock.advance(60_000);
  socket().welcome();
  client.close();
  assert.deepEqual(events.state, [
    'connecting',
    'connected',
    'disconnected',
    'connecting',
    'connected',
    'closed',
  ]);
  assert.equal(socket().closedWith.code, 1000);
  await clock.advance(60_000);
  assert.equal(client.state, 'closed'); // no reconnection after close()
});

test('reset moves the position to from - 1, keeps its epoch and emits', async () => {
  const { client, clock, events, socket } = setup({ autoAck: false });
  client.connect();
  await settle();
  socket().welcome('e1');
  socket().msg(1);
  socket().msg(2);
  socket().msg(3);
  // The stream was recreated: it goes on from 1 in a new epoch.
  socket().receive({ type: 'reset', stream: 'user', from: 1, epoch: 'e2' });
  assert.deepEqual(events.reset, [{ stream: 'user', from: 1, epoch: 'e2' }]);
  assert.deepEqual(client.positions(), { user: 0 });
  assert.deepEqual(client.epochs(), { user: 'e2' });
  socket().msg(1, { fresh: true });
  assert.deepEqual(events.message.at(-1).payload, { fresh: true });
  // Expired entries: the stream goes on from 10.
  socket().receive({ type: 'reset', stream: 'user', from: 10, epoch: 'e2' });
  assert.deepEqual(client.positions(), { user: 9 });
  socket().msg(10);
  assert.equal(events.message.at(-1).seq, 10);
  socket().drop();
  await clock.advance(60_000);
  assert.deepEqual(socket().params, { token: 'tok', since: '10', epoch: 'e2' });
});

test('subscriptions are sent once connected and re-sent with since on every reconnect', async () => {
  const { client, clock, socket } = setup({ autoAck: false });
  client.subscribe('news'); // before connecting: sent after welcome
  client.connect();
  await settle();
  socket().welcome();
  assert.deepEqual(socket().frames(), [{ type: 'subscribe', topic: 'news' }]);
  client.subscribe('sport', 41);
  assert.deepEqual(socket().frames().at(-1), { type: 'subscribe', topic: 'sport', since: 41 });
  socket().msg(7, 'n7', 'topic:news');
  socket().msg(42, 's42', 'topic:sport');
  client.subscribe('weather');
  client.unsubscribe('weather');
  assert.deepEqual(socket().frames().at(-1), { type: 'unsubscribe', topic: 'weather' });
  socket().drop(4002);
  await clock.advance(60_000);
  const ws = socket();
  assert.deepEqual(ws.frames(), []); // nothing before welcome
  ws.welcome();
  assert.deepEqual(ws.frames(), [
    { type: 'subscribe', topic: 'news', since: 7 },
    { type: 'subscribe', topic: 'sport', since: 42 },
  ]);
  assert.deepEqual(client.positions(), { 'topic:news': 7, 'topic:sport': 42 });
});

test('other announced streams are resumed with one resume frame right after welcome', async () => {
  const { client, clock, socket } = setup({ autoAck: false });
  client.subscribe('news');
  client.connect();
  await settle();
  socket().welcome('e1', { all: 'ea', 'topic:news': 'en' });
  assert.deepEqual(socket().frames(), [{ type: 'subscribe', topic: 'news' }]); // nothing to resume yet
  socket().msg(3, 'u3');
  socket().msg(5, 'a5', 'all');
  socket().msg(2, 'n2', 'topic:news');
  socket().drop();
  await clock.advance(60_000);
  assert.equal(socket().params.since, '3');
  socket().welcome('e1', { all: 'ea', 'topic:news': 'en' });
  assert.deepEqual(socket().frames(), [
    // The topic's position goes back with the epoch it belongs to.
    { type: 'subscribe', topic: 'news', since: 2, epoch: 'en' },
    { type: 'resume', streams: { all: 5 }, epochs: { all: 'ea' } },
  ]);
});

test('auto-ack sends at most one ack frame per interval, with the highest seq', async () => {
  const { client, clock, socket } = setup({ ackIntervalMs: 200 });
  client.connect();
  await settle();
  const ws = socket();
  ws.welcome();
  ws.msg(1);
  ws.msg(2);
  ws.msg(3);
  assert.deepEqual(ws.frames(), []);
  await clock.advance(199);
  assert.deepEqual(ws.frames(), []);
  await clock.advance(1);
  assert.deepEqual(ws.frames(), [{ type: 'ack', stream: 'user', seq: 3 }]);
  ws.msg(4);
  await clock.advance(100);
  ws.msg(5);
  await clock.advance(100);
  assert.deepEqual(ws.frames().slice(1), [{ type: 'ack', stream: 'user', seq: 5 }]);
  await clock.advance(1000);
  assert.equal(ws.frames().length, 2); // nothing new: no frame
  // Topic streams are not auto-acked.
  ws.msg(1, 'x', 'topic:news');
  await clock.advance(1000);
  assert.equal(ws.frames().length, 2);
});

test('autoAck: false sends no ack; ack() is batched the same way', async () => {
  const { client, clock, socket } = setup({ autoAck: false });
  client.connect();
  await settle();
  const ws = socket();
  ws.welcome();
  ws.msg(1);
  ws.msg(2);
  await clock.advance(1000);
  assert.deepEqual(ws.frames(), []);
  client.ack('user', 2);
  client.ack('user', 1); // lower: ignored
  await clock.advance(200);
  assert.deepEqual(ws.frames(), [{ type: 'ack', stream: 'user', seq: 2 }]);
});

test('acks pending when the connection drops are sent after the next welcome', async () => {
  const { client, clock, socket } = setup();
  client.connect();
  await settle();
  socket().welcome();
  socket().msg(1);
  socket().drop();
  await clock.advance(10_000); // the reconnection happens; the ack waits for welcome
  const ws = socket();
  assert.deepEqual(ws.frames(), []);
  ws.welcome();
  await clock.advance(200);
  assert.deepEqual(ws.frames(), [{ type: 'ack', stream: 'user', seq: 1 }]);
});

test('close() flushes pending acks before closing', async () => {
  const { client, socket } = setup();
  client.connect();
  await settle();
  const ws = socket();
  ws.welcome();
  ws.msg(1);
  client.close();
  assert.deepEqual(ws.frames(), [{ type: 'ack', stream: 'user', seq: 1 }]);
  assert.equal(ws.closedWith.code, 1000);
});

test('a refused token (401 at the handshake) stops the client with an error', async () => {
  const probes = [];
  const { client, clock, WS, events, socket } = setup({
    fetch: async (url) => {
      probes.push(url);
      return { status: 401 };
    },
  });
  client.connect();
  await settle();
  socket().refuse();
  await settle();
  assert.deepEqual(probes, ['http://herald.test/ws?token=tok']);
  assert.equal(events.error.length, 1);
  assert.ok(events.error[0] instanceof HeraldError);
  assert.equal(events.error[0].code, 'unauthorized');
  assert.equal(events.error[0].fatal, true);
  assert.equal(client.state, 'closed');
  await clock.advance(10 * 60_000);
  assert.equal(WS.instances.length, 1); // no retry with the same token
});

test('a 401 reported by the WebSocket implementation itself needs no probe', async () => {
  let probed = false;
  const { client, events, socket } = setup({
    fetch: async () => {
      probed = true;
      return { status: 200 };
    },
  });
  client.connect();
  await settle();
  const ws = socket();
  ws.readyState = 3;
  ws.onerror?.({ message: 'Unexpected server response: 401' }); // what Node's `ws` says
  ws.onclose?.({ code: 1006 });
  await settle();
  assert.equal(probed, false);
  assert.equal(events.error[0].code, 'unauthorized');
  assert.equal(client.state, 'closed');
});

test('with a token function, a 401 asks for a fresh token; the same token again stops', async () => {
  const calls = [];
  const tokens = ['t1', 't2', 't2'];
  const { client, clock, WS, events, socket } = setup({
    token: async (info) => {
      calls.push(info.rejected);
      return tokens[calls.length - 1];
    },
    fetch: async () => ({ status: 401 }),
  });
  client.connect();
  await settle();
  assert.equal(socket().params.token, 't1');
  socket().refuse();
  await settle();
  assert.equal(events.error.length, 0);
  await clock.advance(60_000);
  assert.equal(socket().params.token, 't2');
  assert.deepEqual(calls, [false, true]);
  socket().refuse();
  await settle();
  await clock.advance(60_000);
  assert.deepEqual(calls, [false, true, true]);
  assert.equal(WS.instances.length, 2); // t2 was refused and came back: not tried again
  assert.equal(events.error.length, 1);
  assert.equal(events.error[0].code, 'unauthorized');
  assert.equal(client.state, 'closed');
});

test('a fresh token after a 401 that works resets the refusal', async () => {
  const calls = [];
  const { client, clock, socket } = setup({
    token: async (info) => {
      calls.push(info.rejected);
      return `t${calls.length}`;
    },
    fetch: async () => ({ status: 401 }),
  });
  client.connect();
  await settle();
  socket().refuse();
  await settle();
  await clock.advance(60_000);
  socket().welcome();
  socket().drop();
  await clock.advance(60_000);
  assert.deepEqual(calls, [false, true, false]);
});

test('a network failure (probe unreachable) keeps retrying with the same token', async () => {
  const { client, clock, WS, events, socket } = setup({
    fetch: async () => {
      throw new TypeError('fetch failed');
    },
  });
  client.connect();
  await settle();
  for (let i = 0; i < 4; i++) {
    socket().refuse();
    await settle();
    await clock.advance(60_000);
  }
  assert.equal(WS.instances.length, 5);
  assert.equal(events.error.length, 0);
  assert.equal(client.state, 'connecting');
  assert.ok(WS.instances.every((ws) => ws.params.token === 'tok'));
});

test('a token function that fails is reported and retried with backoff', async () => {
  let n = 0;
  const { client, clock, WS, events } = setup({
    token: async () => {
      n++;
      if (n === 1) throw new Error('auth backend down');
      return 'ok';
    },
  });
  client.connect();
  await settle();
  assert.equal(WS.instances.length, 0);
  assert.equal(events.error[0].code, 'token');
  assert.equal(events.error[0].fatal, false);
  await clock.advance(60_000);
  assert.equal(WS.instances.length, 1);
});

test('a connection that never gets a welcome is dropped after connectTimeoutMs', async () => {
  const { client, clock, WS, events, socket } = setup({ connectTimeoutMs: 5000 });
  client.connect();
  await settle();
  socket().open();
  await clock.advance(4999);
  assert.equal(client.state, 'connecting');
  await clock.advance(1);
  assert.equal(WS.instances[0].closedWith.code, 4000);
  assert.equal(client.state, 'disconnected');
  await clock.advance(events.retry.at(-1).delayMs);
  assert.equal(WS.instances.length, 2);
});

test('pings when connected and drops a connection that stays silent', async () => {
  const { client, clock, WS, socket } = setup({ pingIntervalMs: 1000 });
  client.connect();
  await settle();
  const ws = socket();
  ws.welcome();
  await clock.advance(1000);
  assert.deepEqual(ws.frames(), [{ type: 'ping' }]);
  ws.receive({ type: 'pong' });
  await clock.advance(1000);
  assert.deepEqual(ws.frames(), [{ type: 'ping' }, { type: 'ping' }]);
  await clock.advance(1000); // no answer to the second ping
  assert.equal(ws.closedWith.code, 4000);
  assert.equal(client.state, 'disconnected');
  await clock.advance(60_000);
  assert.equal(WS.instances.length, 2);
});

test('server error frames and garbage are reported, and the connection stays', async () => {
  const { client, events, socket } = setup();
  client.connect();
  await settle();
  const ws = socket();
  ws.welcome();
  ws.receive({ type: 'error', code: 'unknown_stream', message: 'topic:x' });
  ws.onmessage({ data: 'not json' });
  ws.receive({ type: 'something_new' }); // ignored
  assert.deepEqual(
    events.error.map((e) => e.code),
    ['unknown_stream', 'protocol'],
  );
  assert.equal(client.state, 'connected');
});

test('off() removes a listener, and a throwing listener does not stop delivery', async () => {
  const { client, events, socket } = setup();
  const seen = [];
  const fn = (m) => seen.push(m.seq);
  const originalReportError = globalThis.reportError;
  const reported = [];
  globalThis.reportError = (e) => reported.push(e);
  try {
    client.on('message', () => {
      throw new Error('listener bug');
    });
    client.on('message', fn);
    client.connect();
    await settle();
    socket().welcome();
    socket().msg(1);
    client.off('message', fn);
    socket().msg(2);
  } finally {
    globalThis.reportError = originalReportError;
  }
  assert.deepEqual(seen, [1]);
  assert.deepEqual(
    events.message.map((m) => m.seq),
    [1, 2],
  );
  assert.equal(reported.length, 2);
});

test('missing url or token is a TypeError', () => {
  assert.throws(() => new HeraldClient({ token: 't' }), TypeError);
  assert.throws(() => new HeraldClient({ url: 'ws://x/ws' }), TypeError);
});

// ---- publish() -------------------------------------------------------------------

/** Lets a promise's settlement be asserted without awaiting it forever. */
function track(promise) {
  const outcome = { settled: false, value: undefined, error: undefined };
  promise.then(
    (value) => Object.assign(outcome, { settled: true, value }),
    (error) => Object.assign(outcome, { settled: true, error }),
  );
  return outcome;
}

async function connected(options = {}) {
  const s = setup({ autoAck: false, ...options });
  s.client.connect();
  await settle();
  s.socket().welcome();
  return s;
}

test('publish() sends the frame with a key and resolves with the id of `published`', async () => {
  const { client, socket } = await connected();
  const given = track(client.publish({ topic: 'room-7' }, { text: 'hi' }, { key: 'm-1' }));
  const generated = track(client.publish({ users: ['u2'] }, 42));
  const [first, second] = socket().frames();
  assert.deepEqual(first, {
    type: 'publish',
    to: { topic: 'room-7' },
    payload: { text: 'hi' },
    key: 'm-1',
  });
  assert.equal(second.type, 'publish');
  assert.match(second.key, /^[0-9a-f-]{32,36}$/, 'a generated key is a random UUID');
  await settle();
  assert.equal(given.settled, false, 'nothing settles before the answer');
  // Answers come for their own key, whatever the order.
  socket().receive({ type: 'published', key: second.key, id: 'id-2' });
  socket().receive({ type: 'published', key: 'm-1', id: 'id-1' });
  socket().receive({ type: 'published', key: 'unknown', id: 'id-x' }); // ignored
  await settle();
  assert.deepEqual(given.value, { id: 'id-1', key: 'm-1' });
  assert.deepEqual(generated.value, { id: 'id-2', key: second.key });
});

test('publish() rejects on the error frame that names its key; other errors stay events', async () => {
  const { client, events, socket } = await connected();
  const throttled = track(client.publish({ topic: 'a' }, 1, { key: 'k1' }));
  const unavailable = track(client.publish({ topic: 'a' }, 2, { key: 'k2' }));
  // A key that is a part of another must not take the other's answer.
  const longer = track(client.publish({ topic: 'a' }, 3, { key: 'k1-b' }));
  socket().receive({
    type: 'error',
    code: 'throttled',
    message: 'publishing too fast; `k1-b` was not sent',
  });
  socket().receive({
    type: 'error',
    code: 'unavailable',
    message: 'the broker did not take `k2`; send it again',
  });
  socket().receive({ type: 'error', code: 'bad_topic', message: 'a*' });
  await settle();
  assert.equal(longer.error.code, 'throttled');
  assert.equal(longer.error.key, 'k1-b');
  assert.ok(longer.error instanceof HeraldError);
  assert.equal(unavailable.error.code, 'unavailable');
  assert.equal(throttled.settled, false);
  socket().receive({
    type: 'error',
    code: 'forbidden',
    message: 'the token does not allow publishing to {"topic":"a"}; `k1` was not sent',
  });
  await settle();
  assert.equal(throttled.error.code, 'forbidden');
  // Only the error no publish was waiting for became an event.
  assert.deepEqual(
    events.error.map((e) => e.code),
    ['bad_topic'],
  );
});

test('a publish unanswered when the connection drops rejects; the same key can be sent again', async () => {
  const { client, clock, socket } = await connected();
  const lost = track(client.publish({ topic: 'a' }, 'x', { key: 'same' }));
  socket().drop(1006);
  await settle();
  assert.equal(lost.error.code, 'disconnected');
  assert.equal(lost.error.key, 'same');
  assert.match(lost.error.message, /send it again with the same key/);
  // Published while disconnected: it waits for the next welcome.
  const again = track(client.publish({ topic: 'a' }, 'x', { key: 'same' }));
  await clock.advance(60_000);
  assert.deepEqual(socket().frames(), []);
  socket().welcome();
  assert.deepEqual(socket().frames(), [
    { type: 'publish', to: { topic: 'a' }, payload: 'x', key: 'same' },
  ]);
  socket().receive({ type: 'published', key: 'same', id: 'id-1' });
  await settle();
  assert.deepEqual(again.value, { id: 'id-1', key: 'same' });
});

test('publishes wait for the first welcome, after the subscriptions; close() rejects the waiting ones', async () => {
  const { client, socket } = setup();
  const beforeConnect = track(client.publish({ topic: 'a' }, 1));
  await settle();
  assert.equal(beforeConnect.error.code, 'closed');
  client.subscribe('news');
  client.connect();
  const first = track(client.publish({ topic: 'a' }, 1, { key: 'p1' }));
  await settle();
  socket().welcome();
  assert.deepEqual(
    socket()
      .frames()
      .map((f) => f.type),
    ['subscribe', 'publish'],
  );
  socket().drop();
  await settle();
  assert.equal(first.error.code, 'disconnected');
  const waiting = track(client.publish({ topic: 'a' }, 2, { key: 'p2' }));
  client.close();
  await settle();
  assert.equal(waiting.error.code, 'closed');
  assert.equal(waiting.error.key, 'p2');
  const afterClose = track(client.publish({ topic: 'a' }, 3));
  await settle();
  assert.equal(afterClose.error.code, 'closed');
});

test('publish() refuses what the server would refuse or choke on, without sending', async () => {
  const { client, socket } = await connected({ maxFrameBytes: 200 });
  const cases = [
    [client.publish(null, 1), TypeError],
    [client.publish(['u1'], 1), TypeError],
    [client.publish({ topic: 'a' }, undefined), TypeError],
    [client.publish({ topic: 'a' }, 1, { key: '' }), TypeError],
    [client.publish({ topic: 'a' }, 10n), TypeError], // not JSON
  ];
  for (const [promise, kind] of cases) await assert.rejects(promise, kind);
  // Over the frame limit the server would close the connection: refused here.
  const big = await client.publish({ topic: 'a' }, 'x'.repeat(300), { key: 'big' }).catch((e) => e);
  assert.equal(big.code, 'too_large');
  assert.deepEqual(socket().frames(), []);
  assert.equal(client.state, 'connected');
});

// ---- subscribe() with epochs, `subscribed`, topic resets ---------------------------

test('subscribe with since and epoch sends both; `subscribed` is emitted', async () => {
  const { client, events, socket } = await connected();
  client.subscribe('news', { since: 12, epoch: 'ep-n' });
  assert.deepEqual(socket().frames(), [
    { type: 'subscribe', topic: 'news', since: 12, epoch: 'ep-n' },
  ]);
  socket().receive({
    type: 'subscribed',
    topic: 'news',
    stream: 'topic:news',
    epoch: 'ep-n',
    head: 20,
  });
  assert.deepEqual(events.subscribed, [
    { topic: 'news', stream: 'topic:news', epoch: 'ep-n', head: 20 },
  ]);
  // The position is the one asked for, not the head: the server replays 13..20.
  assert.deepEqual(client.positions(), { 'topic:news': 12 });
  assert.throws(() => client.subscribe('x', { epoch: 'e' }), TypeError); // an epoch needs its since
  assert.throws(() => client.subscribe('x', { since: -1 }), TypeError);
});

test('a topic subscribed at its head resumes from that head, with its epoch, after a reconnect', async () => {
  const { client, clock, socket } = await connected();
  client.subscribe('news');
  assert.deepEqual(socket().frames(), [{ type: 'subscribe', topic: 'news' }]);
  socket().receive({
    type: 'subscribed',
    topic: 'news',
    stream: 'topic:news',
    epoch: 'ep-n',
    head: 17,
  });
  assert.deepEqual(client.positions(), { 'topic:news': 17 });
  assert.deepEqual(client.epochs(), { user: 'e1', 'topic:news': 'ep-n' });
  // Nothing arrived before the drop; messages 18.. sent meanwhile are not missed.
  socket().drop(4001);
  await clock.advance(60_000);
  socket().welcome();
  assert.deepEqual(socket().frames(), [
    { type: 'subscribe', topic: 'news', since: 17, epoch: 'ep-n' },
  ]);
  // A `subscribed` for a topic given up meanwhile changes nothing.
  client.unsubscribe('news');
  socket().receive({
    type: 'subscribed',
    topic: 'news',
    stream: 'topic:news',
    epoch: 'ep-n',
    head: 30,
  });
  assert.deepEqual(client.positions(), {});
});

test('a subscribe with a position keeps its epoch; a reset of the topic is surfaced and followed', async () => {
  const { client, clock, events, socket } = await connected();
  client.subscribe('news', { since: 5, epoch: 'old' });
  // The server's epoch differs: `subscribed` names it, then the reset moves the position.
  socket().receive({
    type: 'subscribed',
    topic: 'news',
    stream: 'topic:news',
    epoch: 'new',
    head: 2,
  });
  assert.equal(client.epochs()['topic:news'], 'old');
  socket().receive({ type: 'reset', stream: 'topic:news', from: 1, epoch: 'new' });
  assert.deepEqual(events.reset, [{ stream: 'topic:news', from: 1, epoch: 'new' }]);
  assert.deepEqual(client.positions(), { 'topic:news': 0 });
  socket().msg(1, 'n1', 'topic:news');
  socket().msg(2, 'n2', 'topic:news');
  assert.deepEqual(
    events.message.map((m) => [m.stream, m.seq]),
    [
      ['topic:news', 1],
      ['topic:news', 2],
    ],
  );
  socket().drop();
  await clock.advance(60_000);
  socket().welcome();
  assert.deepEqual(socket().frames(), [
    { type: 'subscribe', topic: 'news', since: 2, epoch: 'new' },
  ]);
});

test('subscribe(topic, since) as a number still works', async () => {
  const { client, socket } = await connected();
  client.subscribe('sport', 41);
  assert.deepEqual(socket().frames(), [{ type: 'subscribe', topic: 'sport', since: 41 }]);
});

// ---- close codes -----------------------------------------------------------------

test('a drain (1012) reconnects after a jittered backoff and resumes every stream', async () => {
  const randoms = [0.25];
  const { client, clock, WS, events, socket } = setup({
    autoAck: false,
    minBackoffMs: 1000,
    random: () => randoms.shift() ?? 0.5,
  });
  client.subscribe('news');
  client.connect();
  await settle();
  socket().welcome('eu', { all: 'ea' });
  socket().receive({
    type: 'subscribed',
    topic: 'news',
    stream: 'topic:news',
    epoch: 'en',
    head: 3,
  });
  socket().msg(7, 'u7');
  socket().msg(2, 'a2', 'all');
  socket().msg(4, 'n4', 'topic:news');
  socket().drop(CloseCodes.SERVICE_RESTART);
  assert.deepEqual(events.close, [{ code: 1012, reason: '' }]);
  assert.deepEqual(events.retry, [{ attempt: 1, delayMs: 250 }]); // 0.25 * 1000: jittered
  await clock.advance(249);
  assert.equal(WS.instances.length, 1);
  await clock.advance(1);
  assert.equal(WS.instances.length, 2);
  assert.deepEqual(socket().params, { token: 'tok', since: '7', epoch: 'eu' });
  socket().welcome('eu', { all: 'ea' });
  assert.deepEqual(socket().frames(), [
    { type: 'subscribe', topic: 'news', since: 4, epoch: 'en' },
    { type: 'resume', streams: { all: 2 }, epochs: { all: 'ea' } },
  ]);
  assert.equal(events.error.length, 0);
});

test('4001, 4002, 4003 and 4007 reconnect with backoff; 4008 stops for good', async () => {
  for (const code of [4001, 4002, 4003, 4007]) {
    const { clock, WS, events, socket } = await connected();
    socket().drop(code);
    assert.equal(events.retry.length, 1, `close ${code}`);
    await clock.advance(60_000);
    assert.equal(WS.instances.length, 2, `close ${code}`);
    assert.equal(events.error.length, 0);
  }
  const { client, clock, WS, events, socket } = await connected({ getToken: async () => 'fresh' });
  const waiting = track(client.publish({ topic: 'a' }, 1));
  socket().onclose({ code: CloseCodes.DISCONNECTED_FINAL, reason: 'banned' });
  await settle();
  assert.equal(client.state, 'closed');
  assert.equal(events.error.length, 1);
  assert.equal(events.error[0].code, 'disconnected');
  assert.equal(events.error[0].fatal, true);
  assert.equal(events.error[0].closeCode, 4008);
  assert.match(events.error[0].message, /banned/);
  assert.equal(waiting.error.code, 'disconnected');
  await clock.advance(10 * 60_000);
  assert.equal(WS.instances.length, 1);
});

test('4004 asks getToken for a new token, reconnects with it and resumes', async () => {
  const tokens = ['t2'];
  const { client, clock, WS, events, socket } = await connected({
    token: 't1',
    getToken: async () => tokens.shift(),
  });
  socket().msg(3);
  socket().drop(CloseCodes.TOKEN_EXPIRED);
  assert.equal(client.state, 'disconnected');
  await clock.advance(60_000);
  assert.equal(WS.instances.length, 2);
  assert.deepEqual(socket().params, { token: 't2', since: '3', epoch: 'e1' });
  assert.equal(events.error.length, 0);
  // The new token is kept: a drop that is not about the token reuses it.
  socket().welcome();
  socket().drop(1012);
  await clock.advance(60_000);
  assert.equal(socket().params.token, 't2');
});

test('4004 without a way to get a token stops with token_expired', async () => {
  const { client, clock, WS, events, socket } = await connected();
  socket().drop(CloseCodes.TOKEN_EXPIRED);
  await settle();
  assert.equal(client.state, 'closed');
  assert.equal(events.error[0].code, 'token_expired');
  assert.equal(events.error[0].fatal, true);
  await clock.advance(60_000);
  assert.equal(WS.instances.length, 1);
});

test('4004 with a failing getToken keeps trying; 4005 with a failing getToken stops', async () => {
  let fail = true;
  const expired = await connected({
    getToken: async () => {
      if (fail) throw new Error('auth backend down');
      return 'later';
    },
    token: 'first',
  });
  expired.socket().drop(CloseCodes.TOKEN_EXPIRED);
  await expired.clock.advance(1000);
  assert.equal(expired.events.error[0].code, 'token');
  assert.equal(expired.events.error[0].fatal, false);
  fail = false;
  await expired.clock.advance(60_000);
  assert.equal(expired.socket().params.token, 'later');

  const revoked = await connected({
    token: 'first',
    getToken: async () => {
      throw new Error('user logged out');
    },
  });
  revoked.socket().drop(CloseCodes.TOKEN_REVOKED);
  await revoked.clock.advance(60_000);
  assert.equal(revoked.client.state, 'closed');
  assert.equal(revoked.events.error.length, 1);
  assert.equal(revoked.events.error[0].code, 'token_revoked');
  assert.equal(revoked.events.error[0].fatal, true);
  assert.match(revoked.events.error[0].message, /user logged out/);
  assert.equal(revoked.WS.instances.length, 1);
});

test('4005 with a new token reconnects; 4006 asks once more and stops on the same token', async () => {
  const tokens = ['t2', 't2'];
  const { client, clock, WS, events, socket } = await connected({
    token: 't1',
    getToken: async () => tokens.shift(),
  });
  socket().drop(CloseCodes.TOKEN_REVOKED);
  await clock.advance(60_000);
  assert.equal(socket().params.token, 't2');
  socket().welcome();
  socket().drop(CloseCodes.REFRESH_REFUSED);
  await clock.advance(60_000);
  assert.equal(WS.instances.length, 2, 'the refused token is not tried again');
  assert.equal(client.state, 'closed');
  assert.equal(events.error[0].code, 'refresh_refused');
  assert.equal(events.error[0].fatal, true);
});

// ---- token refresh -------------------------------------------------------------------

/** An unsigned JWT-shaped token (the client reads `exp` without verifying). */
function jwt(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ sub: 'u1', ...claims })}.c2ln`;
}

test('tokenExpiry reads a JWT exp and nothing else', () => {
  assert.equal(tokenExpiry(jwt({ exp: 1764090000 })), 1764090000);
  assert.equal(tokenExpiry(jwt({ name: 'é' })), null);
  assert.equal(tokenExpiry('tok'), null);
  assert.equal(tokenExpiry('a.%%%.c'), null);
});

test('with getToken, a refresh frame goes out before the token expires and is repeated', async () => {
  const first = jwt({ exp: 600 }); // expires at 600 s on the fake clock
  const second = jwt({ exp: 1200 });
  const third = jwt({ exp: 1800 });
  const fresh = [second, third];
  const { client, clock, events, socket } = await connected({
    token: first,
    getToken: async () => fresh.shift(),
  });
  await clock.advance(539_999);
  assert.deepEqual(socket().frames(), []);
  await clock.advance(1); // 60 s before expiry
  assert.deepEqual(socket().frames(), [{ type: 'refresh', token: second }]);
  socket().receive({ type: 'refreshed', expires_at: 1200 });
  assert.deepEqual(events.refreshed, [{ expiresAt: 1200 }]);
  await clock.advance(1_140_000 - 540_000 - 1);
  assert.equal(socket().frames().length, 1);
  await clock.advance(1);
  assert.deepEqual(socket().frames().at(-1), { type: 'refresh', token: third });
  // A reconnection uses the newest token.
  socket().drop(1012);
  await clock.advance(60_000);
  assert.equal(socket().params.token, third);
  assert.equal(client.state, 'connecting');
});

test('welcome.expires_at, when the server sends it, times the refresh', async () => {
  const { client, clock, socket } = setup({ token: 'opaque', getToken: async () => 'next' });
  client.connect();
  await settle();
  socket().open();
  socket().receive({
    type: 'welcome',
    user: 'u1',
    node: 'n1',
    epochs: { user: 'e1' },
    expires_at: 100,
  });
  await clock.advance(49_999); // half of the 100 s left (shorter than 2 x 60 s)
  assert.deepEqual(socket().frames(), []);
  await clock.advance(1);
  assert.deepEqual(socket().frames(), [{ type: 'refresh', token: 'next' }]);
});

test('a failing getToken during refresh is reported and tried again; no refresh without getToken', async () => {
  let calls = 0;
  const { clock, events, socket } = await connected({
    token: jwt({ exp: 600 }),
    getToken: async () => {
      calls++;
      if (calls === 1) throw new Error('offline');
      return 'next';
    },
  });
  await clock.advance(540_000);
  assert.equal(events.error[0].code, 'token');
  assert.equal(events.error[0].fatal, false);
  assert.deepEqual(socket().frames(), []);
  await clock.advance(15_000);
  assert.deepEqual(socket().frames(), [{ type: 'refresh', token: 'next' }]);

  const same = jwt({ exp: 600 });
  const cached = await connected({ token: same, getToken: async () => same });
  await cached.clock.advance(540_000);
  assert.match(cached.events.error[0].message, /the token in use/);
  assert.deepEqual(cached.socket().frames(), []);

  const plain = await connected({ token: jwt({ exp: 600 }) });
  await plain.clock.advance(10 * 60_000);
  assert.deepEqual(plain.socket().frames(), []);
});

test('a token living 30 days does not overflow the timer into an immediate refresh', async () => {
  const { clock, socket } = await connected({
    token: jwt({ exp: 30 * 86400 }),
    getToken: async () => 'next',
  });
  await clock.advance(24 * 86400_000);
  assert.deepEqual(socket().frames(), []);
  await clock.advance(6 * 86400_000 - 60_000);
  assert.deepEqual(socket().frames(), [{ type: 'refresh', token: 'next' }]);
});

test('getToken alone supplies the first token; an expired one is replaced before connecting', async () => {
  const tokens = [jwt({ exp: 100 }), jwt({ exp: 10_000 })];
  const { client, clock, WS, events, socket } = setup({
    token: undefined,
    getToken: async () => tokens.shift(),
    minBackoffMs: 200_000,
    maxBackoffMs: 200_000,
  });
  client.connect();
  await settle();
  assert.equal(tokenExpiry(socket().params.token), 100);
  socket().refuse(); // the server is unreachable (the probe says 400)
  await settle();
  assert.equal(events.retry[0].delayMs, 100_000);
  await clock.advance(99_999);
  assert.equal(WS.instances.length, 1);
  await clock.advance(1); // at the first token's exp: it is not offered again
  assert.equal(WS.instances.length, 2);
  assert.equal(tokenExpiry(socket().params.token), 10_000);
});

test('token and getToken are checked at construction', () => {
  assert.throws(() => new HeraldClient({ url: 'ws://x/ws', getToken: 'nope' }), TypeError);
  assert.throws(
    () => new HeraldClient({ url: 'ws://x/ws', token: () => 't', getToken: async () => 't' }),
    TypeError,
  );
  assert.ok(new HeraldClient({ url: 'ws://x/ws', getToken: async () => 't' }));
});
