// Typed usage of web/client.js through its declarations (web/client.d.ts).
// Never run: `tsc --noEmit -p tests/browser` (tests/browser/run) compiles it,
// so a declaration that disagrees with how docs/client.md says the client is
// used fails the test command. The `@ts-expect-error` lines check that the
// declarations refuse what the client refuses (a declaration loosened to
// `any` would make them unused errors).

import {
  CloseCodes,
  HeraldClient,
  HeraldError,
  USER_STREAM,
  tokenExpiry,
  topicStream,
  type ConnectionState,
  type HeraldClientOptions,
  type HeraldMessage,
  type JsonValue,
  type Published,
  type ResetEvent,
  type SubscribedEvent,
} from '../../web/client.js';

declare function show(stream: string, seq: number, payload: JsonValue): void;
declare function fetchToken(): Promise<string>;

const options: HeraldClientOptions = {
  url: '/ws',
  getToken: fetchToken,
  positions: { user: 12, 'topic:match-42': 7 },
  epochs: { user: '5f2c9a1e' },
  refreshBeforeMs: 120_000,
  maxFrameBytes: 65536,
  WebSocket: globalThis.WebSocket,
  fetch: globalThis.fetch,
  setTimeout: globalThis.setTimeout,
  clearTimeout: globalThis.clearTimeout,
  now: Date.now,
};
const client = new HeraldClient(options);

// The older ways: a token string, or a token function told about refusals.
new HeraldClient({ url: new URL('wss://push.example.com/ws'), token: 'eyJ...' });
new HeraldClient({
  url: 'ws://127.0.0.1:7010/ws',
  token: async ({ rejected }) => (rejected ? 'new' : 'old'),
});
new HeraldClient({ url: '/ws', token: 'first', getToken: () => 'next', fetch: null });
// @ts-expect-error a url is required
new HeraldClient({ token: 't' });

client
  .on('message', (m: HeraldMessage) => show(m.stream, m.seq, m.payload))
  .on('state', (s: ConnectionState) => void s)
  .on('reset', (r: ResetEvent) => void [r.stream, r.from, r.epoch])
  .on('subscribed', (s: SubscribedEvent) => void [s.topic, s.stream, s.epoch, s.head])
  .on('welcome', (w) => void [w.user, w.node, w.epochs['all'], w.expires_at])
  .on('retry', ({ attempt, delayMs }) => void (attempt + delayMs))
  .on('close', ({ code, reason }) => void [code === CloseCodes.SERVICE_RESTART, reason])
  .on('refreshed', ({ expiresAt }) => void expiresAt)
  .on('error', (e) => {
    const stopped: boolean = e.fatal;
    const why: string = `${e.code}: ${e.message} ${e.closeCode ?? ''} ${e.key ?? ''}`;
    void [stopped, why, e instanceof HeraldError];
  });
// @ts-expect-error no such event
client.on('messages', () => {});
// @ts-expect-error a message is not a state
client.on('state', (m: HeraldMessage) => void m);

client.subscribe('match-42');
client.subscribe('match-42', { since: 12, epoch: '9b1e44c0' });
client.subscribe('match-42', 12);
// @ts-expect-error since is a number
client.subscribe('match-42', { since: '12' });
client.unsubscribe('match-42').ack(USER_STREAM, 3).connect();

async function send(): Promise<string> {
  const first: Published = await client.publish(
    { topic: 'room-7' },
    { text: 'hi' },
    { key: 'm-1' },
  );
  const second = await client.publish({ users: ['u2'] }, 42);
  // @ts-expect-error clients cannot broadcast
  await client.publish({ all: true }, 1);
  try {
    await client.publish({ topic: 'room-7' }, 'again', { key: first.key });
  } catch (e) {
    if (e instanceof HeraldError && (e.code === 'disconnected' || e.code === 'unavailable'))
      return e.key ?? '';
  }
  return `${first.id} ${second.id} ${second.key}`;
}
void send;

const saved: { positions: Record<string, number>; epochs: Record<string, string> } = {
  positions: client.positions(),
  epochs: client.epochs(),
};
const stream: `topic:news` = topicStream('news');
const expires: number | null = tokenExpiry('a.b.c');
const state: ConnectionState = client.state;
const revoked: 4005 = CloseCodes.TOKEN_REVOKED;
// @ts-expect-error the codes are read-only
CloseCodes.IDLE = 1;
void [saved, stream, expires, state, revoked];
client.close();
