// TypeScript declarations of web/client.js (Herald's WebSocket client).
// docs/client.md describes the behaviour; tests/browser/types-check.ts keeps
// these declarations honest (`tsc --noEmit` in tests/browser/run).

/** A JSON value, as payloads are sent and received. */
export type JsonValue =
  string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** The client-facing name of the connection's own stream: `'user'`. */
export declare const USER_STREAM: 'user';

/** Close codes the server uses. What the client does on each: docs/client.md. */
export declare const CloseCodes: Readonly<{
  SERVICE_RESTART: 1012;
  SLOW_CONSUMER: 4001;
  STORE_UNAVAILABLE: 4002;
  IDLE: 4003;
  TOKEN_EXPIRED: 4004;
  TOKEN_REVOKED: 4005;
  REFRESH_REFUSED: 4006;
  DISCONNECTED: 4007;
  DISCONNECTED_FINAL: 4008;
}>;

/** `topic:<topic>`, the stream name of a topic subscription. */
export declare function topicStream<T extends string>(topic: T): `topic:${T}`;

/** The `exp` claim (unix seconds) of a JWT, read without verifying; null if none. */
export declare function tokenExpiry(token: string): number | null;

/** Codes the client itself reports; a server `error` frame may carry others. */
export type ClientErrorCode =
  | 'unauthorized'
  | 'token'
  | 'token_expired'
  | 'token_revoked'
  | 'refresh_refused'
  | 'disconnected'
  | 'closed'
  | 'config'
  | 'protocol'
  | 'too_large';

/** Codes of the server's `error` frames (docs/protocol.md, server frames). */
export type ServerErrorCode =
  | 'bad_frame'
  | 'unknown_stream'
  | 'bad_topic'
  | 'forbidden'
  | 'throttled'
  | 'bad_message'
  | 'unavailable'
  | 'limit';

/** An error reported through the `error` event or a rejected `publish()`. */
export declare class HeraldError extends Error {
  constructor(
    code: string,
    message: string,
    extra?: { fatal?: boolean; cause?: unknown; closeCode?: number; key?: string },
  );
  readonly name: 'HeraldError';
  /** A client code, a server code, or another code a newer server sends. */
  readonly code: ClientErrorCode | ServerErrorCode | (string & {});
  /** True when the client stopped because of it (state `closed`). */
  readonly fatal: boolean;
  /** The WebSocket close code that caused it, when one did. */
  readonly closeCode?: number;
  /** The key of the `publish()` it answers, when it answers one. */
  readonly key?: string;
}

export type ConnectionState = 'connecting' | 'connected' | 'disconnected' | 'closed';

/** The stream names a connection knows: `user`, `all`, `topic:<name>`. */
export type StreamName = 'user' | 'all' | `topic:${string}` | (string & {});

/** A token function, asked before every connection attempt (the older way). */
export type TokenFunction = (info: { rejected: boolean }) => string | Promise<string>;

/**
 * A WebSocket class: the browser's, Node's, or the `ws` package's. The client
 * sets `onopen`/`onmessage`/`onerror`/`onclose` and calls `send`/`close`.
 */
export type WebSocketConstructor = new (url: string) => object;

export interface HeraldClientOptions {
  /** `ws(s)://host/ws`; `http(s)://` is turned into `ws(s)://`; in a browser also a path. */
  url: string | URL;
  /**
   * A token, or a function called before every connection attempt. Required
   * unless `getToken` is given; not a function when `getToken` is given.
   */
  token?: string | TokenFunction;
  /**
   * Returns a fresh token. Used for the first connection without `token`,
   * for a `refresh` frame before the token expires, after the server closed
   * for an expired (4004), revoked (4005) or refused (4006) token, and after
   * a 401 at the handshake.
   */
  getToken?: () => string | Promise<string>;
  /** Acknowledge each `user`-stream message once emitted. Default true. */
  autoAck?: boolean;
  /** At most one `ack` frame per stream per interval. Default 200. */
  ackIntervalMs?: number;
  /** Backoff ceiling of the first retry. Default 500. */
  minBackoffMs?: number;
  /** Largest backoff ceiling. Default 15000. */
  maxBackoffMs?: number;
  /** From opening the socket to `welcome`. Default 20000. */
  connectTimeoutMs?: number;
  /** Ping interval once connected; 0 disables. Default 30000. */
  pingIntervalMs?: number;
  /** Refresh this long before the token expires (or half-way, if sooner). Default 60000. */
  refreshBeforeMs?: number;
  /** Largest `publish` frame sent, bytes (the server's `--max-client-frame`). Default 65536. */
  maxFrameBytes?: number;
  /** Initial last-seen seq per stream (saved from `positions()`). */
  positions?: Record<string, number>;
  /** The epochs those positions belong to (saved from `epochs()`). */
  epochs?: Record<string, string>;
  /** The WebSocket class. Default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Tells a refused token from a network failure; null disables. Default `globalThis.fetch`. */
  fetch?:
    | ((url: string, init: { method: 'GET'; cache: 'no-store' }) => Promise<{ status: number }>)
    | null;
  /** Uniform in [0, 1), for the jitter. Default `Math.random`. */
  random?: () => number;
  /** Unix ms, to compare with the token's expiry. Default `Date.now`. */
  now?: () => number;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (id: any) => void;
}

export interface SubscribeOptions {
  /** Replay what came after this seq of the topic. */
  since?: number;
  /** The epoch `since` belongs to (from `epochs()` or `subscribed`); only with `since`. */
  epoch?: string;
}

export interface PublishOptions {
  /**
   * Idempotency key; a random UUID if absent. The server stores it as
   * `client:<user>:<key>`, which must stay within 256 bytes.
   */
  key?: string;
}

/** Where a client may publish: a topic its token's `publish` allows, or users (`direct`). */
export type PublishTarget = { topic: string } | { users: string[] };

export interface Published {
  /** The id the message is stored and delivered under. */
  id: string;
  /** The key the publish was sent with (given or generated). */
  key: string;
}

export interface HeraldMessage {
  stream: StreamName;
  seq: number;
  id: string;
  /** Unix ms. */
  ts: number;
  payload: JsonValue;
  /** The publishing user of a message a client published; undefined otherwise. */
  from: string | undefined;
}

export interface WelcomeFrame {
  type: 'welcome';
  user: string;
  node: string;
  epochs: Record<string, string>;
  /** The token's expiry, unix s, when the server sends it. */
  expires_at?: number;
  [field: string]: unknown;
}

export interface ResetEvent {
  stream: StreamName;
  /** The stream continues with this seq: drop what you hold of it from here on. */
  from: number;
  epoch: string | undefined;
}

export interface SubscribedEvent {
  topic: string;
  stream: `topic:${string}`;
  epoch: string | undefined;
  /** The topic's last seq when subscribed (0: none yet). */
  head: number | undefined;
}

export interface HeraldEvents {
  message: HeraldMessage;
  state: ConnectionState;
  welcome: WelcomeFrame;
  reset: ResetEvent;
  subscribed: SubscribedEvent;
  retry: { attempt: number; delayMs: number };
  /** The server closed the connection (or it was lost, 1006). */
  close: { code: number | undefined; reason: string };
  /** The server took a refreshed token; `expiresAt` unix s. */
  refreshed: { expiresAt: number | undefined };
  error: HeraldError;
}

export declare class HeraldClient {
  constructor(options: HeraldClientOptions);

  readonly state: ConnectionState;

  on<E extends keyof HeraldEvents>(event: E, fn: (value: HeraldEvents[E]) => void): this;
  off<E extends keyof HeraldEvents>(event: E, fn: (value: HeraldEvents[E]) => void): this;

  /** Last seq seen per stream, e.g. `{user: 12, "topic:news": 3}`. */
  positions(): Record<string, number>;
  /** Epoch per stream, e.g. `{user: "5f2c9a1e"}`. */
  epochs(): Record<string, string>;

  /** Starts connecting, and keeps reconnecting until `close()`. */
  connect(): this;
  /** Closes for good (until `connect()`); rejects publishes still waiting. */
  close(): void;

  /** Follows `topic:<topic>`; re-sent with position and epoch on every reconnect. */
  subscribe(topic: string, options?: SubscribeOptions): this;
  /** The older signature: `since` as a number. */
  subscribe(topic: string, since: number): this;
  /** Stops following `topic:<topic>` and forgets its position. */
  unsubscribe(topic: string): this;

  /** Acknowledges everything up to `seq` of `stream` (only `user` is acknowledged). */
  ack(stream: StreamName, seq: number): this;

  /**
   * Sends a message as this user. Resolves on `published` for the key;
   * rejects with a HeraldError (`forbidden`, `throttled`, `bad_message`,
   * `unavailable`, `disconnected`, `closed`, `too_large`), or a TypeError
   * for arguments that cannot be sent (`payload` must be JSON-serialisable).
   */
  publish(to: PublishTarget, payload: unknown, options?: PublishOptions): Promise<Published>;
}
