// P3 with the server out of the picture: the replies one hydration got, recorded in the database worker, are
// replayed from memory to new devices. What is left is the engine, SQLite and OPFS in Chromium, with the server
// and PostgreSQL idle: the client's own ceiling on this machine.

/** Records the worker's `/sync/` replies. Resolves to `stop()` → the records (absolute URL → reply). */
export async function recordReplies(worker) {
  await worker.evaluate(() => {
    const inner = self.fetch.bind(self);
    const records = (self.__replies = {});
    self.fetch = async (input, init) => {
      const reply = await inner(input, init);
      const url = new URL(typeof input === 'string' ? input : input.url, self.location.href).href;
      if (url.includes('/sync/')) {
        records[url] = { status: reply.status, type: reply.headers.get('content-type'), body: await reply.clone().text() };
      }
      return reply;
    };
  });
  return () => worker.evaluate(() => self.__replies);
}

/**
 * Answers the worker's requests for recorded URLs from memory; any other request goes to the server. Resolves
 * to `served()` → how many of the recorded URLs were asked for (a URL asked twice counts once).
 */
export async function replayReplies(worker, records) {
  await worker.evaluate((recorded) => {
    const inner = self.fetch.bind(self);
    const served = new Set();
    self.__served = () => served.size;
    self.fetch = async (input, init) => {
      const url = new URL(typeof input === 'string' ? input : input.url, self.location.href).href;
      const reply = recorded[url];
      if (!reply) return inner(input, init);
      served.add(url);
      return new Response(reply.body, { status: reply.status, headers: reply.type ? { 'content-type': reply.type } : {} });
    };
  }, records);
  return () => worker.evaluate(() => self.__served());
}
