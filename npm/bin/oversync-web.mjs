#!/usr/bin/env node
// `oversync-web server-schema <module> [options]`: the server's half of one schema source. Imports the module
// (JavaScript; TypeScript where Node strips types, ≥ 23.6, or under tsx), takes its defineSchema export, and
// writes the PostgreSQL DDL and the server's [[tables]] entries (npm README: "One schema source").
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { serverSql, serverToml, serverTables } from '../dist/server.js';

const USAGE = `usage: oversync-web server-schema <module> [--export NAME] [--pg-schema NAME] [--owner-column NAME]
                                  [--sql FILE] [--toml FILE] [--json FILE]
  <module>         a module exporting the defineSchema(…) value (export NAME, default \`schema\`, else \`default\`)
  --pg-schema      PostgreSQL schema of the business tables and the client's serverSchema (default public)
  --owner-column   the column holding a private row's user id (default owner_id)
  --sql FILE       write the DDL there (the server's init_sql); --toml / --json the [[tables]] entries
  Without --sql, --toml or --json: the DDL and then the TOML on stdout.`;

function fail(message) {
  process.stderr.write(`oversync-web: ${message}\n`);
  process.exit(2);
}

const [command, ...rest] = process.argv.slice(2);
if (command !== 'server-schema') fail(command ? `unknown command ${command}\n${USAGE}` : USAGE);
let parsed;
try {
  parsed = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      export: { type: 'string' },
      'pg-schema': { type: 'string' },
      'owner-column': { type: 'string' },
      sql: { type: 'string' },
      toml: { type: 'string' },
      json: { type: 'string' },
    },
  });
} catch (e) {
  fail(`${e.message}\n${USAGE}`);
}
const { values, positionals } = parsed;
if (positionals.length !== 1) fail(USAGE);
const file = path.resolve(positionals[0]);
let mod;
try {
  mod = await import(pathToFileURL(file).href);
} catch (e) {
  fail(`cannot import ${file}: ${e.message}`);
}
const name = values.export ?? ('schema' in mod ? 'schema' : 'default');
const schema = mod[name];
if (!schema || typeof schema !== 'object' || !schema.tables) {
  fail(`${file} exports no defineSchema value as \`${name}\` (exports: ${Object.keys(mod).join(', ') || 'none'})`);
}
const options = { pgSchema: values['pg-schema'], ownerColumn: values['owner-column'] };
try {
  const outputs = [
    [values.sql, () => serverSql(schema, options)],
    [values.toml, () => serverToml(schema, options)],
    [values.json, () => JSON.stringify({ tables: serverTables(schema, options) }, null, 2) + '\n'],
  ];
  if (outputs.every(([to]) => !to)) {
    process.stdout.write(serverSql(schema, options) + '\n' + serverToml(schema, options));
  }
  for (const [to, text] of outputs) {
    if (!to) continue;
    writeFileSync(to, text());
    process.stderr.write(`oversync-web: wrote ${to}\n`);
  }
} catch (e) {
  fail(e.message);
}
