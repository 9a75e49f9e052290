// The pushed path: when the server advertises `stream` (docs/realtime.md), the owner keeps one WebSocket to
// `/sync/stream` and starts a cycle whenever the server says `{"top": N}` above the cursor. Credentials travel
// in the subprotocol offer; a 4001 close asks for a fresh token, other closes reconnect with backoff, and a
// stream that never opens (a proxy that blocks WebSockets) hands over to the long-poll.

import { retryDelay, sleep, type WatchHost } from './watch.js';

const PROTOCOL = 'oversync.v1';
/** Client pings this often; the server closes a stream silent for 95 s. */
const PING_MS = 30_000;
/** A connect not open after this long has a cycle look for the server over HTTP. */
const SLOW_CONNECT_MS = 1000;

/** A ping not answered this fast means a dead connection: reconnect. */
const PONG_MS = 10_000;
/** Failed opens in a row, never having opened once, after which the long-poll takes over. */
const GIVE_UP_AFTER = 3;

const base64url = (text: string) =>
  btoa(String.fromCharCode(...new TextEncoder().encode(text)))
    .replace(/\+/g, '-')
    .replace(/\//g, '_')
    .replace(/=+$/, '');

/** The subprotocols offered for `token` and `deviceId`. */
export const streamProtocols = (token: string, deviceId: string) => [
  PROTOCOL,
  `oversync.token.${token}`,
  `oversync.device.${base64url(deviceId)}`,
];

/** `http(s)://…` → `ws(s)://…/sync/stream` (relative URLs against the worker's location). */
const streamUrl = (url: string) => {
  const u = new URL(`${url}/sync/stream`, self.location.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.href;
};

interface Ended {
  /** The handshake completed. */
  opened: boolean;
  /** A message arrived. */
  heard: boolean;
  code: number;
}

/** One connection, until it closes or `host.signal` aborts. */
function connectOnce(host: WatchHost, token: string, onTop: (top: number) => void, onOpen: () => void): Promise<Ended> {
  return new Promise((resolve) => {
    let opened = false;
    let heard = false;
    let ping: ReturnType<typeof setInterval> | undefined;
    let pong: ReturnType<typeof setTimeout> | undefined;
    let ws: WebSocket;
    try {
      ws = new WebSocket(streamUrl(host.url), streamProtocols(token, host.deviceId));
    } catch {
      resolve({ opened: false, heard: false, code: 0 });
      return;
    }
    const abort = () => ws.close(1000, 'closing');
    host.signal.addEventListener('abort', abort, { once: true });
    ws.onopen = () => {
      opened = true;
      onOpen();
      host.mode('stream');
      ping = setInterval(() => {
        ws.send('ping');
        pong ??= setTimeout(() => ws.close(3000, 'no pong'), PONG_MS);
      }, PING_MS);
    };
    ws.onmessage = (e: MessageEvent) => {
      heard = true;
      clearTimeout(pong);
      pong = undefined;
      if (e.data === 'pong' || typeof e.data !== 'string') return;
      try {
        const msg = JSON.parse(e.data) as { top?: unknown };
        if (typeof msg.top === 'number') onTop(msg.top);
      } catch {
        // Not ours: ignore.
      }
    };
    ws.onclose = (e: CloseEvent) => {
      clearInterval(ping);
      clearTimeout(pong);
      host.signal.removeEventListener('abort', abort);
      resolve({ opened, heard, code: e.code });
    };
  });
}

/**
 * Keeps the stream open until `host.signal` aborts (`'aborted'`), or returns `'unavailable'` when it never
 * opened in a few tries, so the caller can fall back to the long-poll.
 */
export async function streamLoop(host: WatchHost): Promise<'aborted' | 'unavailable'> {
  let failures = 0;
  let everOpened = false;
  let refresh = false;
  // One cycle at a time: tops that arrive meanwhile are remembered and served by the next.
  let latest = -1;
  let waking: Promise<void> | null = null;
  const onTop = (top: number) => {
    host.seen?.(top);
    latest = Math.max(latest, top);
    if (waking || latest <= host.cursor()) return;
    waking = (async () => {
      try {
        while (latest > host.cursor() && !host.signal.aborted) {
          const before = host.cursor();
          await host.wake();
          // The cycle did not get past the top (it failed): leave it to the next top or the timer.
          if (host.cursor() <= before) break;
        }
      } finally {
        waking = null;
      }
    })();
  };
  while (!host.signal.aborted) {
    if (!host.online()) {
      await sleep(1000, host.signal);
      continue;
    }
    // A failing auth callback is the cycles' error to report; here it is one more failure to back off from.
    const token = await host.token(refresh).catch(() => null);
    refresh = false;
    if (!token) {
      await host.nap(retryDelay(host, ++failures));
      continue;
    }
    // Firefox holds back a WebSocket to a host whose connects failed, longer after each failure (up to a
    // minute: network.websocket.delay-failed-reconnects), so a stream that was down long comes back late there.
    // A connect still pending after a moment has a cycle find out over HTTP whether the server is back: changes
    // then arrive without waiting for the stream. (Where a refused connect fails at once, nothing extra is sent.)
    const probe = setTimeout(() => host.probe(), SLOW_CONNECT_MS);
    const ended = await connectOnce(host, token, onTop, () => clearTimeout(probe));
    clearTimeout(probe);
    if (host.signal.aborted) break;
    // Not streaming now: the periodic timer is what brings changes until the stream is back (status.realtime).
    if (ended.opened) host.mode('timer');
    everOpened ||= ended.opened;
    // Backoff grows over closes in a row that brought nothing; a stream that was heard starts again at 1.
    failures = ended.heard ? 1 : failures + 1;
    if (!everOpened && failures >= GIVE_UP_AFTER) return 'unavailable';
    // 4001: the token expired or was refused; ask for a fresh one, at once the first time.
    if (ended.code === 4001) refresh = true;
    if (ended.code === 4001 && failures === 1) await sleep(100, host.signal);
    else await host.nap(retryDelay(host, failures));
  }
  return 'aborted';
}
