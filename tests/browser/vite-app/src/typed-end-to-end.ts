// Typed end to end (issue 34 item 11), checked by tsc against the packed package under the Vite react-ts template's
// flags (tsconfig.json): each `@ts-expect-error` fails the check if its error goes away, so every line below proves
// a type both ways. Compiled, never run.
import { SyncClient, defineSchema, type Database, type OversyncError } from 'oversync-web';
import { queryBuilder } from 'oversync-web/kysely';
import { useDb, useLiveQuery, useSuspenseQuery } from 'oversync-web/react';

const schema = defineSchema({
  posts: { id: 'uuid', title: 'text', views: 'integer?', cover: 'blob?', done: 'boolean', at: 'timestamp?' },
  tags: { id: 'uuid', label: 'text' },
});
type DB = Database<typeof schema>;
const common = { name: 'n', user: 'u', url: 'http://x', auth: 't' };

export async function options(): Promise<void> {
  // A typed client, and its conflict callback typed per table (narrowed on `table`; blobs are base64 on the wire).
  const db: SyncClient<DB> = await SyncClient.open({
    ...common,
    schema,
    conflict: (ctx) => {
      if (ctx.table === 'posts') {
        const title: string | undefined = ctx.local.payload?.title;
        const cover: string | null | undefined = ctx.server.payload?.cover;
        void cover;
        // @ts-expect-error posts have no label
        void ctx.server.payload?.label;
        return { ...ctx.server.payload, title: title ?? '' };
      }
      // @ts-expect-error only posts and tags are tables
      if (ctx.table === 'comments') return 'server';
      return 'client';
    },
  });
  db.onConflicts((cs) => cs.forEach((c) => c.table === 'tags' && void c.server.payload?.label));
  // @ts-expect-error tables and schema exclude each other
  await SyncClient.open({ ...common, schema, tables: ['posts'] });
  // @ts-expect-error resolver and conflict exclude each other
  await SyncClient.open({ ...common, tables: ['posts'], resolver: 'client-wins', conflict: () => 'server' });
  // @ts-expect-error one of tables and schema is required
  await SyncClient.open({ ...common });

  // Parameters are SQL values: a Date must be converted first.
  await db.exec('UPDATE posts SET at = ?, done = ?, cover = ? WHERE id = ?', [new Date().toISOString(), true, new Uint8Array(), 'x']);
  // @ts-expect-error a Date is not a SQL value
  await db.exec('UPDATE posts SET at = ?', [new Date()]);
  // @ts-expect-error nor is undefined
  await db.query('SELECT * FROM posts WHERE id = :id', { id: undefined });

  // Error codes are a union: a misspelt code does not compile.
  try {
    await db.sync();
  } catch (e) {
    const code = (e as OversyncError).code;
    if (code === 'NETWORK' || code === 'SQLITE_CONSTRAINT') return;
    // @ts-expect-error no such code
    if (code === 'NETWRK') return;
  }
}

const q = queryBuilder<DB>();

/** Hooks take a builder and infer its rows. */
export function Titles(props: { min: number }): null {
  const { rows } = useLiveQuery(q.selectFrom('posts').select(['title', 'views']).where('views', '>', props.min));
  const title: string = rows[0].title;
  const views: number | null = rows[0].views;
  // @ts-expect-error not selected
  void rows[0].done;
  const tags = useSuspenseQuery(q.selectFrom('tags').selectAll());
  const label: string = tags[0].label;
  // @ts-expect-error no such column
  useLiveQuery(q.selectFrom('tags').select('nope'));
  const db = useDb<DB>();
  void [title, views, label, db];
  return null;
}
