//! The portal's database: one sqlx `Any` pool over SQLite or PostgreSQL, the pragmas that make
//! SQLite durable and concurrent, and the migrations, applied at start under a lock so that
//! several portal processes starting together apply each migration once.
//!
//! Queries are written once for both databases: `$1` placeholders (SQLite accepts them),
//! `BIGINT` and `TEXT` columns, `ON CONFLICT` and `RETURNING` (both have them).

use std::str::FromStr as _;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Connection as _, Executor as _, Row as _};

/// Which database the pool talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite: the embedded default.
    Sqlite,
    /// PostgreSQL: for several portal processes.
    Postgres,
}

/// The pool and what it is.
#[derive(Clone, Debug)]
pub struct Database {
    /// The connection pool.
    pub pool: AnyPool,
    /// The database behind it.
    pub backend: Backend,
}

/// One migration: a version, a name, SQL for both databases and SQL for each.
struct Migration {
    version: i64,
    name: &'static str,
    common: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        common: include_str!("../../../migrations/0001_init.sql"),
        sqlite: include_str!("../../../migrations/0001_init.sqlite.sql"),
        postgres: include_str!("../../../migrations/0001_init.postgres.sql"),
    },
    Migration {
        version: 2,
        name: "releases",
        common: include_str!("../../../migrations/0002_releases.sql"),
        sqlite: include_str!("../../../migrations/0002_releases.sqlite.sql"),
        postgres: include_str!("../../../migrations/0002_releases.postgres.sql"),
    },
    Migration {
        version: 3,
        name: "installations",
        common: include_str!("../../../migrations/0003_installations.sql"),
        sqlite: include_str!("../../../migrations/0003_installations.sqlite.sql"),
        postgres: include_str!("../../../migrations/0003_installations.postgres.sql"),
    },
    Migration {
        version: 4,
        name: "web",
        common: include_str!("../../../migrations/0004_web.sql"),
        sqlite: include_str!("../../../migrations/0004_web.sqlite.sql"),
        postgres: include_str!("../../../migrations/0004_web.postgres.sql"),
    },
    Migration {
        version: 5,
        name: "members",
        common: include_str!("../../../migrations/0005_members.sql"),
        sqlite: include_str!("../../../migrations/0005_members.sqlite.sql"),
        postgres: include_str!("../../../migrations/0005_members.postgres.sql"),
    },
    Migration {
        version: 6,
        name: "search",
        common: include_str!("../../../migrations/0006_search.sql"),
        sqlite: include_str!("../../../migrations/0006_search.sqlite.sql"),
        postgres: include_str!("../../../migrations/0006_search.postgres.sql"),
    },
    Migration {
        version: 7,
        name: "proofs",
        common: include_str!("../../../migrations/0007_proofs.sql"),
        sqlite: include_str!("../../../migrations/0007_proofs.sqlite.sql"),
        postgres: include_str!("../../../migrations/0007_proofs.postgres.sql"),
    },
    Migration {
        version: 8,
        name: "operations",
        common: include_str!("../../../migrations/0008_operations.sql"),
        sqlite: include_str!("../../../migrations/0008_operations.sqlite.sql"),
        postgres: include_str!("../../../migrations/0008_operations.postgres.sql"),
    },
    Migration {
        version: 9,
        name: "sso",
        common: include_str!("../../../migrations/0009_sso.sql"),
        sqlite: include_str!("../../../migrations/0009_sso.sqlite.sql"),
        postgres: include_str!("../../../migrations/0009_sso.postgres.sql"),
    },
    Migration {
        version: 10,
        name: "mail",
        common: include_str!("../../../migrations/0010_mail.sql"),
        sqlite: include_str!("../../../migrations/0010_mail.sqlite.sql"),
        postgres: include_str!("../../../migrations/0010_mail.postgres.sql"),
    },
];

/// An arbitrary constant naming the PostgreSQL advisory lock migrations take.
const MIGRATION_LOCK: i64 = 0x636f_6e73_6967_6e01;

impl Database {
    /// Connects to `url` (`sqlite://PATH` or `postgres://...`), creating a SQLite file if needed,
    /// and applies pending migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            bail!("unsupported database URL {url:?}: use sqlite://PATH or postgres://USER@HOST/DB")
        };
        let url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .with_context(|| format!("{} is not a valid database URL", redact(&url)))?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer. synchronous=NORMAL writes
                        // every commit to the WAL before returning, so a killed process loses
                        // nothing it acknowledged; only a power loss can drop the last commits.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .with_context(|| format!("cannot connect to the database at {}", redact(&url)))?;
        let db = Self { pool, backend };
        db.migrate().await?;
        db.optimize(true).await?;
        Ok(db)
    }

    /// Lets SQLite's query planner learn the tables' sizes again where they changed much
    /// (`PRAGMA optimize`; `at_open` also looks at tables no query has touched yet). Each table
    /// is sampled, not read whole (`analysis_limit`), so this stays quick on a large database.
    /// Without statistics SQLite may walk a poor index: the catalogue's vendor list took 64 ms
    /// at 10,000 listings. PostgreSQL's autovacuum keeps its own statistics.
    pub async fn optimize(&self, at_open: bool) -> Result<()> {
        if self.backend == Backend::Sqlite {
            let pragmas = if at_open {
                "PRAGMA analysis_limit = 1000; PRAGMA optimize = 0x10002;"
            } else {
                "PRAGMA analysis_limit = 1000; PRAGMA optimize;"
            };
            sqlx::raw_sql(pragmas)
                .execute(&self.pool)
                .await
                .context("cannot refresh SQLite's query statistics")?;
        }
        Ok(())
    }

    /// Applies pending migrations, each in its own transaction.
    async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await?;
        }
        let result = async {
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations \
                 (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            )
            .await?;
            for migration in MIGRATIONS {
                let applied =
                    sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
                        .bind(migration.version)
                        .fetch_optional(&mut *conn)
                        .await?;
                if applied.is_some() {
                    continue;
                }
                let specific = match self.backend {
                    Backend::Sqlite => migration.sqlite,
                    Backend::Postgres => migration.postgres,
                };
                let mut tx = conn.begin().await?;
                sqlx::raw_sql(migration.common).execute(&mut *tx).await?;
                sqlx::raw_sql(specific).execute(&mut *tx).await?;
                sqlx::query(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                )
                .bind(migration.version)
                .bind(migration.name)
                .bind(crate::server::base::now())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            anyhow::Ok(())
        }
        .await
        .context("cannot apply the database migrations");
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await?;
        }
        result
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }

    /// A setting, if set.
    pub async fn setting(&self, name: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    /// Sets a setting unless it is set already; returns the value now stored.
    pub async fn setting_init(&self, name: &str, value: &str) -> Result<String> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        self.setting(name)
            .await?
            .context("a setting just written is missing")
    }
}

/// The URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Whether an error is a unique-constraint violation (a duplicate slug, a lost race).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// `($1, ..., $cols), ($cols+1, ...)` for a multi-row INSERT of `rows` rows.
pub fn values_clause(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let params: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
