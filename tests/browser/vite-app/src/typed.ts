// Type-checked (tsc --noEmit) against the packed package by the packaging test: defineSchema's row types reach
// db.query and Kysely, and wrong columns or values are compile errors.
import { Kysely } from 'kysely';
import { defineSchema, type Database, type SchemaRow, type SyncClient } from 'oversync-web';
import { OversyncDialect, liveQuery } from 'oversync-web/kysely';

const schema = defineSchema({ posts: { id: 'text', title: 'text', views: 'integer?', cover: 'blob?' } });
type Post = SchemaRow<typeof schema, 'posts'>;

export const ok: Post = { id: 'x', title: 't', views: null, cover: new Uint8Array() };
// @ts-expect-error title is text
export const wrongType: Post = { id: 'x', title: 1, views: null, cover: null };
// @ts-expect-error views is nullable, but present
export const missing: Post = { id: 'x', title: 't', cover: null };

export async function typed(client: SyncClient): Promise<[string, number | null, Post[]]> {
  const db = new Kysely<Database<typeof schema>>({ dialect: new OversyncDialect({ client }) });
  const rows = await db.selectFrom('posts').select(['title', 'views']).where('views', '>', 3).execute();
  // @ts-expect-error no such column
  await db.selectFrom('posts').select('nope').execute();
  // @ts-expect-error no such table
  await db.selectFrom('comments').selectAll().execute();
  liveQuery(client, db.selectFrom('posts').select('title'), (live) => {
    const title: string = live[0].title;
    void title;
  });
  return [rows[0].title, rows[0].views, await client.query<Post>('SELECT * FROM posts')];
}
