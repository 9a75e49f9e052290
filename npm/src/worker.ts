// The dedicated worker behind each SyncClient. Exactly one worker per database (across the origin's tabs)
// owns it: the one holding the Web Lock `oversync:<file>`. The others forward their page's operations to the
// owner over BroadcastChannel and relay its change notifications; when the owner's tab goes away the lock
// passes to the next waiting worker, which opens the database and announces itself.

import init from './wasm/oversync_client.js';
import { Owner, type OwnerOptions } from './owner.js';
import { removeFiles } from './files.js';
import type { ConflictContext, ConflictDecision } from './types.js';
import { toWire, type WireError, type Op, type PageRequest, type PeerMessage, type WorkerMessage } from './messages.js';
import { coded } from './storage.js';

type OpenArgs = OwnerOptions & { file: string };
type Pending = {
  op: Op;
  args: unknown[];
  tx?: string;
  /** Posted to an owner (which may have run it before going away). */
  sent: boolean;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
};

/** Operations that change nothing: safe to send again to a new owner. */
const READS = new Set<Op>(['query', 'tablesRead', 'status', 'rejections', 'scopes', 'diagnostics']);

const ownerLost = () =>
  Object.assign(new Error('the tab that owned the database went away; the outcome of this write is unknown'), {
    code: 'OWNER_LOST',
  });

const scope = self as unknown as {
  postMessage(m: WorkerMessage): void;
  onmessage: ((e: MessageEvent) => void) | null;
};
const post = (m: WorkerMessage) => scope.postMessage(m);
const myId = crypto.randomUUID();

let owner: Owner | null = null;
let ownerId: string | null = null;
let channel: BroadcastChannel;
let release: () => void = () => undefined;
const lockAbort = new AbortController();
const forwarded = new Map<string, Pending>();
const tokenWaiters = new Map<number, (token: string | null, error: string | null, temporary: boolean) => void>();
/** The page's network and visibility, as its `online`/`offline`/`visibilitychange` events last said. */
const page = { online: true, visible: true };
const resolverWaiters = new Map<number, (decision: ConflictDecision | null, error: string | null) => void>();
let nextRid = 0;
let nextToken = 0;
let ready: Promise<void> | null = null;
let openArgs: OpenArgs | null = null;
/** Set once a sign-out began (here or in another tab): nothing is served or forwarded any more. */
let signedOut = false;

const closedError = () => Object.assign(new Error('the database was signed out'), { code: 'CLOSED' });

scope.onmessage = (e: MessageEvent) => {
  const m = e.data as
    | PageRequest
    | { op: 'open'; id: number; args: [OpenArgs] }
    | { op: 'token'; args: [number, string | null, string | null, boolean] }
    | { op: 'page'; args: [boolean, boolean] }
    | { op: 'resolved'; args: [number, ConflictDecision | null, string | null] };
  if (m.op === 'resolved') {
    const [resolveId, decision, error] = m.args as [number, ConflictDecision | null, string | null];
    resolverWaiters.get(resolveId)?.(decision, error);
    resolverWaiters.delete(resolveId);
    return;
  }
  if (m.op === 'token') {
    const [tokenId, token, error, temporary] = m.args as [number, string | null, string | null, boolean];
    tokenWaiters.get(tokenId)?.(token, error, temporary);
    tokenWaiters.delete(tokenId);
    return;
  }
  if (m.op === 'page') {
    [page.online, page.visible] = m.args as [boolean, boolean];
    owner?.pageChanged();
    return;
  }
  const { id } = m as { id: number };
  let work: Promise<unknown>;
  if (m.op === 'open') {
    ready = open((m.args as [OpenArgs])[0]);
    work = ready;
  } else if ((m.op as string) === 'close') {
    work = close();
  } else {
    const r = m as PageRequest;
    work = (ready ?? Promise.reject(Object.assign(new Error('not open'), { code: 'CLOSED' }))).then(() =>
      execute(r.op, r.args, r.tx),
    );
  }
  work.then(
    (value) => post({ id, ok: true, value: value ?? null }),
    (err) => post({ id, ok: false, error: toWire(err) }),
  );
};

/** Runs an operation on the owner: here if this worker owns the database, else through the channel. */
function execute(op: Op, args: unknown[], tx?: string): Promise<unknown> {
  if (signedOut) return Promise.reject(closedError());
  if (owner) return runHere(op, args, tx);
  return new Promise((resolve, reject) => {
    const rid = `${myId}:${nextRid++}`;
    forwarded.set(rid, { op, args, tx, sent: !!ownerId, resolve, reject });
    if (ownerId) channel.postMessage({ t: 'req', rid, op, args, tx } satisfies PeerMessage);
  });
}

/** Runs an operation on this worker's owner (which it is). */
function runHere(op: Op, args: unknown[], tx?: string): Promise<unknown> {
  return op === 'signOut' ? signOut(args[0] !== false) : owner!.run(op, args, tx);
}

/**
 * Signs the database out for every tab: uploads what is pending first unless `keepPending` is false (and
 * fails, changing nothing, if that cannot be done), then tells the other tabs' workers to stop, closes the
 * database, deletes its OPFS files and only then releases the lock, so no waiting worker can reopen them.
 */
async function signOut(keepPending: boolean): Promise<null> {
  const o = owner!;
  if (keepPending) {
    for (let attempt = 0; o.unsent() > 0; attempt++) {
      if (attempt === 3) {
        throw Object.assign(
          new Error(`${o.unsent()} local changes could not be uploaded (see status.parked and rejections); signOut({ keepPending: false }) discards them`),
          { code: 'PENDING' },
        );
      }
      try {
        await o.run('sync', []);
      } catch (e) {
        // The cycle's error (NETWORK offline, HTTP, …) keeps its code and says what is at stake, like PENDING.
        const { code = 'INTERNAL', message = String(e), status } = e as { code?: string; message?: string; status?: number };
        throw Object.assign(
          new Error(`${message}: ${o.unsent()} local changes are not uploaded; signOut({ keepPending: false }) discards them`),
          { code, ...(status === undefined ? {} : { status }) },
        );
      }
    }
  }
  // From the check above on, in the same task: this worker serves nothing, so no write can slip in unsent.
  owner = null;
  ownerId = null;
  stopServing(false);
  channel.postMessage({ t: 'signingOut' } satisfies PeerMessage);
  // Every tab is closed either way; a failure to delete the files is reported to every caller with it.
  let failure: WireError | undefined;
  try {
    await o.close(true);
    if (openArgs!.open.storage === 'opfs') await removeFiles(openArgs!.file);
  } catch (e) {
    failure = toWire(e);
    throw e;
  } finally {
    release();
    channel.postMessage({ t: 'signedOut', error: failure } satisfies PeerMessage);
    post({ event: 'signedOut', error: failure });
  }
  return null;
}

/**
 * After a sign-out began: never take the lock, and fail what waits; a sign-out this tab forwarded waits for
 * the end (`done`), when it has succeeded.
 */
function stopServing(done: boolean, failure?: WireError): void {
  signedOut = true;
  lockAbort.abort();
  for (const [rid, p] of forwarded) {
    if (p.op === 'signOut' && !done) continue;
    forwarded.delete(rid);
    if (p.op === 'signOut' && !failure) p.resolve(null);
    else if (p.op === 'signOut') p.reject(Object.assign(new Error(failure!.message), failure));
    else p.reject(closedError());
  }
}

async function open(args: OpenArgs): Promise<void> {
  openArgs = args;
  await init();
  try {
    channel = new BroadcastChannel(`oversync:${args.file}`);
  } catch (e) {
    // Firefox with site data blocked (cookies blocked) refuses BroadcastChannel, Web Locks and storage alike:
    // nothing of the package can run, in memory either.
    if ((e as { name?: string } | null)?.name !== 'SecurityError') throw e;
    throw coded('STORAGE_UNAVAILABLE', `the browser blocks site data for this site (${String(e)}): tabs cannot coordinate and nothing can be stored; allow cookies and site data for it`);
  }
  channel.onmessage = (e) => onPeer(e.data as PeerMessage);
  let resolveReady!: () => void;
  let rejectReady!: (e: unknown) => void;
  const known = new Promise<void>((res, rej) => ((resolveReady = res), (rejectReady = rej)));
  // Queue for the lock; until it is ours, find the current owner.
  navigator.locks
    .request(`oversync:${args.file}`, { signal: lockAbort.signal }, async () => {
      const o = new Owner(args, {
        token: (deviceId, refresh) => askToken(deviceId, refresh),
        page: () => page,
        resolve: (conflict) => askResolver(conflict),
        changed: (tables) => {
          post({ event: 'change', tables });
          channel.postMessage({ t: 'change', tables } satisfies PeerMessage);
        },
        status: (status) => {
          post({ event: 'status', status });
          channel.postMessage({ t: 'status', status: { ...status, owner: false } } satisfies PeerMessage);
        },
        conflicts: (conflicts) => {
          post({ event: 'conflicts', conflicts });
          channel.postMessage({ t: 'conflicts', conflicts } satisfies PeerMessage);
        },
        error: (err) => {
          post({ event: 'error', error: toWire(err) });
          channel.postMessage({ t: 'error', error: toWire(err) } satisfies PeerMessage);
        },
        log: (entry) => {
          post({ event: 'log', entry });
          channel.postMessage({ t: 'log', entry } satisfies PeerMessage);
        },
      });
      try {
        await o.start();
      } catch (err) {
        // This tab cannot serve: fail what waits on it rather than leave it hanging.
        for (const p of forwarded.values()) p.reject(err);
        forwarded.clear();
        ownerId = null;
        post({ event: 'error', error: toWire(err) });
        rejectReady(err);
        return;
      }
      owner = o;
      ownerId = myId;
      post({ event: 'role', owner: true });
      channel.postMessage({ t: 'owner', id: myId } satisfies PeerMessage);
      // Requests this worker forwarded before it became the owner run here now (writes the old owner may have
      // run are not repeated).
      for (const [rid, p] of forwarded) {
        forwarded.delete(rid);
        if (p.sent && !READS.has(p.op)) p.reject(ownerLost());
        else runHere(p.op, p.args, p.tx).then(p.resolve, p.reject);
      }
      resolveReady();
      await new Promise<void>((r) => (release = r));
    })
    .catch((err: unknown) => {
      if ((err as { name?: string }).name !== 'AbortError') rejectReady(err);
    });
  onOwnerKnown = () => resolveReady();
  channel.postMessage({ t: 'hello' } satisfies PeerMessage);
  const timeout = setTimeout(
    () => rejectReady(Object.assign(new Error('no tab could open the database'), { code: 'LOCK_TIMEOUT' })),
    30_000,
  );
  try {
    await known;
  } finally {
    clearTimeout(timeout);
  }
}

let onOwnerKnown: () => void = () => undefined;

function onPeer(m: PeerMessage): void {
  switch (m.t) {
    case 'hello':
      if (owner) channel.postMessage({ t: 'owner', id: myId } satisfies PeerMessage);
      return;
    case 'owner':
      if (m.id === ownerId) return;
      ownerId = m.id;
      post({ event: 'role', owner: false });
      onOwnerKnown();
      // A new owner: send what was waiting for one, and re-send reads the previous owner never answered; a write
      // it may have run before going away is not repeated (OWNER_LOST: the caller decides).
      for (const [rid, p] of forwarded) {
        if (p.sent && !READS.has(p.op)) {
          forwarded.delete(rid);
          p.reject(ownerLost());
          continue;
        }
        p.sent = true;
        channel.postMessage({ t: 'req', rid, op: p.op, args: p.args, tx: p.tx });
      }
      return;
    case 'req':
      if (!owner) return;
      runHere(m.op, m.args, m.tx).then(
        (value) => channel.postMessage({ t: 'res', rid: m.rid, ok: true, value: value ?? null } satisfies PeerMessage),
        (err) => channel.postMessage({ t: 'res', rid: m.rid, ok: false, error: toWire(err) } satisfies PeerMessage),
      );
      return;
    case 'res': {
      const p = forwarded.get(m.rid);
      if (!p) return;
      forwarded.delete(m.rid);
      if (m.ok) p.resolve(m.value);
      else p.reject(Object.assign(new Error(m.error.message), m.error));
      return;
    }
    case 'change':
      post({ event: 'change', tables: m.tables });
      return;
    case 'status':
      if (!owner) post({ event: 'status', status: m.status });
      return;
    case 'conflicts':
      post({ event: 'conflicts', conflicts: m.conflicts });
      return;
    case 'error':
      post({ event: 'error', error: m.error });
      return;
    case 'log':
      post({ event: 'log', entry: m.entry });
      return;
    case 'signingOut':
      stopServing(false);
      return;
    case 'signedOut':
      stopServing(true, m.error);
      post({ event: 'signedOut', error: m.error });
      return;
  }
}

/** Asks this tab's page for the app's decision on one conflict (its `conflict` option). */
function askResolver(conflict: ConflictContext): Promise<ConflictDecision> {
  const resolveId = nextToken++;
  return new Promise((resolve, reject) => {
    resolverWaiters.set(resolveId, (decision, error) =>
      error === null ? resolve(decision!) : reject(Object.assign(new Error(error), { code: 'RESOLVER' })),
    );
    post({ event: 'resolve', resolveId, conflict });
  });
}

function askToken(deviceId: string, refresh: boolean): Promise<string | null> {
  const tokenId = nextToken++;
  return new Promise((resolve, reject) => {
    tokenWaiters.set(tokenId, (token, error, temporary) =>
      error === null
        ? resolve(token)
        : reject(
            Object.assign(new Error(`auth callback failed${temporary ? ' (temporarily)' : ''}: ${error}`), {
              code: temporary ? 'AUTH_UNAVAILABLE' : 'AUTH',
            }),
          ),
    );
    post({ event: 'token', tokenId, deviceId, refresh });
  });
}

async function close(): Promise<void> {
  lockAbort.abort();
  if (owner) {
    const o = owner;
    owner = null;
    await o.close();
    release();
  }
  channel?.close();
}
