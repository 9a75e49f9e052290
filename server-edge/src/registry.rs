//! The table registry: registered tables, their FK columns, apply order and materialisation targets. Built once
//! at start-up from configuration plus the database catalogue, then shared read-only by every request (§6.1.5:
//! the FK graph and column types are rebuildable caches).

use std::collections::{BTreeMap, HashMap};

use oversync_protocol::TableRef;
use oversync_protocol::order::{FkEdge, parent_first};
use tokio_postgres::Client;

use crate::config::{Config, ConfigError, FkPrecheck};

/// How a value is converted for a business column (§5.1, §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `uuid`: any UUID form or the base64 of 16 bytes.
    Uuid,
    /// `bytea`: UUID, hex or base64 per §5.1.
    Bytea,
    /// `timestamptz`, `timestamp`, `date`: Unix seconds or RFC 3339.
    Timestamp,
    /// `boolean`: 0/1 or true/false.
    Bool,
    /// `json` / `jsonb`: the JSON text as is.
    Json,
    /// Numeric types: the number's digits as sent.
    Number,
    /// Everything else: strings as text.
    Text,
}

/// A business column.
#[derive(Debug, Clone)]
pub struct Column {
    /// `format_type()` of the column, used as the cast target.
    pub sql_type: String,
    /// Conversion rule.
    pub kind: Kind,
}

/// Where applied changes of a table are materialised (§6.7).
#[derive(Debug, Clone)]
pub struct Target {
    /// Business schema.
    pub schema: String,
    /// Business table.
    pub table: String,
    /// Key column.
    pub key: String,
    /// Owner column, set to the user id; for a scoped table its scope column, set to the scope.
    pub owner: Option<String>,
    /// The table is scoped (docs/sharing.md §2): rows are written by scope owners (`'\x1f' || scope`), and the
    /// owner column takes the scope.
    pub scoped: bool,
    /// The key is unique only together with the owner column (the table's key is `(owner, key)`), so upserts
    /// conflict on both and every user has a key space of their own. Discovered from the unique indexes.
    pub owner_scoped: bool,
    /// Columns by name.
    pub columns: HashMap<String, Column>,
}

impl Target {
    /// SQL turning `text` (a canonical UUID as text) into a key value: `bytea` keys hold the UUID's 16 bytes
    /// (§5.1), other types take a cast.
    pub fn key_from_text(&self, text: &str) -> String {
        match self.columns.get(&self.key) {
            Some(c) if c.kind == Kind::Bytea => format!("decode(replace({text}, '-', ''), 'hex')"),
            Some(c) => format!("CAST({text} AS {})", c.sql_type),
            None => format!("CAST({text} AS text)"),
        }
    }

    /// SQL for the owner column's value from the owner parameter `param` (the user id, or for a scoped table the
    /// owner `'\x1f' || scope`, whose scope it takes in the column's type).
    pub fn owner_value(&self, param: &str) -> String {
        if !self.scoped {
            return param.to_owned();
        }
        match self.owner.as_ref().and_then(|o| self.columns.get(o)) {
            Some(c) => format!("CAST(substr({param}, 2) AS {})", c.sql_type),
            None => format!("substr({param}, 2)"),
        }
    }

    /// SQL rendering the key column `col` as the canonical UUID text the wire uses.
    pub fn key_as_text(&self, col: &str) -> String {
        match self.columns.get(&self.key) {
            Some(c) if c.kind == Kind::Bytea => format!(
                "regexp_replace(encode({col}, 'hex'), '^(.{{8}})(.{{4}})(.{{4}})(.{{4}})(.{{12}})$', '\\1-\\2-\\3-\\4-\\5')"
            ),
            _ => format!("{col}::text"),
        }
    }
}

/// A prechecked FK column of a registered table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FkColumn {
    /// The payload key.
    pub column: String,
    /// The registered parent.
    pub parent: TableRef,
}

/// One registered table.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// The registered pair.
    pub table: TableRef,
    /// FK columns in column order.
    pub fks: Vec<FkColumn>,
    /// Materialisation target, if any.
    pub target: Option<Target>,
    /// FKs were declared in configuration, so none are discovered for this table.
    pub declared_fks: bool,
    /// The payload column naming the row's scope (lower case), for a scoped table.
    pub scope: Option<String>,
    /// The payload's key field (the sync key).
    pub sync_key: String,
    /// Devices may write the table.
    pub devices_write: bool,
}

/// All registered tables.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    tables: BTreeMap<TableRef, TableInfo>,
    rank: HashMap<TableRef, usize>,
    /// FK precheck mode.
    pub fk_precheck: FkPrecheck,
}

impl Registry {
    /// Builds the registry from configuration alone (no materialisation column types, declared FKs only).
    pub fn from_config(cfg: &Config) -> Result<Self, ConfigError> {
        let mut tables = BTreeMap::new();
        for t in &cfg.tables {
            let table = t.table_ref()?;
            let mut fks = Vec::new();
            for fk in &t.fks {
                let parent = TableRef::parse(&fk.parent).ok_or_else(|| ConfigError::BadName(fk.parent.clone()))?;
                fks.push(FkColumn {
                    column: fk.column.to_lowercase(),
                    parent,
                });
            }
            let target = if t.materialize {
                let (schema, name) = match &t.target {
                    Some(q) => {
                        let r = TableRef::parse(q).ok_or_else(|| ConfigError::BadName(q.clone()))?;
                        (r.schema, r.table)
                    }
                    None => (table.schema.clone(), table.table.clone()),
                };
                Some(Target {
                    schema,
                    table: name,
                    key: t.target_key.clone().unwrap_or_else(|| t.sync_key.clone()),
                    owner: t.owner_column.clone().or_else(|| t.scope_column.clone()),
                    scoped: t.scope_column.is_some(),
                    owner_scoped: false,
                    columns: HashMap::new(),
                })
            } else {
                None
            };
            let declared_fks = !fks.is_empty();
            tables.insert(
                table.clone(),
                TableInfo {
                    table,
                    fks,
                    target,
                    declared_fks,
                    scope: t.scope_column.as_ref().map(|c| c.to_lowercase()),
                    sync_key: t.sync_key.to_lowercase(),
                    devices_write: t.devices_write,
                },
            );
        }
        let mut reg = Self {
            tables,
            rank: HashMap::new(),
            fk_precheck: cfg.fk_precheck,
        };
        reg.rebuild_order();
        Ok(reg)
    }

    /// Reads column types of the materialisation targets and, for tables without declared FKs, discovers FKs
    /// from the business tables' constraints.
    pub async fn discover(&mut self, client: &Client) -> Result<(), tokio_postgres::Error> {
        let targets: Vec<(String, String)> = self
            .tables
            .values()
            .filter_map(|t| t.target.as_ref())
            .map(|t| (t.schema.clone(), t.table.clone()))
            .collect();
        if targets.is_empty() {
            return Ok(());
        }
        let (schemas, names): (Vec<String>, Vec<String>) = targets.into_iter().unzip();
        let rows = client.query(COLUMNS_SQL, &[&schemas, &names]).await?;
        for row in rows {
            let (schema, table, column, sql_type, base): (String, String, String, String, String) =
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            let category: i8 = row.get(5);
            let kind = kind_of(&base, category as u8 as char);
            for info in self.tables.values_mut() {
                if let Some(t) = info.target.as_mut().filter(|t| t.schema == schema && t.table == table) {
                    t.columns.insert(
                        column.clone(),
                        Column {
                            sql_type: sql_type.clone(),
                            kind,
                        },
                    );
                }
            }
        }
        self.discover_keys(client, &schemas, &names).await?;
        self.warn_unisolated();
        self.discover_fks(client, &schemas).await
    }

    /// Marks the targets whose key is unique only together with their owner column.
    async fn discover_keys(
        &mut self,
        client: &Client,
        schemas: &[String],
        names: &[String],
    ) -> Result<(), tokio_postgres::Error> {
        let rows = client.query(UNIQUE_KEYS_SQL, &[&schemas, &names]).await?;
        for info in self.tables.values_mut() {
            let Some(t) = info.target.as_mut() else { continue };
            let Some(owner) = t.owner.clone() else { continue };
            let keys = rows
                .iter()
                .filter(|r| r.get::<_, String>(0) == t.schema && r.get::<_, String>(1) == t.table)
                .map(|r| {
                    let mut cols: Vec<String> = r.get(2);
                    cols.sort();
                    cols
                });
            let (mut alone, mut with_owner) = (false, false);
            for cols in keys {
                alone |= cols == [t.key.clone()];
                with_owner |= cols.len() == 2 && cols.contains(&t.key) && cols.contains(&owner);
            }
            // A key unique on its own conflicts on its own, whatever else is unique: the owner guard then refuses
            // another user's row, which is the best a shared key space allows.
            t.owner_scoped = with_owner && !alone;
        }
        Ok(())
    }

    /// Start-up warnings for materialised tables that do not keep users apart (PROTOCOL.md §6.7). The server still
    /// starts: a single-tenant deployment may share its business tables on purpose.
    fn warn_unisolated(&self) {
        for info in self.tables.values() {
            let Some(t) = &info.target else { continue };
            let target = format!("{}.{}", t.schema, t.table);
            if t.columns.is_empty() {
                tracing::warn!(table = %info.table, %target, "materialisation target not found; its rows will be recorded as failures");
            } else if t.owner.is_none() {
                tracing::warn!(table = %info.table, %target, "materialised table has no owner column: its rows are shared by all users and any user can change or delete them, and backend writes to it are not captured");
            } else if !t.owner_scoped && !t.scoped {
                tracing::warn!(table = %info.table, %target, key = %t.key, "materialised table's key is not scoped by its owner column: the first user to write a key owns it, and other users' rows for it are not materialised; make the primary key (owner, key)");
            }
        }
    }

    async fn discover_fks(&mut self, client: &Client, schemas: &[String]) -> Result<(), tokio_postgres::Error> {
        let by_target: HashMap<(String, String), TableRef> = self
            .tables
            .values()
            .filter_map(|i| {
                i.target
                    .as_ref()
                    .map(|t| ((t.schema.clone(), t.table.clone()), i.table.clone()))
            })
            .collect();
        let rows = client.query(FKS_SQL, &[&schemas]).await?;
        // Group the column pairs of each constraint, keeping the child's column order (rows come by attnum).
        let mut order: Vec<u32> = Vec::new();
        let mut constraints: HashMap<u32, ConstraintColumns> = HashMap::new();
        for row in rows {
            let oid: u32 = row.get(0);
            let child = by_target.get(&(row.get::<_, String>(1), row.get::<_, String>(2)));
            let parent = by_target.get(&(row.get::<_, String>(4), row.get::<_, String>(5)));
            let (Some(child), Some(parent)) = (child, parent) else {
                continue;
            };
            if self.tables[child].declared_fks {
                continue;
            }
            let entry = constraints.entry(oid).or_insert_with(|| {
                order.push(oid);
                (child.clone(), parent.clone(), Vec::new())
            });
            entry.2.push((row.get(3), row.get(6)));
        }
        for (child, parent, pairs) in order.iter().filter_map(|oid| constraints.remove(oid)) {
            let child_owner = self.tables[&child].target.as_ref().and_then(|t| t.owner.clone());
            let parent_key = self.tables[&parent].target.as_ref().map(|t| t.key.clone());
            // A composite (owner, x) reference counts as x; other composite references are ignored.
            let rest: Vec<_> = pairs
                .into_iter()
                .filter(|(c, _)| Some(c) != child_owner.as_ref())
                .collect();
            if let [(column, parent_col)] = rest.as_slice()
                && Some(parent_col) == parent_key.as_ref()
            {
                let fk = FkColumn {
                    column: column.clone(),
                    parent: parent.clone(),
                };
                let info = self.tables.get_mut(&child).expect("registered");
                if !info.fks.contains(&fk) {
                    info.fks.push(fk);
                }
            }
        }
        self.rebuild_order();
        Ok(())
    }

    fn rebuild_order(&mut self) {
        let tables: Vec<TableRef> = self.tables.keys().cloned().collect();
        let edges: Vec<FkEdge> = self
            .tables
            .values()
            .flat_map(|i| {
                i.fks.iter().map(|fk| FkEdge {
                    child: i.table.clone(),
                    parent: fk.parent.clone(),
                })
            })
            .collect();
        self.rank = parent_first(&tables, &edges)
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, i))
            .collect();
    }

    /// The registered table, if any.
    pub fn get(&self, t: &TableRef) -> Option<&TableInfo> {
        self.tables.get(t)
    }

    /// True when the pair is registered.
    pub fn contains(&self, t: &TableRef) -> bool {
        self.tables.contains_key(t)
    }

    /// Position in the parent-first order.
    pub fn rank(&self, t: &TableRef) -> usize {
        self.rank.get(t).copied().unwrap_or(usize::MAX)
    }

    /// The scope column of a scoped table.
    pub fn scope_column(&self, t: &TableRef) -> Option<&str> {
        self.tables.get(t).and_then(|i| i.scope.as_deref())
    }

    /// Some registered table is scoped.
    pub fn has_scopes(&self) -> bool {
        self.tables.values().any(|i| i.scope.is_some())
    }

    /// All registered tables.
    pub fn tables(&self) -> impl Iterator<Item = &TableInfo> {
        self.tables.values()
    }
}

/// One FK constraint: child table, parent table, and its `(child column, parent column)` pairs.
type ConstraintColumns = (TableRef, TableRef, Vec<(String, String)>);

fn kind_of(base: &str, category: char) -> Kind {
    match base {
        "uuid" => Kind::Uuid,
        "bytea" => Kind::Bytea,
        "timestamptz" | "timestamp" | "date" => Kind::Timestamp,
        "bool" => Kind::Bool,
        "json" | "jsonb" => Kind::Json,
        _ if category == 'N' => Kind::Number,
        _ => Kind::Text,
    }
}

const COLUMNS_SQL: &str = "
SELECT n.nspname::text, c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod),
       coalesce(bt.typname, t.typname)::text, coalesce(bt.typcategory, t.typcategory)::\"char\"
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND (n.nspname::text, c.relname::text) IN (SELECT * FROM unnest($1::text[], $2::text[]))";

/// Unique, non-partial, plain-column indexes of the targets, with their column names.
const UNIQUE_KEYS_SQL: &str = "
SELECT n.nspname::text, c.relname::text,
       ARRAY(SELECT a.attname::text FROM unnest(i.indkey) AS k(att)
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.att)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
  AND (n.nspname::text, c.relname::text) IN (SELECT * FROM unnest($1::text[], $2::text[]))";

const FKS_SQL: &str = "
SELECT con.oid, cn.nspname::text, cc.relname::text, lower(ca.attname::text), pn.nspname::text, pc.relname::text,
       pa.attname::text, ca.attnum::int4
FROM pg_constraint con
JOIN pg_class cc ON cc.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = cc.relnamespace
JOIN pg_class pc ON pc.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
CROSS JOIN LATERAL unnest(con.conkey, con.confkey) WITH ORDINALITY AS k(child_att, parent_att, ord)
JOIN pg_attribute ca ON ca.attrelid = con.conrelid AND ca.attnum = k.child_att
JOIN pg_attribute pa ON pa.attrelid = con.confrelid AND pa.attnum = k.parent_att
WHERE con.contype = 'f' AND cn.nspname::text = ANY($1)
ORDER BY ca.attnum, con.oid, k.ord";
