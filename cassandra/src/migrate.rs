//! The CQL migrator: applies the numbered files of `migrations/cql` in order, records each in
//! `schema_migrations` with its checksum, and waits for schema agreement after every change.
//!
//! Several containers may run it at once: each creates the keyspace and the migrator's own
//! tables with `IF NOT EXISTS`, then takes a lock row with a lightweight transaction
//! (`IF NOT EXISTS` at SERIAL, so two datacenters cannot both win; TTL 300 s so a dead
//! holder's lock expires, renewed every minute while a migration runs) before it reads what
//! is applied and applies the rest; the others wait for the lock and then find nothing to do.
//! Schema changes all go to one node, the same from every migrator, so they cannot race into
//! a disagreement. It refuses to apply anything when an applied file's text changed, or when
//! the keyspace holds versions this binary does not know.

use std::time::{Duration, Instant};

use chrono::Utc;
use iot_migrations::{Migration, checksum};
use scylla::frame::types::SerialConsistency;
use scylla::statement::unprepared::Statement;

use crate::client::{Client, ClientError, rows};
use crate::layout::{DEFAULT_REGION_SHARDS, MAX_REGION_SHARDS, REGION_SHARDS};
use crate::lease::{MIGRATION_LOCK, lwt_applied};
use crate::statements::{
    BOOTSTRAP, BOOTSTRAPPED, MIGRATION_RECORD, MIGRATIONS_APPLIED, SETTING_GET, SETTING_PUT,
};
use iot_common::store::Lease;

const LOCK_NAME: &str = "migrate";
/// A dead holder's lock expires after this.
const LOCK_TTL: Duration = Duration::from_secs(300);
/// How often the holder renews its lock.
const LOCK_RENEWAL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "migration {version} ({name}) was edited after it was applied: recorded checksum {recorded}, file now {actual}. \
         Applied files never change; put the change in a new numbered file."
    )]
    Edited {
        version: u32,
        name: String,
        recorded: String,
        actual: String,
    },
    #[error(
        "the keyspace has migration {0}, which this binary does not know: it was migrated by a newer version"
    )]
    Unknown(u32),
    #[error("migration {version} ({name}) is not applied: run `migrate` first")]
    Pending { version: u32, name: String },
    #[error("another migrator has held the lock for {0:?}; giving up")]
    LockTimeout(Duration),
    #[error("the migration lock was lost while migrating (another migrator holds it now)")]
    LockLost,
    #[error(
        "IOT_CASSANDRA_REGION_SHARDS is {asked} but the keyspace files readings in {stored} shards, fixed when it was created; unset it or set it to {stored}"
    )]
    Shards { asked: u32, stored: u32 },
    #[error("migration {version} ({name}) failed: {source}")]
    Apply {
        version: u32,
        name: String,
        source: ClientError,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// What the keyspace records of one applied file.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub version: u32,
    pub name: String,
    pub checksum: String,
}

/// The files still to apply, in order, after checking that every applied one is unchanged
/// and known. Pure, so its rules are tested without a cluster.
pub fn plan<'a>(
    files: &'a [Migration],
    applied: &[Applied],
) -> Result<Vec<&'a Migration>, MigrateError> {
    for a in applied {
        let Some(file) = files.iter().find(|f| f.version == a.version) else {
            return Err(MigrateError::Unknown(a.version));
        };
        let actual = checksum(file.sql);
        if actual != a.checksum {
            return Err(MigrateError::Edited {
                version: a.version,
                name: a.name.clone(),
                recorded: a.checksum.clone(),
                actual,
            });
        }
    }
    Ok(files
        .iter()
        .filter(|f| !applied.iter().any(|a| a.version == f.version))
        .collect())
}

/// A file's text with `${keyspace}` and `${replication}` filled in.
pub fn render(sql: &str, keyspace: &str, replication: &str) -> String {
    sql.replace("${keyspace}", keyspace)
        .replace("${replication}", replication)
}

/// The statements of a file: split at `;` outside string literals, comments dropped.
pub fn split_statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            current.push(c);
            if c == '\'' {
                in_string = false;
            }
        } else if c == '\'' {
            in_string = true;
            current.push(c);
        } else if c == '-' && chars.peek() == Some(&'-') {
            for c in chars.by_ref() {
                if c == '\n' {
                    current.push('\n');
                    break;
                }
            }
        } else if c == ';' {
            push_statement(&mut out, &mut current);
        } else {
            current.push(c);
        }
    }
    push_statement(&mut out, &mut current);
    out
}

fn push_statement(out: &mut Vec<String>, current: &mut String) {
    let s = current.trim();
    if !s.is_empty() {
        out.push(s.to_owned());
    }
    current.clear();
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    pub applied: Vec<(u32, String)>,
    pub already: usize,
}

/// Applies pending files to `keyspace`, creating it with `replication` if it is missing, and
/// fixes its shards per region-day (`region_shards`, default 64) the first time.
pub async fn migrate(
    client: &Client,
    files: &[Migration],
    keyspace: &str,
    replication: &str,
    region_shards: Option<u32>,
    lock_wait: Duration,
) -> Result<Report, MigrateError> {
    // The keyspace statement is idempotent and must run before anything can be recorded.
    if let Some(first) = files.first() {
        for st in split_statements(&render(first.sql, keyspace, replication)) {
            if st.to_lowercase().starts_with("create keyspace") {
                ddl(client, &st)
                    .await
                    .map_err(|source| MigrateError::Apply {
                        version: first.version,
                        name: first.name.into(),
                        source,
                    })?;
            }
        }
    }
    client.use_keyspace(keyspace).await?;
    // The one step the lock cannot guard (the lock lives in these tables). On one node,
    // concurrent `IF NOT EXISTS` creations are serialised; across nodes, creating only what
    // is missing, after a random pause, keeps racing creators apart.
    if !bootstrapped(client, keyspace).await? {
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 2_000)).await;
        // Another migrator may have made them during the pause.
        if !bootstrapped(client, keyspace).await? {
            for st in BOOTSTRAP {
                ddl(client, st).await?;
            }
        }
    }
    tables_answer(client).await?;
    let owner = format!(
        "{}-{}-{:08x}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
        std::process::id(),
        rand::random::<u32>()
    );
    take_lock(client, &owner, lock_wait).await?;
    let work = async {
        let report = apply_pending(client, files, keyspace, replication, &owner).await?;
        // Only a keyspace with the settings table (migration 6) has shards to fix.
        if tables(client, keyspace)
            .await?
            .iter()
            .any(|t| t == "store_settings")
        {
            fix_region_shards(client, region_shards).await?;
        }
        Ok(report)
    };
    let result = tokio::select! {
        r = work => r,
        lost = keep_lock(client, &owner) => Err(lost),
    };
    if let Err(e) = MIGRATION_LOCK.release(client, LOCK_NAME, &owner).await {
        tracing::warn!(error = %e, "could not release the migration lock; it expires in 300 s");
    }
    result
}

/// Checks, without changing anything, that every file is applied and unchanged: what a
/// service asks before it serves.
pub async fn verify(client: &Client, files: &[Migration]) -> Result<(), MigrateError> {
    let applied = applied(client).await?;
    if let Some(pending) = plan(files, &applied)?.first() {
        return Err(MigrateError::Pending {
            version: pending.version,
            name: pending.name.into(),
        });
    }
    Ok(())
}

async fn apply_pending(
    client: &Client,
    files: &[Migration],
    keyspace: &str,
    replication: &str,
    owner: &str,
) -> Result<Report, MigrateError> {
    let applied = applied(client).await?;
    let pending = plan(files, &applied)?;
    let mut report = Report {
        applied: Vec::new(),
        already: files.len() - pending.len(),
    };
    for file in pending {
        tracing::info!(
            version = file.version,
            name = file.name,
            "applying migration"
        );
        for st in split_statements(&render(file.sql, keyspace, replication)) {
            ddl(client, &st)
                .await
                .map_err(|source| MigrateError::Apply {
                    version: file.version,
                    name: file.name.into(),
                    source,
                })?;
        }
        let version = i32::try_from(file.version).unwrap_or(i32::MAX);
        let record = (version, file.name, checksum(file.sql), Utc::now(), owner);
        client
            .query("record migration", MIGRATION_RECORD, record)
            .await?;
        report.applied.push((file.version, file.name.to_owned()));
    }
    Ok(report)
}

async fn applied(client: &Client) -> Result<Vec<Applied>, MigrateError> {
    let result = client
        .query("read migrations", MIGRATIONS_APPLIED, ())
        .await?;
    let mut out: Vec<Applied> = rows::<(i32, Option<String>, Option<String>)>(result)?
        .into_iter()
        .map(|(version, name, sum)| Applied {
            version: u32::try_from(version).unwrap_or(0),
            name: name.unwrap_or_default(),
            checksum: sum.unwrap_or_default(),
        })
        .collect();
    out.sort_by_key(|a| a.version);
    Ok(out)
}

/// The tables of `keyspace`.
async fn tables(client: &Client, keyspace: &str) -> Result<Vec<String>, ClientError> {
    let result = client
        .query("read schema", BOOTSTRAPPED, (keyspace,))
        .await?;
    Ok(rows::<(String,)>(result)?
        .into_iter()
        .map(|r| r.0)
        .collect())
}

/// Waits until the migrator's own tables answer queries. On Cassandra 5.0, with three
/// migrators at once on a new keyspace, one saw both tables listed in `system_schema` and
/// was still told "table schema_migration_lock does not exist" by its next statement: the
/// listing can run ahead of the node serving a table another session just created.
async fn tables_answer(client: &Client) -> Result<(), MigrateError> {
    let start = Instant::now();
    loop {
        let answered = match MIGRATION_LOCK.holder(client, LOCK_NAME).await {
            Ok(_) => applied(client).await.map(drop),
            Err(e) => Err(e.into()),
        };
        match answered {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() < Duration::from_secs(30) => {
                tracing::info!(error = %e, "the migrator's tables do not answer yet; waiting");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether the migrator's own tables exist already.
async fn bootstrapped(client: &Client, keyspace: &str) -> Result<bool, ClientError> {
    let names = tables(client, keyspace).await?;
    Ok(["schema_migrations", "schema_migration_lock"]
        .iter()
        .all(|t| names.iter().any(|n| n == t)))
}

/// A schema change, on the one node every migrator sends them to, then a wait until every
/// node has it, so the next statement (or the next container) sees it.
async fn ddl(client: &Client, statement: &str) -> Result<(), ClientError> {
    let mut st = Statement::new(statement);
    st.set_execution_profile_handle(client.one_node_profile());
    client.query_with("schema change", st, ()).await?;
    client
        .session
        .await_schema_agreement()
        .await
        .map_err(|e| ClientError::Agreement(e.to_string()))?;
    Ok(())
}

/// A lightweight transaction at SERIAL: Paxos across every datacenter, as the lock's.
fn serial(text: &str) -> Statement {
    let mut st = Statement::new(text);
    st.set_serial_consistency(Some(SerialConsistency::Serial));
    st
}

async fn take_lock(client: &Client, owner: &str, wait: Duration) -> Result<(), MigrateError> {
    let start = Instant::now();
    let mut logged = false;
    loop {
        let lease = MIGRATION_LOCK
            .acquire(client, LOCK_NAME, owner, LOCK_TTL)
            .await?;
        if lease == Lease::Acquired {
            return Ok(());
        }
        if start.elapsed() >= wait {
            return Err(MigrateError::LockTimeout(wait));
        }
        if !logged {
            tracing::info!("another migrator holds the lock; waiting");
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(500 + rand::random::<u64>() % 500)).await;
    }
}

/// Renews the lock every minute while a migration runs; ends only if the lock was lost (a
/// renewal that failed to reach the cluster is tried again at the next minute, well inside
/// the TTL).
async fn keep_lock(client: &Client, owner: &str) -> MigrateError {
    loop {
        tokio::time::sleep(LOCK_RENEWAL).await;
        match MIGRATION_LOCK
            .renew(client, LOCK_NAME, owner, LOCK_TTL)
            .await
        {
            Ok(true) => tracing::debug!("migration lock renewed"),
            Ok(false) => return MigrateError::LockLost,
            Err(e) => {
                tracing::warn!(error = %e, "could not renew the migration lock; trying again")
            }
        }
    }
}

/// Records the keyspace's shards per region-day the first time (`IF NOT EXISTS`), and
/// refuses a different value asked for later: rows already filed would not be found.
async fn fix_region_shards(client: &Client, asked: Option<u32>) -> Result<u32, MigrateError> {
    let value = asked
        .unwrap_or(DEFAULT_REGION_SHARDS)
        .clamp(1, MAX_REGION_SHARDS);
    let name = REGION_SHARDS;
    let put = client
        .query_with(
            "fix region shards",
            serial(SETTING_PUT),
            (name, i32::try_from(value).unwrap_or(i32::MAX)),
        )
        .await?;
    if lwt_applied(put)? {
        tracing::info!(region_shards = value, "keyspace's region shards fixed");
        return Ok(value);
    }
    let result = client.query("read settings", SETTING_GET, (name,)).await?;
    let stored = rows::<(Option<i32>,)>(result)?
        .into_iter()
        .next()
        .and_then(|r| r.0)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(value);
    match asked {
        Some(asked) if asked != stored => Err(MigrateError::Shards { asked, stored }),
        _ => Ok(stored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILES: &[Migration] = &[
        Migration {
            version: 1,
            name: "keyspace",
            sql: "CREATE KEYSPACE IF NOT EXISTS ${keyspace} WITH replication = ${replication};",
        },
        Migration {
            version: 2,
            name: "tables",
            sql: "CREATE TABLE IF NOT EXISTS a (k int PRIMARY KEY); -- one\nCREATE TABLE IF NOT EXISTS b (k int PRIMARY KEY, s text);",
        },
    ];

    fn record(m: &Migration) -> Applied {
        Applied {
            version: m.version,
            name: m.name.into(),
            checksum: checksum(m.sql),
        }
    }

    #[test]
    fn a_fresh_keyspace_gets_every_file_in_order() {
        let p = plan(FILES, &[]).unwrap();
        assert_eq!(p.iter().map(|m| m.version).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn a_second_run_applies_nothing() {
        let applied: Vec<Applied> = FILES.iter().map(record).collect();
        assert!(plan(FILES, &applied).unwrap().is_empty());
        let p = plan(FILES, &applied[..1]).unwrap();
        assert_eq!(p.iter().map(|m| m.version).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn an_edited_applied_file_is_refused_before_anything_runs() {
        let mut applied: Vec<Applied> = FILES.iter().map(record).collect();
        applied[1].checksum = checksum("CREATE TABLE a (k int PRIMARY KEY);");
        match plan(FILES, &applied) {
            Err(MigrateError::Edited { version: 2, .. }) => {}
            other => panic!("expected Edited, got {other:?}"),
        }
    }

    #[test]
    fn a_keyspace_migrated_by_a_newer_binary_is_refused() {
        let mut applied: Vec<Applied> = FILES.iter().map(record).collect();
        applied.push(Applied {
            version: 3,
            name: "future".into(),
            checksum: "0".into(),
        });
        assert!(matches!(
            plan(FILES, &applied),
            Err(MigrateError::Unknown(3))
        ));
    }

    #[test]
    fn statements_split_outside_strings_and_comments() {
        let text = "-- a comment; with a semicolon\nCREATE TABLE t (k text) WITH comment = 'a;b';\n\nINSERT INTO t (k) VALUES ('x');";
        assert_eq!(
            split_statements(text),
            vec![
                "CREATE TABLE t (k text) WITH comment = 'a;b'",
                "INSERT INTO t (k) VALUES ('x')"
            ]
        );
        assert_eq!(split_statements(FILES[1].sql).len(), 2);
    }

    #[test]
    fn placeholders_are_filled_and_the_checksum_is_of_the_file() {
        let r = render(
            FILES[0].sql,
            "iot_demo",
            "{'class': 'SimpleStrategy', 'replication_factor': 1}",
        );
        assert_eq!(
            r,
            "CREATE KEYSPACE IF NOT EXISTS iot_demo WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};"
        );
        for m in iot_migrations::CQL {
            assert!(!split_statements(&render(m.sql, "k", "{}")).is_empty());
        }
    }
}
