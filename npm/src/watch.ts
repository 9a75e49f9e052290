// The §8.3 long-poll: one `/sync/watch` request stays open and a cycle starts as soon as another device
// uploads. A wake-up is only a hint: the cursor moves only through the cycle it triggers. Also the helpers the
// stream (stream.ts) shares.

/** What the loop needs from the owner. */
export interface WatchHost {
  url: string;
  /** Sent as `Oversync-Device-Id` (for tokens without a device claim). */
  deviceId: string;
  /** The database has shared (scoped) tables: long-polls ask for the user's scopes too. */
  scoped: boolean;
  signal: AbortSignal;
  online(): boolean;
  /** The page is in the foreground: retries are kept short ({@link retryDelay}). */
  visible(): boolean;
  /** Sleeps `ms`, or less: until the page comes online or to the foreground, or `signal` aborts. */
  nap(ms: number): Promise<void>;
  cursor(): number;
  token(refresh: boolean): Promise<string | null>;
  /** Starts a cycle and resolves when it ended. */
  wake(): Promise<void>;
  /** Starts a cycle now, even while failed cycles back off (the server may be back), unless one runs. */
  probe(): void;
  /** Which path is in use (status `realtime`). */
  mode(mode: RealtimeMode): void;
  /** The server said its log's top is at least `top` (a stream frame, a long-poll's `latest_server_id`). */
  seen?(top: number): void;
}

/** How other devices' changes reach this one: pushed over a stream, long-polled, or by the periodic timer. */
export type RealtimeMode = 'stream' | 'long_poll' | 'timer';

export const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

/** Waits from 1 s doubling to 60 s, at least `floorMs` (an overloaded server's Retry-After), plus up to 50 %. */
export const backoff = (failures: number, floorMs = 0) =>
  Math.min(60_000, Math.max(floorMs, 1000 * 2 ** Math.min(failures - 1, 6))) * (1 + Math.random() / 2);

/** The longest wait between retries while the page is in the foreground (plus up to 50 %): a server that comes
 * back is found within a few seconds, not after a minute's backoff (npm README, Realtime). */
export const VISIBLE_RETRY_MS = 1000;

/** How long to wait after `failures` failures in a row: {@link backoff}, capped while the page is visible (never
 * below the server's `Retry-After`). */
export const retryDelay = (host: WatchHost, failures: number, floorMs = 0) => {
  const ms = backoff(failures, floorMs);
  return host.visible() ? Math.min(ms, Math.max(floorMs, VISIBLE_RETRY_MS * (1 + Math.random() / 2))) : ms;
};

/** `Retry-After` in ms (delay-seconds form; an HTTP-date is ignored), 0 without one. */
export function retryAfterMs(r: Response): number {
  const s = Number(r.headers.get('retry-after') ?? '');
  return Number.isInteger(s) && s > 0 ? s * 1000 : 0;
}

/** Long-polls until `host.signal` aborts; failures back off from 1 s to 60 s, and a 429 or 503 waits at least
 * its `Retry-After`. */
export async function watchLoop(host: WatchHost): Promise<void> {
  let failures = 0;
  let refresh = false;
  while (!host.signal.aborted) {
    if (!host.online()) {
      await sleep(1000, host.signal);
      continue;
    }
    try {
      const token = await host.token(refresh);
      refresh = false;
      const after = host.cursor();
      const scopes = host.scoped ? '&scopes=1' : '';
      const r = await fetch(`${host.url}/sync/watch?after=${after}&timeout_s=25${scopes}`, {
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'oversync-device-id': host.deviceId },
        signal: AbortSignal.any([host.signal, AbortSignal.timeout(40_000)]),
      });
      if (r.status === 401) {
        refresh = true;
        throw new Error('unauthorized');
      }
      if (r.status === 429 || r.status === 503) {
        // Overloaded (too many watches of this user, or no connection free): wait as long as the server asks.
        await host.nap(retryDelay(host, ++failures, retryAfterMs(r)));
        continue;
      }
      if (!r.ok) throw new Error(`watch: ${r.status}`);
      const body = (await r.json()) as { changed: boolean; latest_server_id?: number };
      failures = 0;
      if (body.changed && typeof body.latest_server_id === 'number') host.seen?.(body.latest_server_id);
      if (body.changed) {
        await host.wake();
        // The cycle did not get past the change (it failed): do not spin on the same hint.
        if (host.cursor() <= after) await sleep(2000, host.signal);
      }
    } catch {
      // Also a failing auth callback (its error is the cycles' to report): try again later.
      await host.nap(retryDelay(host, ++failures));
    }
  }
}
