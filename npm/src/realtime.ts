// The realtime paths. The owner asks the server once what it offers: the `/sync/stream` WebSocket
// (stream.ts) first, else (or when WebSockets do not get through) the §8.3 long-poll (watch.ts). Without
// either, the periodic timer does the job.

import { streamLoop } from './stream.js';
import { retryDelay, sleep, watchLoop, type WatchHost } from './watch.js';

/** What the server offers (`features.watch`; empty for a classic server), null when it could not be asked. */
async function probe(host: WatchHost, refresh: boolean): Promise<string[] | null> {
  try {
    const token = await host.token(refresh);
    if (!token) return null;
    const r = await fetch(`${host.url}/sync/capabilities`, {
      headers: { authorization: `Bearer ${token}`, 'oversync-device-id': host.deviceId },
      signal: AbortSignal.any([host.signal, AbortSignal.timeout(30_000)]),
    });
    if (r.status === 401 || r.status >= 500) return null;
    if (!r.ok) return []; // a classic server: no extensions
    const caps = (await r.json()) as { features?: { watch?: string[] } };
    return caps.features?.watch ?? [];
  } catch {
    return null;
  }
}

/**
 * Asks (once, when online, retrying with backoff) what the server offers, then keeps the best path until
 * `host.signal` aborts: the stream, the long-poll when the stream is not offered or never opens, else
 * nothing (the periodic timer).
 */
export async function realtimeLoop(host: WatchHost): Promise<void> {
  let offered: string[] | null = null;
  for (let failures = 1; offered === null && !host.signal.aborted; failures++) {
    if (!host.online()) {
      await sleep(1000, host.signal);
      failures--;
      continue;
    }
    // A retry asks for a fresh token: the first one may have been refused.
    offered = await probe(host, failures > 1);
    if (offered === null) await host.nap(retryDelay(host, failures));
  }
  if (!offered || host.signal.aborted) return;
  // The stream says `stream` once it is open, and `timer` while it is down (streamLoop).
  if (offered.includes('stream') && typeof WebSocket !== 'undefined') {
    if ((await streamLoop(host)) === 'aborted') return;
  }
  if (offered.includes('long_poll')) {
    host.mode('long_poll');
    await watchLoop(host);
  }
  host.mode('timer');
}
