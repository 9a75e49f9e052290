// A Kysely dialect over a SyncClient (`oversync-web/kysely`): typed, composable SQL through the same worker
// connection, writes captured and synced like any other, transactions as one SQLite transaction, and live
// queries from a query builder.
//
//   const db = new Kysely<Database<typeof schema>>({ dialect: new OversyncDialect({ client }) });
//   const posts = await db.selectFrom('posts').selectAll().where('author_id', '=', me).execute();
//   const stop = liveQuery(client, db.selectFrom('posts').select('title'), (rows) => render(rows));

import {
  DummyDriver,
  Kysely as KyselyClass,
  SqliteAdapter,
  SqliteIntrospector,
  SqliteQueryCompiler,
  type CompiledQuery,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type QueryCompiler,
  type QueryResult,
} from 'kysely';
import type { SubscribeOptions, SyncClient, Transaction } from './index.js';
import type { Params } from './types.js';

/** Options of {@link OversyncDialect}. */
export interface OversyncDialectConfig {
  /** The open database. */
  client: SyncClient;
}

/** Kysely's SQLite dialect, executed by oversync-web. */
export class OversyncDialect implements Dialect {
  constructor(private config: OversyncDialectConfig) {}
  createAdapter(): DialectAdapter {
    return new SqliteAdapter();
  }
  createDriver(): Driver {
    return new OversyncDriver(this.config.client);
  }
  createIntrospector(db: Kysely<unknown>): DatabaseIntrospector {
    return new SqliteIntrospector(db);
  }
  createQueryCompiler(): QueryCompiler {
    return new SqliteQueryCompiler();
  }
}

/** A statement that answers rows: a read, or a write with `RETURNING`. A `WITH` that writes is a write. */
const READ = /^\s*(select|with|pragma|values|explain)\b/i;
const RETURNING = /\breturning\b/i;
const WRITES = /\b(insert|update|delete|replace)\b/i;

/** The one connection: the client. Kysely takes it one query (or one transaction) at a time. */
class OversyncConnection implements DatabaseConnection {
  /** The open transaction, and how to end it (resolve: commit; reject: roll back). */
  tx: { tx: Transaction; end: (commit: boolean) => Promise<void> } | null = null;

  constructor(private client: SyncClient) {}

  async executeQuery<R>(q: CompiledQuery): Promise<QueryResult<R>> {
    const params = [...q.parameters] as Params;
    const rows = READ.test(q.sql) || RETURNING.test(q.sql);
    const tx = this.tx?.tx;
    if (rows) {
      const out = tx
        ? await tx.query<R>(q.sql, params)
        : READ.test(q.sql) && !RETURNING.test(q.sql) && !(/^\s*with\b/i.test(q.sql) && WRITES.test(q.sql))
          ? await this.client.query<R>(q.sql, params)
          : ((await this.client.execRows(q.sql, params)) as R[]);
      return { rows: out };
    }
    const r = tx ? await tx.exec(q.sql, params) : await this.client.exec(q.sql, params);
    return { rows: [], numAffectedRows: BigInt(r.changes), insertId: BigInt(r.lastInsertRowid) };
  }

  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('oversync-web: streaming queries are not supported; use execute()');
  }
}

class OversyncDriver implements Driver {
  private connection: OversyncConnection;
  private queue: Promise<void> = Promise.resolve();
  private release: (() => void) | null = null;

  constructor(private client: SyncClient) {
    this.connection = new OversyncConnection(client);
  }

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    const previous = this.queue;
    let release!: () => void;
    this.queue = new Promise<void>((r) => (release = r));
    await previous;
    this.release = release;
    return this.connection;
  }

  async beginTransaction(connection: DatabaseConnection): Promise<void> {
    const conn = connection as OversyncConnection;
    let started!: (tx: Transaction) => void;
    let finish!: (commit: boolean) => void;
    const ready = new Promise<Transaction>((r) => (started = r));
    const ended = new Promise<boolean>((r) => (finish = r));
    const done = this.client.transaction(async (tx) => {
      started(tx);
      if (!(await ended)) throw ROLLBACK;
    });
    // A transaction that could not begin fails here, not at the first query.
    const tx = await Promise.race([ready, done.then(() => Promise.reject(new Error('the transaction ended before it began')))]);
    conn.tx = {
      tx,
      end: async (commit) => {
        finish(commit);
        try {
          await done;
        } catch (e) {
          if (e !== ROLLBACK) throw e;
        } finally {
          conn.tx = null;
        }
      },
    };
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await (connection as OversyncConnection).tx?.end(true);
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await (connection as OversyncConnection).tx?.end(false);
  }

  async releaseConnection(): Promise<void> {
    const release = this.release;
    this.release = null;
    release?.();
  }

  async destroy(): Promise<void> {}
}

/** Thrown inside the client's transaction to roll it back on Kysely's request. */
const ROLLBACK = Symbol('rollback');

/**
 * A live query from a Kysely query builder (or anything with `compile()`): `callback` gets the typed rows now
 * and whenever they change (see `SyncClient.subscribe`). Returns the unsubscribe function.
 */
export function liveQuery<R>(
  client: SyncClient,
  query: { compile(): CompiledQuery<R> },
  callback: (rows: R[]) => void,
  options?: SubscribeOptions,
): () => void {
  const compiled = query.compile();
  return client.subscribe<R>(compiled.sql, [...compiled.parameters] as Params, callback, options);
}

/**
 * A Kysely that only builds queries (no database: `execute()` on it answers nothing), for the React hooks that
 * take a builder: `const q = queryBuilder<Database<typeof schema>>()` once, then
 * `useLiveQuery(q.selectFrom('posts').select('title'))` in a component, its rows inferred. The hooks run the
 * compiled SQL on the provider's database.
 */
export function queryBuilder<DB>(): Kysely<DB> {
  return new KyselyClass<DB>({
    dialect: {
      createAdapter: () => new SqliteAdapter(),
      createDriver: () => new DummyDriver(),
      createIntrospector: (db) => new SqliteIntrospector(db),
      createQueryCompiler: () => new SqliteQueryCompiler(),
    },
  });
}
