// A CPU profile of the database worker (the dedicated worker that runs the wasm engine), through CDP: Chromium's
// sampling profiler on the worker target, self time per function. `run.mjs --only p3 --profile` uses it; build
// the package with `WASM_OPT_EXTRA=-g npm/build.sh` to keep the wasm function names.

/** Attaches to the page's dedicated worker and starts sampling; resolves to `stop()` → the top self times. */
export async function profileWorker(ctx, page, { intervalUs = 200 } = {}) {
  const cdp = await ctx.newCDPSession(page);
  let session = null;
  let nextId = 1;
  const pending = new Map();
  cdp.on('Target.attachedToTarget', (e) => {
    if (e.targetInfo.type === 'worker') session = e.sessionId;
  });
  cdp.on('Target.receivedMessageFromTarget', (e) => {
    const m = JSON.parse(e.message);
    pending.get(m.id)?.(m);
    pending.delete(m.id);
  });
  const send = (method, params = {}) =>
    new Promise((resolve) => {
      const id = nextId++;
      pending.set(id, resolve);
      cdp.send('Target.sendMessageToTarget', { sessionId: session, message: JSON.stringify({ id, method, params }) });
    });
  await cdp.send('Target.setAutoAttach', { autoAttach: true, waitForDebuggerOnStart: false, flatten: false });
  for (let i = 0; i < 50 && !session; i++) await new Promise((r) => setTimeout(r, 100));
  if (!session) throw new Error('profile: no worker target to attach to');
  await send('Profiler.enable');
  await send('Profiler.setSamplingInterval', { interval: intervalUs });
  await send('Profiler.start');
  return async (top = 30) => {
    const { profile } = (await send('Profiler.stop')).result;
    const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
    const self = new Map();
    for (const id of profile.samples) {
      const f = nodes.get(id).callFrame;
      const name = f.functionName || `(${f.url.split('/').pop() || 'program'})`;
      self.set(name, (self.get(name) ?? 0) + 1);
    }
    const total = profile.samples.length;
    return [...self]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, n]) => ({ percent: Math.round((1000 * n) / total) / 10, name: name.slice(0, 120) }));
  };
}
