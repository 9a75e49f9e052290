// Typed tables: a schema written once in TypeScript gives the row types (for `db.query<…>`, the Kysely dialect's
// `Kysely<Database<typeof schema>>`, React hooks) and the synced-table list, and is checked against the SQLite
// tables when the database opens, so the types cannot silently drift from the SQL.

/**
 * A column's type; a trailing `?` makes it nullable. `text`, `integer`, `real` and `blob` are SQLite's own; the
 * others say what the column holds, for the server's PostgreSQL DDL ({@link serverSql} in `oversync-web/server`):
 * `uuid` (TEXT here, `uuid` there), `timestamp` (TEXT here, RFC 3339 such as `new Date().toISOString()`;
 * `timestamptz` there) and `boolean` (INTEGER 0/1 here, `boolean` there).
 */
export type ColumnType = 'text' | 'integer' | 'real' | 'blob' | 'uuid' | 'timestamp' | 'boolean';
export type ColumnSpec = ColumnType | `${ColumnType}?`;

/** The SQLite type each column type is stored as. */
export const SQLITE_TYPE: Readonly<Record<ColumnType, 'text' | 'integer' | 'real' | 'blob'>> = {
  text: 'text',
  integer: 'integer',
  real: 'real',
  blob: 'blob',
  uuid: 'text',
  timestamp: 'text',
  boolean: 'integer',
};

/** A spec's type without its `?`. */
export const baseType = (spec: ColumnSpec): ColumnType => spec.replace('?', '') as ColumnType;

type Base<C extends string> = C extends `${'text' | 'uuid' | 'timestamp'}${string}`
  ? string
  : C extends `${'integer' | 'real' | 'boolean'}${string}`
    ? number
    : C extends `blob${string}`
      ? Uint8Array
      : never;

/** The JavaScript value of a column (`integer` beyond 2^53 comes back as bigint: keep such columns `text`). */
export type ColumnValue<C extends ColumnSpec> = C extends `${string}?` ? Base<C> | null : Base<C>;

/** The columns of each table. */
export type Tables = Record<string, Record<string, ColumnSpec>>;

/** A table's row type. */
export type TableRow<Cols extends Record<string, ColumnSpec>> = { [K in keyof Cols]: ColumnValue<Cols[K]> };

/** A schema from {@link defineSchema}. */
export interface Schema<T extends Tables = Tables> {
  readonly tables: T;
  /** Sync key column per table (default `id`). */
  readonly keys: { readonly [K in keyof T]?: keyof T[K] & string };
  /** Scope column per shared table (docs/sharing.md: the server's `scope_column`). */
  readonly scopes: { readonly [K in keyof T]?: keyof T[K] & string };
  /** Tables kept on this device only: created by {@link schemaSql}, typed, never synced. */
  readonly local?: readonly (keyof T & string)[];
  /** Column defaults, as SQLite expressions (`"0"`, `"'draft'"`, `"CURRENT_TIMESTAMP"`). */
  readonly defaults?: { readonly [K in keyof T]?: { readonly [C in keyof T[K]]?: string } };
  /** Indexes per table: each a list of columns. */
  readonly indexes?: { readonly [K in keyof T]?: readonly (readonly (keyof T[K] & string)[])[] };
}

/** Every table's row type, by name: `Row<typeof schema, 'posts'>`. */
export type Row<S extends Schema, Name extends keyof S['tables']> = TableRow<S['tables'][Name]>;

/** The row types of every table: the `DB` type of `Kysely<Database<typeof schema>>`. */
export type Database<S extends Schema> = { [Name in keyof S['tables']]: TableRow<S['tables'][Name]> };

/**
 * Declares the synced tables and their columns, e.g.
 * `defineSchema({ posts: { id: 'text', title: 'text', content: 'text?' } })`. Pass it to `SyncClient.open` as
 * `schema` (instead of `tables`): the tables are synced, and each declared column must exist with that type.
 */
export function defineSchema<const T extends Tables>(
  tables: T,
  options: {
    keys?: { [K in keyof T]?: keyof T[K] & string };
    /** Shared tables: the column naming each row's scope (NULL keeps the row a private draft). */
    scopes?: { [K in keyof T]?: keyof T[K] & string };
    /** Tables kept on this device only (never synced). */
    local?: (keyof T & string)[];
    /** Column defaults, as SQLite expressions. */
    defaults?: { [K in keyof T]?: { [C in keyof T[K]]?: string } };
    /** Indexes per table, each a list of columns. */
    indexes?: { [K in keyof T]?: (keyof T[K] & string)[][] };
  } = {},
): Schema<T> {
  for (const [table, columns] of Object.entries(tables)) {
    for (const [column, spec] of Object.entries(columns)) {
      if (typeof spec !== 'string' || !Object.hasOwn(SQLITE_TYPE, spec.replace(/\?$/, ''))) {
        throw new TypeError(`${table}.${column}: ${String(spec)} is not ${Object.keys(SQLITE_TYPE).join(', ')} (with ? if nullable)`);
      }
    }
  }
  for (const table of options.local ?? []) {
    if (!(table in tables)) throw new TypeError(`local: ${table} is not a table of the schema`);
  }
  return {
    tables,
    keys: options.keys ?? {},
    scopes: options.scopes ?? {},
    local: options.local ?? [],
    defaults: options.defaults ?? {},
    indexes: options.indexes ?? {},
  };
}

/** The synced tables of `schema` (its `local` ones left out), each with its key column and scope column. */
export function syncedTables(schema: Schema): { name: string; key: string; scope?: string }[] {
  const local = new Set<string>(schema.local ?? []);
  const keys = schema.keys as Record<string, string | undefined>;
  const scopes = schema.scopes as Record<string, string | undefined>;
  return Object.keys(schema.tables)
    .filter((name) => !local.has(name))
    .map((name) => ({ name, key: keys[name] ?? 'id', ...(scopes[name] ? { scope: scopes[name] } : {}) }));
}

const quote = (name: string) => `"${name.replace(/"/g, '""')}"`;

/**
 * The SQLite DDL of `schema`: `CREATE TABLE IF NOT EXISTS` for every table (synced and local; the key column —
 * `id` unless `keys` says otherwise — is its `PRIMARY KEY`, a column without `?` is `NOT NULL`, `defaults` become
 * `DEFAULT (…)`) and `CREATE INDEX IF NOT EXISTS` for each of `indexes`. `SyncClient.open` runs it when `schema`
 * is given without `init`; pass `init` to run your own SQL instead (or `schemaSql(schema) + yourSql`).
 */
export function schemaSql(schema: Schema): string {
  const out: string[] = [];
  for (const [table, columns] of Object.entries(schema.tables)) {
    const key = (schema.keys as Record<string, string | undefined>)[table] ?? 'id';
    const defaults = ((schema.defaults ?? {}) as Record<string, Record<string, string> | undefined>)[table] ?? {};
    const cols = Object.entries(columns).map(([name, spec]) => {
      const type = SQLITE_TYPE[baseType(spec)].toUpperCase();
      const parts = [quote(name), type];
      if (name === key) parts.push('PRIMARY KEY');
      if (!spec.endsWith('?') || name === key) parts.push('NOT NULL');
      if (defaults[name] !== undefined) parts.push(`DEFAULT (${defaults[name]})`);
      return parts.join(' ');
    });
    out.push(`CREATE TABLE IF NOT EXISTS ${quote(table)} (${cols.join(', ')});`);
    const indexes = ((schema.indexes ?? {}) as Record<string, readonly (readonly string[])[] | undefined>)[table] ?? [];
    for (const index of indexes) {
      const name = `${table}_${index.join('_')}_idx`;
      out.push(`CREATE INDEX IF NOT EXISTS ${quote(name)} ON ${quote(table)} (${index.map(quote).join(', ')});`);
    }
  }
  return out.join('\n');
}

/** SQLite's affinity for a declared type (https://sqlite.org/datatype3.html §3.1). */
export function affinity(declared: string): 'text' | 'integer' | 'real' | 'blob' | 'numeric' {
  const t = declared.toUpperCase();
  if (t.includes('INT')) return 'integer';
  if (t.includes('CHAR') || t.includes('CLOB') || t.includes('TEXT')) return 'text';
  if (t.includes('BLOB') || t === '') return 'blob';
  if (t.includes('REAL') || t.includes('FLOA') || t.includes('DOUB')) return 'real';
  return 'numeric';
}

/** A table's columns as SQLite reports them (`PRAGMA table_info`). */
export interface ActualColumn {
  name: string;
  type: string;
  notnull: number;
  pk: number;
}

/**
 * What is wrong with `table`'s SQLite columns against the schema (empty when they match): a declared column
 * missing, another affinity, or NOT NULL where the schema says nullable / nullable where it says not.
 */
export function mismatches(table: string, declared: Record<string, ColumnSpec>, actual: ActualColumn[]): string[] {
  if (actual.length === 0) return [`${table}: no such table (create it in init)`];
  const byName = new Map(actual.map((c) => [c.name.toLowerCase(), c]));
  const out: string[] = [];
  for (const [name, spec] of Object.entries(declared)) {
    const col = byName.get(name.toLowerCase());
    if (!col) {
      out.push(`${table}.${name}: no such column`);
      continue;
    }
    const want = SQLITE_TYPE[baseType(spec)];
    const have = affinity(col.type);
    if (have !== want) out.push(`${table}.${name}: declared ${col.type || 'without a type'} (${have}), the schema says ${want}`);
    const nullable = spec.endsWith('?');
    // A primary key is never NULL in practice, whatever SQLite's flag says.
    const notNull = col.notnull === 1 || col.pk > 0;
    if (nullable && notNull) out.push(`${table}.${name}: NOT NULL in SQLite, nullable ('${spec}') in the schema`);
    if (!nullable && !notNull) out.push(`${table}.${name}: nullable in SQLite, '${spec}' in the schema (add ? or NOT NULL)`);
  }
  return out;
}
