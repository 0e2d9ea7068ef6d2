// Herald WebSocket client: an ES module without dependencies, for browsers
// and Node. See docs/protocol.md for the wire protocol, docs/client.md for
// this module, and client.d.ts beside it for its types.
//
//   import { HeraldClient } from '/client.js';
//   const client = new HeraldClient({ url: 'wss://push.example.com/ws', getToken: fetchToken });
//   client.on('message', (m) => console.log(m.stream, m.seq, m.payload));
//   client.connect();
//
// What it does for you:
// - reconnects with exponential backoff and full jitter (the backoff starts
//   over after a successful `welcome`), after a drop, a drain (close 1012) or
//   any other close that allows it, and stops on the ones that do not (4008);
// - resumes every stream it follows from the last seq it received: the user
//   stream through the `since`/`epoch` query parameters of the handshake,
//   topic subscriptions by re-sending `subscribe` with `since` and `epoch`
//   (a topic subscribed without a position is resumed from the head the
//   server's `subscribed` answer named), any other stream the server
//   announces through a `resume` frame after `welcome`;
// - drops anything at or below the last seq seen of its stream, so each
//   (stream, seq) is emitted once;
// - follows `reset` frames on every stream (the position moves to
//   `from - 1`, listeners are told to reload);
// - acknowledges the user stream (batched: at most one `ack` frame per stream
//   per `ackIntervalMs`, carrying the highest seq);
// - publishes with an idempotency key and settles each `publish()` with the
//   server's answer for that key;
// - keeps the token fresh through `getToken`: a `refresh` frame before the
//   token expires, a new token after the server closed for an expired or
//   revoked one;
// - detects a refused token (HTTP 401 at the handshake): with a way to get
//   another token it asks for one, otherwise it reports an error and stops
//   instead of retrying forever.

/** The client-facing name of the connection's own stream. */
export const USER_STREAM = 'user';

/** Close codes the server uses; what the client does on each: docs/client.md. */
export const CloseCodes = Object.freeze({
  /** The node drains (a restart or an upgrade): reconnect to any node and resume. */
  SERVICE_RESTART: 1012,
  SLOW_CONSUMER: 4001,
  STORE_UNAVAILABLE: 4002,
  IDLE: 4003,
  /** The token's `exp` passed without a `refresh`: a new token is needed. */
  TOKEN_EXPIRED: 4004,
  /** The token was revoked: a new token is needed, or the client stops. */
  TOKEN_REVOKED: 4005,
  /** A `refresh` frame carried a token the server refused. */
  REFRESH_REFUSED: 4006,
  /** An operator disconnected the user; reconnecting is allowed. */
  DISCONNECTED: 4007,
  /** An operator disconnected the user for good: the client stops. */
  DISCONNECTED_FINAL: 4008,
});

const OPEN = 1;

/** The largest delay `setTimeout` honours (longer ones fire at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The server's default `--max-client-frame`: a larger frame ends the connection. */
const DEFAULT_MAX_FRAME_BYTES = 65536;

/**
 * Close codes after which the next connection needs another token. `strict`:
 * a token source that fails then stops the client, since retrying cannot help.
 */
const TOKEN_CLOSES = new Map([
  [
    CloseCodes.TOKEN_EXPIRED,
    { code: 'token_expired', message: 'the token expired (close 4004)', strict: false },
  ],
  [
    CloseCodes.TOKEN_REVOKED,
    { code: 'token_revoked', message: 'the token was revoked (close 4005)', strict: true },
  ],
  [
    CloseCodes.REFRESH_REFUSED,
    {
      code: 'refresh_refused',
      message: 'the server refused the refreshed token (close 4006)',
      strict: true,
    },
  ],
]);

/** An error the client reports through its `error` event or a rejected `publish()`. */
export class HeraldError extends Error {
  /**
   * @param {string} code `unauthorized`, `token`, `token_expired`, `token_revoked`,
   *   `refresh_refused`, `disconnected`, `closed`, `config`, `protocol`, or a server
   *   error code (`bad_frame`, `unknown_stream`, `forbidden`, `throttled`, ...)
   * @param {string} message
   * @param {{fatal?: boolean, cause?: unknown, closeCode?: number, key?: string}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'HeraldError';
    this.code = code;
    /** True when the client stopped because of it (state `closed`). */
    this.fatal = Boolean(extra.fatal);
    /** The WebSocket close code that caused it, if one did. */
    if (extra.closeCode !== undefined) this.closeCode = extra.closeCode;
    /** The key of the `publish()` it answers, if it answers one. */
    if (extra.key !== undefined) this.key = extra.key;
  }
}

/** The stream name of a topic subscription. */
export function topicStream(topic) {
  return `topic:${topic}`;
}

/**
 * The `exp` claim (unix seconds) of a JWT, read without verifying anything
 * (the server verifies); null when the token is not a JWT or has none.
 */
export function tokenExpiry(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3 || typeof globalThis.atob !== 'function') return null;
  try {
    const base64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const binary = globalThis.atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const exp = JSON.parse(new TextDecoder().decode(bytes))?.exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp : null;
  } catch {
    return null;
  }
}

export class HeraldClient {
  /**
   * @param {object} options See client.d.ts (`HeraldClientOptions`) and docs/client.md.
   */
  constructor(options = {}) {
    if (!options.url) throw new TypeError('HeraldClient: `url` is required');
    const hasToken = options.token !== undefined && options.token !== null;
    if (options.getToken !== undefined && typeof options.getToken !== 'function') {
      throw new TypeError('HeraldClient: `getToken` must be a function');
    }
    if (!hasToken && !options.getToken) {
      throw new TypeError('HeraldClient: `token` or `getToken` is required');
    }
    if (typeof options.token === 'function' && options.getToken) {
      throw new TypeError('HeraldClient: give `getToken` or a `token` function, not both');
    }
    this._url = options.url;
    this._token = hasToken ? options.token : null;
    this._getTokenFn = options.getToken ?? null;
    this._autoAck = options.autoAck ?? true;
    this._ackIntervalMs = options.ackIntervalMs ?? 200;
    this._minBackoffMs = options.minBackoffMs ?? 500;
    this._maxBackoffMs = options.maxBackoffMs ?? 15000;
    this._connectTimeoutMs = options.connectTimeoutMs ?? 20000;
    this._pingIntervalMs = options.pingIntervalMs ?? 30000;
    this._refreshBeforeMs = options.refreshBeforeMs ?? 60000;
    this._maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this._fetch =
      options.fetch === undefined
        ? globalThis.fetch && globalThis.fetch.bind(globalThis)
        : options.fetch;
    this._random = options.random ?? Math.random;
    this._now = options.now ?? Date.now;
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
    /** publishes not sent yet (waiting for a connection), in call order */
    this._unsentPublishes = [];
    /** key -> publishes sent on the current connection and not answered, oldest first */
    this._sentPublishes = new Map();

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
    this._refreshTimer = null;
    this._awaitingPong = false;

    /** The newest token known (given, fetched or refreshed); null before the first. */
    this._currentToken = typeof this._token === 'string' ? this._token : null;
    /** When `_currentToken` expires, unix ms by the local clock; null when unknown. */
    this._tokenExpiresMs = expiryMs(this._currentToken);
    /** The token the current connection attempt used (for the 401 probe). */
    this._attemptToken = null;
    /**
     * Set when the server refused the token (401, 4004-4006): the next attempt
     * needs another one. `{code, message, strict, token}` (the refused token).
     */
    this._tokenDemand = null;
  }

  // ---- events -------------------------------------------------------------

  /**
   * Events: `message` ({stream, seq, id, ts, payload, from}), `state`
   * ('connecting' | 'connected' | 'disconnected' | 'closed'), `reset`
   * ({stream, from, epoch}), `subscribed` ({topic, stream, epoch, head}),
   * `error` (HeraldError), `welcome` (the frame), `retry` ({attempt, delayMs}),
   * `close` ({code, reason}), `refreshed` ({expiresAt}).
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
    if (this._tokenDemand !== null && this._getTokenFn) {
      // Stopped over a refused token: never offer that one again.
      this._currentToken = null;
      this._tokenExpiresMs = null;
    }
    this._tokenDemand = null;
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
    this._rejectUnsentPublishes(new HeraldError('closed', 'the client was closed'));
    this._setState('closed');
  }

  /**
   * Follows the stream `topic:<topic>`. `since` (a seq) replays what came
   * after it, `epoch` names the epoch that seq belongs to; without `since`
   * the topic continues after the last seq seen, if any, else starts at its
   * head. A number as second argument is `since` (the older signature).
   * Re-sent on every reconnect, with the position and epoch reached.
   */
  subscribe(topic, options) {
    if (typeof topic !== 'string' || topic === '') {
      throw new TypeError('subscribe: `topic` must be a non-empty string');
    }
    const { since, epoch } =
      typeof options === 'number' ? { since: options, epoch: undefined } : (options ?? {});
    if (since !== undefined && since !== null && !(Number.isSafeInteger(since) && since >= 0)) {
      throw new TypeError('subscribe: `since` must be a seq (an integer >= 0)');
    }
    if (epoch !== undefined && epoch !== null && typeof epoch !== 'string') {
      throw new TypeError('subscribe: `epoch` must be a string');
    }
    if (typeof epoch === 'string' && (since === undefined || since === null)) {
      throw new TypeError('subscribe: `epoch` names the epoch of `since`: give both');
    }
    const stream = topicStream(topic);
    if (since !== undefined && since !== null) {
      this._positions.set(stream, since);
      this._pendingAcks.delete(stream);
      // A position from elsewhere: its epoch is the one given, or unknown.
      if (typeof epoch === 'string') this._epochs.set(stream, epoch);
      else this._epochs.delete(stream);
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

  /**
   * Sends a message as this connection's user: `to` is `{topic: "<name>"}`
   * or `{users: [...]}` (within the token's `publish` / `direct` claims).
   * Resolves with `{id, key}` once the server answers `published` for the
   * key; rejects with a HeraldError on the server's `error` for the key, or
   * (`disconnected`) when the connection ends before the answer: then send it
   * again with the same key, the server stores a key once. Without a
   * connection the publish waits for the next `welcome`.
   */
  publish(to, payload, options = {}) {
    if (to === null || typeof to !== 'object' || Array.isArray(to)) {
      return Promise.reject(
        new TypeError('publish: `to` must be an object, {topic: "<name>"} or {users: [...]}'),
      );
    }
    if (payload === undefined) {
      return Promise.reject(new TypeError('publish: `payload` is required (any JSON value)'));
    }
    const key = options?.key ?? newKey();
    if (typeof key !== 'string' || key === '') {
      return Promise.reject(new TypeError('publish: `key` must be a non-empty string'));
    }
    let text;
    try {
      text = JSON.stringify({ type: 'publish', to, payload, key });
    } catch (e) {
      return Promise.reject(new TypeError(`publish: not JSON: ${describe(e)}`, { cause: e }));
    }
    const bytes = new TextEncoder().encode(text).length;
    if (bytes > this._maxFrameBytes) {
      // The server would end the connection over it.
      return Promise.reject(
        new HeraldError(
          'too_large',
          `the publish frame is ${bytes} bytes; the limit is ${this._maxFrameBytes}; \`${key}\` was not sent`,
          { key },
        ),
      );
    }
    if (!this._wanted) {
      return Promise.reject(
        new HeraldError(
          'closed',
          `the client is closed (call connect()); \`${key}\` was not sent`,
          {
            key,
          },
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const publish = { key, text, resolve, reject };
      if (!this._ready() || !this._sendPublish(publish)) this._unsentPublishes.push(publish);
    });
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
      token = await this._tokenForAttempt();
    } catch (e) {
      if (generation !== this._generation || !this._wanted) return;
      if (e instanceof HeraldError && e.fatal) return this._fail(e);
      this._emit(
        'error',
        e instanceof HeraldError
          ? e
          : new HeraldError('token', `cannot get a token: ${describe(e)}`, { cause: e }),
      );
      return this._retry();
    }
    if (generation !== this._generation || !this._wanted) return;
    this._attemptToken = token;
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

  /** The token for the next connection attempt. */
  async _tokenForAttempt() {
    const demand = this._tokenDemand;
    if (typeof this._token === 'function') {
      // A token function is asked before every attempt (`rejected` after a refusal).
      return this._adopt(await this._askTokenSource(demand), demand);
    }
    if (this._getTokenFn) {
      const expired = this._tokenExpiresMs !== null && this._now() >= this._tokenExpiresMs;
      if (demand === null && this._currentToken !== null && !expired) return this._currentToken;
      return this._adopt(await this._askTokenSource(demand), demand);
    }
    if (demand !== null) throw new HeraldError(demand.code, demand.message, { fatal: true });
    return this._currentToken;
  }

  /** Calls `getToken` or the token function; a strict demand makes a failure fatal. */
  async _askTokenSource(demand) {
    try {
      return this._getTokenFn
        ? await this._getTokenFn()
        : await this._token({ rejected: demand !== null });
    } catch (e) {
      if (!demand?.strict) throw e;
      throw new HeraldError(demand.code, `${demand.message}, and no new token: ${describe(e)}`, {
        fatal: true,
        cause: e,
      });
    }
  }

  /** Checks a token from the token source and makes it the current one. */
  _adopt(token, demand) {
    if (typeof token !== 'string' || token === '') {
      throw new HeraldError('token', 'the token function returned no token', {
        fatal: Boolean(demand?.strict),
      });
    }
    if (demand !== null && token === demand.token) {
      throw new HeraldError(
        demand.code,
        `${demand.message}, and the token function returned it again`,
        {
          fatal: true,
        },
      );
    }
    this._currentToken = token;
    this._tokenExpiresMs = expiryMs(token);
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
    this._rejectSentPublishes();
    if (!this._wanted) return;
    this._setState('disconnected');
    const code = event?.code;
    if (opened || TOKEN_CLOSES.has(code) || code === CloseCodes.DISCONNECTED_FINAL) {
      this._emit('close', { code, reason: event?.reason ?? '' });
      return this._afterClose(code, event?.reason ?? '');
    }
    // The handshake failed. Browsers hide the HTTP status (close code 1006),
    // so tell a refused token from an unreachable server before retrying.
    const generation = this._generation;
    this._handshakeRefused(ws, event, failure).then((unauthorized) => {
      if (generation !== this._generation || !this._wanted) return;
      if (unauthorized) {
        const demand = {
          code: 'unauthorized',
          message: 'the token was refused (HTTP 401)',
          strict: false,
        };
        if (!this._demandToken(demand)) return;
      }
      this._retry();
    });
  }

  /** What a close of an open connection means (docs/client.md, close codes). */
  _afterClose(code, reason) {
    if (code === CloseCodes.DISCONNECTED_FINAL) {
      const why = reason ? `: ${reason}` : '';
      return this._fail(
        new HeraldError(
          'disconnected',
          `the server disconnected this user for good (close 4008)${why}`,
          {
            fatal: true,
            closeCode: code,
          },
        ),
      );
    }
    const demand = TOKEN_CLOSES.get(code);
    if (demand !== undefined && !this._demandToken({ ...demand, closeCode: code })) return;
    // 1012 (a drain), 4001-4003, 4007 and anything else: back off, come back, resume.
    this._retry();
  }

  /**
   * Records that the token in use was refused; false (and the client stops)
   * when there is no way to get another.
   */
  _demandToken(demand) {
    this._tokenDemand = { ...demand, token: this._currentToken ?? this._attemptToken };
    if (this._getTokenFn || typeof this._token === 'function') return true;
    this._fail(
      new HeraldError(demand.code, `${demand.message}; give \`getToken\` to get a new one`, {
        fatal: true,
        closeCode: demand.closeCode,
      }),
    );
    return false;
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
      const url = new URL(ws.url ?? this._socketUrl(this._attemptToken));
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
    this._rejectUnsentPublishes(
      new HeraldError('closed', `the client stopped: ${error.message}`, { cause: error }),
    );
    this._emit('error', error);
    this._setState('closed');
  }

  _abandonSocket(code, reason) {
    const ws = this._ws;
    this._ws = null;
    this._welcomed = false;
    this._clearConnectionTimers();
    this._rejectSentPublishes();
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
    this._clearTimer('_refreshTimer');
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
    return this._sendText(JSON.stringify(frame));
  }

  _sendText(text) {
    const ws = this._ws;
    if (!ws || ws.readyState !== OPEN) return false;
    try {
      ws.send(text);
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
      case 'subscribed':
        return this._onSubscribed(frame);
      case 'published':
        return this._onPublished(frame);
      case 'refreshed':
        return this._onRefreshed(frame);
      case 'error':
        return this._onError(frame);
      case 'pong':
      case 'unsubscribed':
        return;
      default:
        // Unknown frame types are ignored, so the server may add some.
        return;
    }
  }

  _onWelcome(frame) {
    this._welcomed = true;
    this._attempt = 0;
    this._tokenDemand = null;
    this._clearTimer('_connectTimer');
    if (typeof frame.expires_at === 'number') this._tokenExpiresMs = frame.expires_at * 1000;
    const announced = frame.epochs && typeof frame.epochs === 'object' ? frame.epochs : {};
    for (const [stream, epoch] of Object.entries(announced)) this._adoptEpoch(stream, epoch);
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
    this._sendUnsentPublishes();
    if (this._pendingAcks.size > 0) this._scheduleAckFlush();
    this._schedulePing();
    this._scheduleRefresh();
  }

  /**
   * Takes the server's epoch of a stream unless a known position already has
   * one: that position's epoch goes back to the server, which compares it and
   * sends `reset` when they differ.
   */
  _adoptEpoch(stream, epoch) {
    if (!this._positions.has(stream) || !this._epochs.has(stream)) this._epochs.set(stream, epoch);
  }

  _subscribeFrame(topic) {
    const frame = { type: 'subscribe', topic };
    const stream = topicStream(topic);
    const since = this._positions.get(stream);
    if (since === undefined) return frame; // starts at the head: no epoch to compare
    frame.since = since;
    const epoch = this._epochs.get(stream);
    if (epoch !== undefined) frame.epoch = epoch;
    return frame;
  }

  _isSubscribedTopic(stream) {
    return stream.startsWith('topic:') && this._topics.has(stream.slice('topic:'.length));
  }

  _onSubscribed(frame) {
    const topic = frame.topic;
    if (typeof topic !== 'string' || !this._topics.has(topic)) return; // unsubscribed since
    const stream = typeof frame.stream === 'string' ? frame.stream : topicStream(topic);
    const epoch = typeof frame.epoch === 'string' ? frame.epoch : undefined;
    const head = Number.isSafeInteger(frame.head) && frame.head >= 0 ? frame.head : undefined;
    if (epoch !== undefined) this._adoptEpoch(stream, epoch);
    // Without a position the server starts at `head`: resuming from there
    // after a reconnect misses nothing sent meanwhile.
    if (head !== undefined && !this._positions.has(stream)) this._positions.set(stream, head);
    this._emit('subscribed', { topic, stream, epoch, head });
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

  _onError(frame) {
    const code = String(frame.code ?? 'server');
    const message = String(frame.message ?? '');
    const key = this._publishKeyOf(frame, message);
    if (key !== null) {
      const publish = this._takeSentPublish(key);
      publish.reject(new HeraldError(code, message, { key }));
      return;
    }
    this._emit('error', new HeraldError(code, message));
  }

  // ---- publishing ---------------------------------------------------------------

  /** Sends a publish on the open connection; false when it could not be sent. */
  _sendPublish(publish) {
    if (!this._sendText(publish.text)) return false;
    const waiting = this._sentPublishes.get(publish.key);
    if (waiting) waiting.push(publish);
    else this._sentPublishes.set(publish.key, [publish]);
    return true;
  }

  _sendUnsentPublishes() {
    while (this._unsentPublishes.length > 0 && this._ready()) {
      if (!this._sendPublish(this._unsentPublishes[0])) return;
      this._unsentPublishes.shift();
    }
  }

  _takeSentPublish(key) {
    const waiting = this._sentPublishes.get(key);
    const publish = waiting.shift();
    if (waiting.length === 0) this._sentPublishes.delete(key);
    return publish;
  }

  _onPublished(frame) {
    const key = frame.key;
    if (typeof key !== 'string' || !this._sentPublishes.has(key)) return;
    this._takeSentPublish(key).resolve({ id: frame.id, key });
  }

  /**
   * The key of the waiting publish an `error` frame answers, or null. The
   * server names the key in its message (``...; `<key>` was not sent``,
   * ``the broker did not take `<key>`; ...``); the longest key named wins, so
   * a key that is a part of another cannot steal its answer.
   */
  _publishKeyOf(frame, message) {
    if (typeof frame.key === 'string' && this._sentPublishes.has(frame.key)) return frame.key;
    let found = null;
    for (const key of this._sentPublishes.keys()) {
      const named =
        message.endsWith(`\`${key}\` was not sent`) || message.includes(`did not take \`${key}\``);
      if (named && (found === null || key.length > found.length)) found = key;
    }
    return found;
  }

  /** The connection ended: publishes sent on it may or may not have been taken. */
  _rejectSentPublishes() {
    const waiting = [...this._sentPublishes.values()].flat();
    this._sentPublishes.clear();
    for (const publish of waiting) {
      publish.reject(
        new HeraldError(
          'disconnected',
          `the connection ended before the answer to \`${publish.key}\`; send it again with the same key`,
          { key: publish.key },
        ),
      );
    }
  }

  _rejectUnsentPublishes(error) {
    const waiting = this._unsentPublishes;
    this._unsentPublishes = [];
    for (const publish of waiting) {
      publish.reject(
        new HeraldError(error.code, `${error.message}; \`${publish.key}\` was not sent`, {
          key: publish.key,
          cause: error.cause,
        }),
      );
    }
  }

  // ---- token refresh ------------------------------------------------------------

  /**
   * Plans the next `refresh` frame: `refreshBeforeMs` before the token
   * expires, or half-way through a shorter remaining life.
   */
  _scheduleRefresh() {
    this._clearTimer('_refreshTimer');
    if (!this._getTokenFn || this._tokenExpiresMs === null || !this._ready()) return;
    const remaining = this._tokenExpiresMs - this._now();
    // A token already expired by the local clock: the clock disagrees with
    // the server's (which accepted it). Refreshing at once would loop; try
    // now and then, and count on close 4004 if the server agrees.
    const delay =
      remaining > 0
        ? remaining - Math.min(this._refreshBeforeMs, remaining / 2)
        : this._refreshBeforeMs / 2;
    const ws = this._ws;
    const at = this._now() + delay;
    this._refreshTimer = this._setTimeout(
      () => {
        this._refreshTimer = null;
        if (this._ws !== ws || !this._ready()) return;
        // Timers cannot wait longer than MAX_TIMER_MS (tokens may live 30 days).
        if (this._now() < at) return this._scheduleRefresh();
        this._refresh(ws);
      },
      Math.min(delay, MAX_TIMER_MS),
    );
  }

  async _refresh(ws) {
    let token;
    try {
      token = await this._getTokenFn();
      if (typeof token !== 'string' || token === '') throw new Error('getToken returned no token');
      // Refreshing with the same token would not move its expiry: the next
      // refresh would come sooner and sooner.
      if (token === this._currentToken) throw new Error('getToken returned the token in use');
    } catch (e) {
      if (this._ws !== ws || !this._ready()) return;
      this._emit(
        'error',
        new HeraldError('token', `cannot refresh the token: ${describe(e)}`, { cause: e }),
      );
      // Try again later; if the token expires first, the server closes with
      // 4004 and the next connection asks getToken anew.
      const remaining = (this._tokenExpiresMs ?? 0) - this._now();
      this._refreshTimer = this._setTimeout(
        () => {
          this._refreshTimer = null;
          if (this._ws === ws && this._ready()) this._refresh(ws);
        },
        Math.min(Math.max(1000, remaining / 4), this._maxBackoffMs),
      );
      return;
    }
    if (this._ws !== ws || !this._ready()) return; // the next connection picks its own
    // The new token is the one to reconnect with from now on.
    this._currentToken = token;
    this._tokenExpiresMs = expiryMs(token);
    this._send({ type: 'refresh', token });
  }

  _onRefreshed(frame) {
    if (typeof frame.expires_at === 'number') this._tokenExpiresMs = frame.expires_at * 1000;
    this._emit('refreshed', { expiresAt: frame.expires_at });
    this._scheduleRefresh();
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

/** A token's expiry in unix ms, or null. */
function expiryMs(token) {
  const exp = tokenExpiry(token);
  return exp === null ? null : exp * 1000;
}

/** A fresh idempotency key for a publish: a random UUID. */
function newKey() {
  const crypto = globalThis.crypto;
  // randomUUID exists only in secure contexts (https, localhost).
  if (typeof crypto?.randomUUID === 'function') return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  if (typeof crypto?.getRandomValues === 'function') crypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
