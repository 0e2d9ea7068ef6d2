// Herald WebSocket client: an ES module without dependencies, for browsers
// and Node. See docs/protocol.md for the wire protocol.
//
//   import { HeraldClient } from '/client.js';
//   const client = new HeraldClient({ url: 'wss://push.example.com/ws', token: fetchToken });
//   client.on('message', (m) => console.log(m.stream, m.seq, m.payload));
//   client.connect();
//
// What it does for you:
// - reconnects with exponential backoff and full jitter (the backoff starts
//   over after a successful `welcome`);
// - resumes every stream it follows from the last seq it received: the user
//   stream through the `since`/`epoch` query parameters of the handshake,
//   topic subscriptions by re-sending `subscribe` with `since`, any other
//   stream the server announces through a `resume` frame after `welcome`;
// - drops anything at or below the last seq seen of its stream, so each
//   (stream, seq) is emitted once;
// - follows `reset` frames (the position moves to `from - 1`, listeners are
//   told to reload);
// - acknowledges the user stream (batched: at most one `ack` frame per stream
//   per `ackIntervalMs`, carrying the highest seq);
// - detects a refused token (HTTP 401 at the handshake): with a token
//   function it asks for a fresh token, otherwise it reports an error and
//   stops instead of retrying forever.

/** The client-facing name of the connection's own stream. */
export const USER_STREAM = 'user';

/** Close codes the server uses (all of them mean: reconnect and resume). */
export const CloseCodes = Object.freeze({
  SLOW_CONSUMER: 4001,
  STORE_UNAVAILABLE: 4002,
  IDLE: 4003,
});

const OPEN = 1;

/** An error the client reports through its `error` event. */
export class HeraldError extends Error {
  /**
   * @param {string} code `unauthorized`, `token`, `protocol`, or a server error code
   *   (`bad_frame`, `unknown_stream`, ...)
   * @param {string} message
   * @param {{fatal?: boolean, cause?: unknown}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'HeraldError';
    this.code = code;
    /** True when the client stopped because of it (state `closed`). */
    this.fatal = Boolean(extra.fatal);
  }
}

/** The stream name of a topic subscription. */
export function topicStream(topic) {
  return `topic:${topic}`;
}

export class HeraldClient {
  /**
   * @param {object} options
   * @param {string} options.url `ws(s)://host/ws`; in a browser also a path such as `/ws`
   *   (resolved against the page's location).
   * @param {string | ((info: {rejected: boolean}) => string | Promise<string>)} options.token
   *   A token, or a function called before every connection attempt; `rejected` is true
   *   when the previous token was refused (HTTP 401), so it should return a fresh one.
   * @param {boolean} [options.autoAck=true] acknowledge the user stream's messages once emitted.
   * @param {number} [options.ackIntervalMs=200] at most one `ack` frame per stream per interval.
   * @param {number} [options.minBackoffMs=500]
   * @param {number} [options.maxBackoffMs=15000]
   * @param {number} [options.connectTimeoutMs=20000] from opening the socket to `welcome`.
   * @param {number} [options.pingIntervalMs=30000] send a `ping` frame every interval; a
   *   connection that stays silent for a whole interval after a ping is dropped (a lost peer
   *   sends no close). 0 disables.
   * @param {Record<string, number>} [options.positions] initial last-seen seqs (e.g. saved earlier).
   * @param {Record<string, string>} [options.epochs] the epochs those positions belong to.
   * @param {typeof WebSocket} [options.WebSocket] default `globalThis.WebSocket`.
   * @param {typeof fetch | null} [options.fetch] used to tell a refused token from a network
   *   failure when a handshake fails (browsers do not expose the HTTP status); default
   *   `globalThis.fetch`, null disables.
   * @param {() => number} [options.random] uniform in [0, 1), default `Math.random`.
   * @param {typeof setTimeout} [options.setTimeout]
   * @param {typeof clearTimeout} [options.clearTimeout]
   */
  constructor(options = {}) {
    if (!options.url) throw new TypeError('HeraldClient: `url` is required');
    if (options.token === undefined || options.token === null) {
      throw new TypeError('HeraldClient: `token` is required');
    }
    this._url = options.url;
    this._token = options.token;
    this._autoAck = options.autoAck ?? true;
    this._ackIntervalMs = options.ackIntervalMs ?? 200;
    this._minBackoffMs = options.minBackoffMs ?? 500;
    this._maxBackoffMs = options.maxBackoffMs ?? 15000;
    this._connectTimeoutMs = options.connectTimeoutMs ?? 20000;
    this._pingIntervalMs = options.pingIntervalMs ?? 30000;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this._fetch =
      options.fetch === undefined
        ? globalThis.fetch && globalThis.fetch.bind(globalThis)
        : options.fetch;
    this._random = options.random ?? Math.random;
    this._setTimeout = options.setTimeout ?? globalThis.setTimeout.bind(globalThis);
    this._clearTimeout = options.clearTimeout ?? globalThis.clearTimeout.bind(globalThis);

    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    /** stream -> last seq seen */
    this._positions = new Map(Object.entries(options.positions ?? {}));
    /** stream -> epoch the position belongs to */
    this._epochs = new Map(Object.entries(options.epochs ?? {}));
    /** topic -> true, in subscription order */
    this._topics = new Set();
    /** stream -> highest seq waiting to be acknowledged */
    this._pendingAcks = new Map();

    this._state = 'closed';
    this._wanted = false; // connect() called and not close()d
    this._ws = null;
    this._welcomed = false;
    this._attempt = 0; // consecutive failed attempts since the last welcome
    this._generation = 0; // invalidates callbacks of abandoned attempts
    this._retryTimer = null;
    this._ackTimer = null;
    this._connectTimer = null;
    this._pingTimer = null;
    this._awaitingPong = false;
    this._lastToken = null;
    this._tokenRejected = false;
    this._rejectedToken = null;
  }

  // ---- events -------------------------------------------------------------

  /**
   * Events: `message` ({stream, seq, id, ts, payload, from}), `state`
   * ('connecting' | 'connected' | 'disconnected' | 'closed'), `reset`
   * ({stream, from, epoch}), `error` (HeraldError), `welcome` (the frame),
   * `retry` ({attempt, delayMs}).
   */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return this;
  }

  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
    return this;
  }

  _emit(event, value) {
    for (const fn of [...(this._listeners.get(event) ?? [])]) {
      try {
        fn(value);
      } catch (e) {
        // A listener's bug must not break delivery; report it like the
        // platform reports an uncaught error in an event handler.
        if (typeof globalThis.reportError === 'function') globalThis.reportError(e);
        else console.error(e);
      }
    }
  }

  _setState(state) {
    if (this._state === state) return;
    this._state = state;
    this._emit('state', state);
  }

  // ---- public API -----------------------------------------------------------

  /** 'connecting' | 'connected' | 'disconnected' | 'closed' */
  get state() {
    return this._state;
  }

  /** The last seq seen of every stream followed, e.g. `{user: 12, "topic:news": 3}`. */
  positions() {
    return Object.fromEntries(this._positions);
  }

  /** The epoch of every stream known, e.g. `{user: "5f2c9a1e"}`. */
  epochs() {
    return Object.fromEntries(this._epochs);
  }

  /** Starts connecting (and keeps reconnecting until `close()`). */
  connect() {
    if (this._wanted) return this;
    this._wanted = true;
    this._attempt = 0;
    this._tokenRejected = false;
    this._rejectedToken = null;
    this._open();
    return this;
  }

  /** Closes the connection for good (until `connect()` is called again). */
  close() {
    this._wanted = false;
    this._generation++;
    this._clearTimer('_retryTimer');
    this._flushAcks();
    this._clearTimer('_ackTimer');
    this._abandonSocket(1000, 'client closed');
    this._setState('closed');
  }

  /**
   * Follows the stream `topic:<topic>`, starting after `since` when given
   * (otherwise after the last seq seen, if any). Re-sent on every reconnect.
   */
  subscribe(topic, since) {
    const stream = topicStream(topic);
    if (since !== undefined && since !== null) {
      this._positions.set(stream, since);
      this._pendingAcks.delete(stream);
    }
    this._topics.add(topic);
    if (this._ready()) this._send(this._subscribeFrame(topic));
    return this;
  }

  /** Stops following `topic:<topic>` and forgets its position. */
  unsubscribe(topic) {
    const stream = topicStream(topic);
    const had = this._topics.delete(topic);
    this._positions.delete(stream);
    this._epochs.delete(stream);
    this._pendingAcks.delete(stream);
    if (had && this._ready()) this._send({ type: 'unsubscribe', topic });
    return this;
  }

  /**
   * Acknowledges everything up to `seq` of `stream` (cumulative). Batched: the
   * frame goes out within `ackIntervalMs`, carrying the highest seq asked.
   */
  ack(stream, seq) {
    const pending = this._pendingAcks.get(stream);
    if (pending === undefined || seq > pending) this._pendingAcks.set(stream, seq);
    this._scheduleAckFlush();
    return this;
  }

  // ---- connection lifecycle -------------------------------------------------

  _ready() {
    return this._ws !== null && this._welcomed && this._ws.readyState === OPEN;
  }

  async _open() {
    const generation = ++this._generation;
    this._setState('connecting');
    let token;
    try {
      token = await this._getToken();
    } catch (e) {
      if (generation !== this._generation || !this._wanted) return;
      if (e instanceof HeraldError && e.fatal) return this._fail(e);
      this._emit('error', new HeraldError('token', `cannot get a token: ${describe(e)}`, { cause: e }));
      return this._retry();
    }
    if (generation !== this._generation || !this._wanted) return;
    this._lastToken = token;
    let ws;
    try {
      if (typeof this._WebSocket !== 'function') {
        throw new TypeError('no WebSocket implementation: pass options.WebSocket');
      }
      ws = new this._WebSocket(this._socketUrl(token));
    } catch (e) {
      // A malformed URL or a missing implementation: retrying cannot help.
      return this._fail(new HeraldError('config', describe(e), { fatal: true, cause: e }));
    }
    this._ws = ws;
    this._welcomed = false;
    this._awaitingPong = false;
    let opened = false;
    let failure = null;
    ws.onopen = () => {
      opened = true;
    };
    ws.onmessage = (event) => this._onData(ws, event.data);
    ws.onerror = (event) => {
      failure = event;
    };
    ws.onclose = (event) => this._onClose(ws, event, opened, failure);
    this._connectTimer = this._setTimeout(() => {
      this._connectTimer = null;
      if (this._ws === ws && !this._welcomed) this._lost(ws);
    }, this._connectTimeoutMs);
  }

  async _getToken() {
    if (typeof this._token !== 'function') {
      if (this._tokenRejected) {
        throw new HeraldError('unauthorized', 'the token was refused (HTTP 401)', { fatal: true });
      }
      return this._token;
    }
    const rejected = this._tokenRejected;
    const token = await this._token({ rejected });
    if (typeof token !== 'string' || token === '') {
      throw new HeraldError('token', 'the token function returned no token');
    }
    if (rejected && token === this._rejectedToken) {
      throw new HeraldError(
        'unauthorized',
        'the token was refused (HTTP 401) and the token function returned it again',
        { fatal: true },
      );
    }
    return token;
  }

  _socketUrl(token) {
    const url = this._absoluteUrl();
    url.searchParams.set('token', token);
    url.searchParams.delete('since');
    url.searchParams.delete('epoch');
    const since = this._positions.get(USER_STREAM);
    if (since !== undefined) {
      url.searchParams.set('since', String(since));
      const epoch = this._epochs.get(USER_STREAM);
      if (epoch !== undefined) url.searchParams.set('epoch', epoch);
    }
    return url.toString();
  }

  _absoluteUrl() {
    const location = globalThis.location;
    const url = location ? new URL(this._url, location.href) : new URL(this._url);
    if (url.protocol === 'http:') url.protocol = 'ws:';
    if (url.protocol === 'https:') url.protocol = 'wss:';
    return url;
  }

  _onClose(ws, event, opened, failure) {
    if (this._ws !== ws) return;
    this._detach(ws);
    this._ws = null;
    this._welcomed = false;
    this._clearConnectionTimers();
    if (!this._wanted) return;
    this._setState('disconnected');
    if (opened) return this._retry();
    // The handshake failed. Browsers hide the HTTP status (close code 1006),
    // so tell a refused token from an unreachable server before retrying.
    const generation = this._generation;
    this._handshakeRefused(ws, event, failure).then((unauthorized) => {
      if (generation !== this._generation || !this._wanted) return;
      if (unauthorized) {
        this._tokenRejected = true;
        this._rejectedToken = this._lastToken;
        if (typeof this._token !== 'function') {
          return this._fail(
            new HeraldError('unauthorized', 'the token was refused (HTTP 401)', { fatal: true }),
          );
        }
      }
      this._retry();
    });
  }

  /** Resolves true when the failed handshake was a 401. */
  async _handshakeRefused(ws, event, failure) {
    const hints = [event, failure, failure?.error];
    for (const hint of hints) {
      if (!hint) continue;
      if (hint.status === 401 || hint.statusCode === 401) return true;
      if (typeof hint.message === 'string' && /\b401\b/.test(hint.message)) return true;
    }
    if (typeof this._fetch !== 'function') return false;
    try {
      // The same URL as a plain GET: the server checks the token before the
      // upgrade, so it answers 401 for a bad token and 4xx otherwise.
      const url = new URL(ws.url ?? this._socketUrl(this._lastToken));
      url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
      const answer = await this._fetch(url.toString(), { method: 'GET', cache: 'no-store' });
      return answer.status === 401;
    } catch {
      return false; // unreachable: an ordinary network failure
    }
  }

  /** Drops a connection that is open but useless (no welcome, no pong). */
  _lost(ws) {
    if (this._ws !== ws) return;
    this._abandonSocket(4000, 'client timeout');
    if (!this._wanted) return;
    this._setState('disconnected');
    this._retry();
  }

  _retry() {
    if (!this._wanted) return;
    const ceiling = Math.min(this._maxBackoffMs, this._minBackoffMs * 2 ** this._attempt);
    const delayMs = Math.floor(this._random() * ceiling);
    this._attempt++;
    this._emit('retry', { attempt: this._attempt, delayMs });
    this._clearTimer('_retryTimer');
    this._retryTimer = this._setTimeout(() => {
      this._retryTimer = null;
      if (this._wanted) this._open();
    }, delayMs);
  }

  _fail(error) {
    this._wanted = false;
    this._generation++;
    this._clearTimer('_retryTimer');
    this._abandonSocket(1000, 'client stopped');
    this._emit('error', error);
    this._setState('closed');
  }

  _abandonSocket(code, reason) {
    const ws = this._ws;
    this._ws = null;
    this._welcomed = false;
    this._clearConnectionTimers();
    if (!ws) return;
    this._detach(ws);
    try {
      ws.close(code, reason);
    } catch {
      // already closed or closing
    }
  }

  _detach(ws) {
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
  }

  _clearConnectionTimers() {
    this._clearTimer('_connectTimer');
    this._clearTimer('_pingTimer');
    this._awaitingPong = false;
  }

  _clearTimer(name) {
    if (this[name] !== null) {
      this._clearTimeout(this[name]);
      this[name] = null;
    }
  }

  // ---- frames ---------------------------------------------------------------

  _send(frame) {
    const ws = this._ws;
    if (!ws || ws.readyState !== OPEN) return false;
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  _onData(ws, data) {
    if (this._ws !== ws) return;
    this._awaitingPong = false;
    let text = data;
    if (typeof text !== 'string') {
      if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
        text = new TextDecoder().decode(data);
      } else {
        this._emit('error', new HeraldError('protocol', 'binary frame from the server'));
        return;
      }
    }
    let frame;
    try {
      frame = JSON.parse(text);
    } catch (e) {
      this._emit('error', new HeraldError('protocol', `frame is not JSON: ${describe(e)}`));
      return;
    }
    switch (frame?.type) {
      case 'welcome':
        return this._onWelcome(frame);
      case 'msg':
        return this._onMsg(frame);
      case 'reset':
        return this._onReset(frame);
      case 'error':
        return this._emit(
          'error',
          new HeraldError(String(frame.code ?? 'server'), String(frame.message ?? '')),
        );
      case 'pong':
        return;
      default:
        // Unknown frame types are ignored, so the server may add some.
        return;
    }
  }

  _onWelcome(frame) {
    this._welcomed = true;
    this._attempt = 0;
    this._tokenRejected = false;
    this._rejectedToken = null;
    this._clearTimer('_connectTimer');
    const announced = frame.epochs && typeof frame.epochs === 'object' ? frame.epochs : {};
    // A stream whose position we know keeps the epoch that position belongs
    // to: the server compares it and sends `reset` when they differ.
    for (const [stream, epoch] of Object.entries(announced)) {
      if (!this._positions.has(stream) || !this._epochs.has(stream)) this._epochs.set(stream, epoch);
    }
    this._setState('connected');
    this._emit('welcome', frame);
    if (!this._ready()) return; // a listener closed the client
    // Subscriptions first (they create the streams on this connection), then
    // the other announced streams we have positions for.
    for (const topic of this._topics) this._send(this._subscribeFrame(topic));
    const streams = {};
    const epochs = {};
    for (const stream of Object.keys(announced)) {
      if (stream === USER_STREAM || this._isSubscribedTopic(stream)) continue;
      const position = this._positions.get(stream);
      if (position === undefined) continue;
      streams[stream] = position;
      const epoch = this._epochs.get(stream);
      if (epoch !== undefined) epochs[stream] = epoch;
    }
    if (Object.keys(streams).length > 0) this._send({ type: 'resume', streams, epochs });
    if (this._pendingAcks.size > 0) this._scheduleAckFlush();
    this._schedulePing();
  }

  _subscribeFrame(topic) {
    const frame = { type: 'subscribe', topic };
    const since = this._positions.get(topicStream(topic));
    if (since !== undefined) frame.since = since;
    return frame;
  }

  _isSubscribedTopic(stream) {
    return stream.startsWith('topic:') && this._topics.has(stream.slice('topic:'.length));
  }

  _onMsg(frame) {
    const stream = typeof frame.stream === 'string' ? frame.stream : USER_STREAM;
    const seq = frame.seq;
    if (!Number.isSafeInteger(seq)) {
      this._emit('error', new HeraldError('protocol', 'msg frame without a valid seq'));
      return;
    }
    const last = this._positions.get(stream);
    if (last !== undefined && seq <= last) return; // duplicate
    this._positions.set(stream, seq);
    this._emit('message', {
      stream,
      seq,
      id: frame.id,
      ts: frame.ts,
      payload: frame.payload,
      from: frame.from,
    });
    if (this._autoAck && stream === USER_STREAM && this._positions.get(stream) === seq) {
      this.ack(stream, seq);
    }
  }

  _onReset(frame) {
    const stream = typeof frame.stream === 'string' ? frame.stream : USER_STREAM;
    const from = frame.from;
    if (!Number.isSafeInteger(from) || from < 1) {
      this._emit('error', new HeraldError('protocol', 'reset frame without a valid from'));
      return;
    }
    this._positions.set(stream, from - 1);
    if (typeof frame.epoch === 'string') this._epochs.set(stream, frame.epoch);
    // Acks still pending belong to the position given up.
    this._pendingAcks.delete(stream);
    this._emit('reset', { stream, from, epoch: frame.epoch });
  }

  // ---- acks and keep-alive ----------------------------------------------------

  _scheduleAckFlush() {
    if (this._ackTimer !== null || !this._ready()) return;
    this._ackTimer = this._setTimeout(() => {
      this._ackTimer = null;
      this._flushAcks();
    }, this._ackIntervalMs);
  }

  _flushAcks() {
    if (!this._ready()) return; // kept; sent after the next welcome
    for (const [stream, seq] of this._pendingAcks) {
      if (!this._send({ type: 'ack', stream, seq })) return;
      this._pendingAcks.delete(stream);
    }
  }

  _schedulePing() {
    if (!(this._pingIntervalMs > 0)) return;
    const ws = this._ws;
    this._pingTimer = this._setTimeout(() => {
      this._pingTimer = null;
      if (this._ws !== ws || !this._ready()) return;
      if (this._awaitingPong) return this._lost(ws); // silent for a whole interval
      this._awaitingPong = true;
      this._send({ type: 'ping' });
      this._schedulePing();
    }, this._pingIntervalMs);
  }
}

function describe(e) {
  return e instanceof Error ? e.message : String(e);
}
