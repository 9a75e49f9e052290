// The stack the browser tests run against: PostgreSQL + the native sync server (via `oversync-dev`, which
// starts a throwaway cluster unless DATABASE_URL is set) and one HTTP origin on 127.0.0.1 that serves the test
// pages and the built npm package and forwards the sync routes to the server (same origin: no CORS). The
// forwarder can be cut to make the server unreachable.

import { spawn } from 'node:child_process';
import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, '../..');
const target = process.env.OVERSYNC_BIN_DIR ?? path.join(root, 'target/debug');

const types = {
  '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm',
  '.css': 'text/css', '.json': 'application/json', '.png': 'image/png', '.svg': 'image/svg+xml',
  '.webmanifest': 'application/manifest+json',
};

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function isFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer().listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    s.on('error', () => resolve(false));
  });
}

/** Every live descendant of `pid` (from /proc). */
export function descendants(pid) {
  const children = new Map();
  for (const d of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const ppid = Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(d)]);
    } catch {
      // the process ended meanwhile
    }
  }
  const out = [];
  const walk = (p) => (children.get(p) ?? []).forEach((c) => (out.push(c), walk(c)));
  walk(pid);
  return out;
}

/**
 * Starts PostgreSQL + the sync server through `oversync-dev` (serving `staticDir` on its origin if given; the
 * Worker under wrangler dev with `edge`; with `jwks` a test identity provider that serves the app and signs its
 * tokens, on `app`; `env` adds server settings such as `OVERSYNC_JWKS_URL`; `config` another configuration file
 * than the demo's); resolves to `{ url, app, pid, stop }`.
 */
export async function startSyncServer({ staticDir, edge = false, jwks = false, env = {}, config } = {}) {
  // --jwks needs PORT and PORT+1: retry until a free port's successor is free too.
  let port = await freePort();
  while (jwks && !(await isFree(port + 1))) port = await freePort();
  const extra = [...(staticDir ? ['--static', staticDir] : []), ...(edge ? ['--edge'] : []), ...(jwks ? ['--jwks'] : [])];
  config ??= path.join(root, jwks ? 'server-edge/demo/jwks.toml' : 'server-edge/demo/demo.toml');
  const child = spawn(
    path.join(target, 'oversync-dev'),
    ['--server', path.join(target, 'oversync-server'), '--config', config, ...extra],
    { env: { ...process.env, ...env, PORT: String(port), RUST_LOG: process.env.RUST_LOG ?? 'warn' }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sync server did not start:\n${out}`)), 120_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/sync server:\s+(http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`oversync-dev exited (${code}):\n${out}`)));
  });
  const stop = () =>
    new Promise((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.on('exit', resolve);
      child.kill('SIGINT');
    });
  const app = out.match(/app:\s+(http:\/\/\S+?)\/?\s/)?.[1] ?? url;
  // The database's URL is printed after the server's: read it when asked.
  const database = () => out.match(/database:\s+(\S+)/)?.[1];
  return { url, app, pid: child.pid, stop, database };
}

/**
 * Serves `mounts` (URL prefix → directory) and forwards every other path to `upstream`. `cut()` makes the
 * upstream unreachable (connections are reset, or answered with `cut({ status })`), `restore()` undoes it. With `websockets: false` every WebSocket
 * upgrade is dropped, as by a proxy that does not carry them.
 */
export async function startOrigin(upstream, mounts, { websockets = true } = {}) {
  let down = false;
  let downStatus = 0;
  let downPrefix = '';
  /** The path and query of every request forwarded upstream, in order (what the browser's workers asked). */
  const requests = [];
  const up = new URL(upstream);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    for (const [prefix, dir] of Object.entries(mounts)) {
      if (!url.pathname.startsWith(prefix)) continue;
      let file = path.join(dir, decodeURIComponent(url.pathname.slice(prefix.length)));
      if (!file.startsWith(dir)) break;
      if (existsSync(file) && statSync(file).isDirectory()) file = path.join(file, 'index.html');
      if (!existsSync(file)) break;
      res.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-cache' });
      createReadStream(file).pipe(res);
      return;
    }
    const isDown = down && (!downPrefix || url.pathname.startsWith(downPrefix));
    if (isDown && downStatus) {
      // A proxy whose upstream is down: it answers, with an error status.
      res.writeHead(downStatus, { 'content-type': 'text/html' });
      return res.end('<html><body>Bad Gateway</body></html>');
    }
    if (isDown) return req.socket.destroy();
    requests.push(req.url);
    const fwd = http.request(
      { host: up.hostname, port: up.port, path: req.url, method: req.method, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      },
    );
    fwd.on('error', () => req.socket.destroy());
    req.pipe(fwd);
  });
  // WebSocket upgrades (`/sync/stream`) are piped through as raw bytes; `cut()` drops the open ones too.
  const tunnels = new Set();
  server.on('upgrade', (req, socket, head) => {
    if ((down && !downPrefix) || !websockets) return socket.destroy();
    const upstreamSocket = net.connect(Number(up.port), up.hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstreamSocket.write(`${lines.join('\r\n')}\r\n\r\n`);
      upstreamSocket.write(head);
      upstreamSocket.pipe(socket);
      socket.pipe(upstreamSocket);
    });
    const pair = [socket, upstreamSocket];
    tunnels.add(pair);
    const end = () => (tunnels.delete(pair), socket.destroy(), upstreamSocket.destroy());
    socket.on('error', end).on('close', end);
    upstreamSocket.on('error', end).on('close', end);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return {
    origin,
    requests,
    /**
     * Upstream unreachable: connections reset, or (`status`) answered with that status as a proxy would; with
     * `path`, only requests whose path starts with it (WebSockets keep going).
     */
    cut: ({ status = 0, path: prefix = '' } = {}) => {
      down = true;
      downStatus = status;
      downPrefix = prefix;
      if (prefix) return;
      for (const [a, b] of tunnels) (a.destroy(), b.destroy());
    },
    restore: () => void (down = false),
    stop: () =>
      new Promise((r) => {
        for (const [a, b] of tunnels) (a.destroy(), b.destroy());
        server.closeAllConnections();
        server.close(r);
      }),
  };
}

/** Uploads `rows` rows (half users, half posts referencing them) for `username` in batches of 200. */
export async function seed(base, username, rows) {
  const r = await fetch(`${base}/signin`, { method: 'POST', body: JSON.stringify({ username, device_id: 'seed' }) });
  const { token } = await r.json();
  let scid = 1;
  for (let done = 0; done < rows; done += 200) {
    const changes = [];
    for (let i = 0; i < 100; i++) {
      const u = randomUUID();
      const p = randomUUID();
      changes.push({ source_change_id: scid++, schema: 'business', table: 'users', op: 'INSERT', pk: u, server_version: 0,
        payload: { id: u, name: `user ${done + i}`, email: `u${done + i}@example.com` } });
      changes.push({ source_change_id: scid++, schema: 'business', table: 'posts', op: 'INSERT', pk: p, server_version: 0,
        payload: { id: p, title: `post ${done + i}`, content: 'Lorem ipsum dolor sit amet, consectetur adipiscing elit.', author_id: u } });
    }
    const up = await fetch(`${base}/sync/upload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ last_server_seq_seen: 0, changes }),
    });
    if (!up.ok) throw new Error(`seed upload: ${up.status} ${await up.text()}`);
  }
}
