//! The embedded bus: an append-only log in its own SQLite file with one committed offset per
//! consumer group. A publish returns after its transaction is on disk (`synchronous=FULL`),
//! so a reading the meter acknowledged survives `kill -9`; unconsumed entries are picked up
//! by the sink after a restart. One partition: one active consumer per group.
//!
//! Publishes go through one writer thread that commits whatever is waiting in one
//! transaction (group commit: one fsync for many requests). At most [`MAX_WAITING`]
//! publishes wait for it; one more is refused at once with [`BusError::Overloaded`], so a
//! slow disk sheds load instead of piling blocked threads up behind its fsync.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;

use super::{Bus, BusError, Consumer};
use crate::domain::{Reading, from_epoch};
use crate::sqlite::{self as db, BlockingError, SqliteError};

impl From<BlockingError> for BusError {
    fn from(e: BlockingError) -> Self {
        BusError::Unavailable(e.to_string())
    }
}

impl From<SqliteError> for BusError {
    fn from(e: SqliteError) -> Self {
        match e {
            SqliteError::Schema(m) => BusError::Config(m),
            other => BusError::Unavailable(other.to_string()),
        }
    }
}

impl From<rusqlite::Error> for BusError {
    fn from(e: rusqlite::Error) -> Self {
        BusError::Unavailable(e.to_string())
    }
}

/// Publishes waiting for the writer, at most.
pub const MAX_WAITING: usize = 256;
/// Publishes one transaction takes, at most.
const GROUP: usize = 64;

struct Append {
    readings: Vec<Reading>,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

struct Shared {
    conn: Arc<Mutex<Connection>>,
    appended: Arc<Notify>,
    appends: std::sync::mpsc::SyncSender<Append>,
    active_groups: Mutex<HashSet<String>>,
}

#[derive(Clone)]
pub struct SqliteLog {
    shared: Arc<Shared>,
}

impl SqliteLog {
    pub fn open(path: &Path) -> Result<Self, BusError> {
        let conn = Arc::new(Mutex::new(db::open(path, iot_migrations::SQLITE_BUS)?));
        let appended = Arc::new(Notify::new());
        let (appends, waiting) = std::sync::mpsc::sync_channel(MAX_WAITING);
        let (c, n) = (conn.clone(), appended.clone());
        std::thread::Builder::new()
            .name("bus-log-writer".into())
            .spawn(move || write_appends(&c, &n, &waiting))
            .map_err(|e| BusError::Unavailable(format!("cannot start the log writer: {e}")))?;
        Ok(Self {
            shared: Arc::new(Shared {
                conn,
                appended,
                appends,
                active_groups: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// Makes `group` one the log keeps entries for from now on, before it first subscribes:
    /// the log is trimmed only up to what every known group has committed, so a group
    /// registered at start-up misses nothing another group commits before it subscribes.
    pub async fn register_group(&self, group: &str) -> Result<(), BusError> {
        let g = group.to_owned();
        db::blocking(self.shared.conn.clone(), move |c| {
            c.execute(
                "INSERT OR IGNORE INTO group_offsets (group_id, committed) VALUES (?1, 0)",
                [g],
            )?;
            Ok::<_, BusError>(())
        })
        .await
    }

    /// Entries not yet committed by the slowest group (the whole log if no group committed).
    pub async fn backlog(&self) -> Result<u64, BusError> {
        db::blocking(self.shared.conn.clone(), |c| {
            let n: i64 = c.query_row(
                "SELECT count(*) FROM log
                 WHERE offset > coalesce((SELECT min(committed) FROM group_offsets), 0)",
                [],
                |r| r.get(0),
            )?;
            Ok(n.max(0) as u64)
        })
        .await
    }
}

#[async_trait]
impl Bus for SqliteLog {
    async fn publish(&self, readings: &[Reading]) -> Result<(), BusError> {
        if readings.is_empty() {
            return Ok(());
        }
        let (done, written) = tokio::sync::oneshot::channel();
        let append = Append {
            readings: readings.to_vec(),
            done,
        };
        match self.shared.appends.try_send(append) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(_)) => return Err(BusError::Overloaded),
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                return Err(BusError::Unavailable("the log writer stopped".into()));
            }
        }
        match written.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BusError::Unavailable(e)),
            Err(_) => Err(BusError::Unavailable("the log writer stopped".into())),
        }
    }

    async fn subscribe(&self, group: &str) -> Result<Box<dyn Consumer>, BusError> {
        {
            let mut active = self
                .shared
                .active_groups
                .lock()
                .map_err(|_| BusError::Unavailable("group registry poisoned".into()))?;
            if !active.insert(group.to_owned()) {
                return Err(BusError::Config(format!(
                    "group `{group}` already has a consumer; the embedded log has one partition"
                )));
            }
        }
        let g = group.to_owned();
        let committed = db::blocking(self.shared.conn.clone(), move |c| {
            let v: Option<i64> = c
                .query_row(
                    "SELECT committed FROM group_offsets WHERE group_id = ?1",
                    [g],
                    |r| r.get(0),
                )
                .optional()?;
            Ok::<_, BusError>(v.unwrap_or(0))
        })
        .await;
        let committed = match committed {
            Ok(v) => v,
            Err(e) => {
                release(&self.shared, group);
                return Err(e);
            }
        };
        Ok(Box::new(LogConsumer {
            shared: self.shared.clone(),
            group: group.to_owned(),
            position: committed,
            committed,
        }))
    }

    async fn ping(&self) -> Result<(), BusError> {
        db::blocking(self.shared.conn.clone(), |c| {
            c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
            Ok::<_, BusError>(())
        })
        .await
    }
}

/// The writer thread: takes what is waiting (up to [`GROUP`] publishes), appends it in one
/// transaction, answers each publish, wakes the consumers. Ends when the log is dropped.
fn write_appends(
    conn: &Mutex<Connection>,
    appended: &Notify,
    waiting: &std::sync::mpsc::Receiver<Append>,
) {
    while let Ok(first) = waiting.recv() {
        let mut group = vec![first];
        while group.len() < GROUP {
            match waiting.try_recv() {
                Ok(a) => group.push(a),
                Err(_) => break,
            }
        }
        let result = append_all(conn, &group).map_err(|e| e.to_string());
        for a in group {
            // A publisher that stopped waiting (its request timed out) needs no answer.
            let _ = a.done.send(result.clone());
        }
        appended.notify_waiters();
    }
}

fn append_all(conn: &Mutex<Connection>, group: &[Append]) -> Result<(), BusError> {
    let mut c = conn
        .lock()
        .map_err(|_| BusError::Unavailable("log connection poisoned".into()))?;
    let tx = c.transaction()?;
    {
        let mut st = tx.prepare_cached(
            "INSERT INTO log (meter_id, ts, kwh, interval_s) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for r in group.iter().flat_map(|a| &a.readings) {
            st.execute(params![r.meter_id, r.ts.timestamp(), r.kwh, r.interval_s])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn release(shared: &Shared, group: &str) {
    if let Ok(mut active) = shared.active_groups.lock() {
        active.remove(group);
    }
}

struct LogConsumer {
    shared: Arc<Shared>,
    group: String,
    /// Offset of the last entry handed out by `poll`.
    position: i64,
    committed: i64,
}

impl Drop for LogConsumer {
    fn drop(&mut self) {
        release(&self.shared, &self.group);
    }
}

impl LogConsumer {
    async fn fetch(&self, max: usize) -> Result<Vec<(i64, Reading)>, BusError> {
        let after = self.position;
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        db::blocking(self.shared.conn.clone(), move |c| {
            let mut st = c.prepare_cached(
                "SELECT offset, meter_id, ts, kwh, interval_s FROM log
                 WHERE offset > ?1 ORDER BY offset LIMIT ?2",
            )?;
            let rows = st.query_map(params![after, max], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    Reading {
                        meter_id: r.get(1)?,
                        ts: from_epoch(r.get(2)?),
                        kwh: r.get(3)?,
                        interval_s: r.get(4)?,
                    },
                ))
            })?;
            Ok::<_, BusError>(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}

#[async_trait]
impl Consumer for LogConsumer {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Reading>, BusError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        // Register interest before looking, so an append between the look and the wait
        // still wakes us.
        let appended = self.shared.appended.notified();
        tokio::pin!(appended);
        appended.as_mut().enable();
        let mut batch = self.fetch(max).await?;
        if batch.is_empty() {
            let _ = tokio::time::timeout(wait, appended).await;
            batch = self.fetch(max).await?;
        }
        if let Some((last, _)) = batch.last() {
            self.position = *last;
        }
        Ok(batch.into_iter().map(|(_, r)| r).collect())
    }

    async fn commit(&mut self) -> Result<(), BusError> {
        if self.position == self.committed {
            return Ok(());
        }
        let (group, position) = (self.group.clone(), self.position);
        db::blocking(self.shared.conn.clone(), move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO group_offsets (group_id, committed) VALUES (?1, ?2)
                 ON CONFLICT (group_id) DO UPDATE SET committed = excluded.committed",
                params![group, position],
            )?;
            // What every group has committed is never read again: trim it.
            tx.execute(
                "DELETE FROM log WHERE offset <= (SELECT min(committed) FROM group_offsets)",
                [],
            )?;
            tx.commit()?;
            Ok::<_, BusError>(())
        })
        .await?;
        self.committed = position;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn reading(i: i64) -> Reading {
        Reading {
            meter_id: crate::domain::MeterId::parse(format!("m{}", i % 3))
                .unwrap_or_else(|e| panic!("{e}")),
            ts: Utc
                .timestamp_opt(1_790_000_000 - 1_790_000_000 % 1800 + i * 1800, 0)
                .single()
                .unwrap_or_default(),
            kwh: 0.25,
            interval_s: 1800,
        }
    }

    fn open(dir: &tempfile::TempDir) -> SqliteLog {
        SqliteLog::open(&dir.path().join("bus.sqlite")).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn a_stalled_disk_sheds_publishes_past_the_queue_and_keeps_the_queued_ones()
    -> Result<(), BusError> {
        let dir = tempfile::tempdir().map_err(|e| BusError::Config(e.to_string()))?;
        let bus = open(&dir);
        // The writer cannot commit while another thread holds the connection: a disk stuck
        // in fsync, until the test lets go.
        let (stall, (locked_tx, locked), (release, released)) = (
            bus.shared.conn.clone(),
            std::sync::mpsc::channel(),
            std::sync::mpsc::channel::<()>(),
        );
        let holder = std::thread::spawn(move || {
            let _held = stall.lock();
            let _ = locked_tx.send(());
            let _ = released.recv();
        });
        locked.recv().map_err(|e| BusError::Config(e.to_string()))?;
        let readings: Vec<[Reading; 1]> = (0..(MAX_WAITING as i64 + 40))
            .map(|i| [reading(i)])
            .collect();
        let (mut waiting, mut shed) = (Vec::new(), 0);
        for one in &readings {
            let mut publish = bus.publish(one);
            // One poll queues the readings or sheds them; it cannot finish while stalled.
            match tokio::time::timeout(Duration::ZERO, &mut publish).await {
                Ok(Err(BusError::Overloaded)) => shed += 1,
                Ok(other) => panic!("a publish finished while the disk stalled: {other:?}"),
                Err(_) => waiting.push(publish),
            }
        }
        let _ = release.send(());
        let _ = holder.join();
        for publish in waiting.iter_mut() {
            publish.await?;
        }
        // The queue holds MAX_WAITING; the writer took the first publishes into its group
        // commit before it stalled (how many depends on when its thread woke); the rest are
        // shed.
        assert!(waiting.len() >= MAX_WAITING, "{} waited", waiting.len());
        assert!((20..=40).contains(&shed), "{shed} publishes shed");
        assert_eq!(bus.backlog().await?, waiting.len() as u64);
        Ok(())
    }

    #[tokio::test]
    async fn uncommitted_entries_are_redelivered_committed_ones_are_not() -> Result<(), BusError> {
        let dir = tempfile::tempdir().map_err(|e| BusError::Config(e.to_string()))?;
        let bus = open(&dir);
        let all: Vec<Reading> = (0..10).map(reading).collect();
        bus.publish(&all).await?;
        let mut c = bus.subscribe("sink").await?;
        let first = c.poll(4, Duration::ZERO).await?;
        assert_eq!(first, all[..4]);
        c.commit().await?;
        let second = c.poll(4, Duration::ZERO).await?;
        assert_eq!(second, all[4..8]);
        drop(c);
        // Reopen the file as a restarted process would: 4..8 were polled, never committed.
        let bus = open(&dir);
        let mut c = bus.subscribe("sink").await?;
        let again = c.poll(100, Duration::ZERO).await?;
        assert_eq!(again, all[4..]);
        c.commit().await?;
        assert_eq!(bus.backlog().await?, 0);
        assert!(c.poll(100, Duration::from_millis(10)).await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_poll_hands_out_nothing_and_skips_nothing() -> Result<(), BusError> {
        let dir = tempfile::tempdir().map_err(|e| BusError::Config(e.to_string()))?;
        let bus = open(&dir);
        let all: Vec<Reading> = (0..10).map(reading).collect();
        bus.publish(&all).await?;
        let mut c = bus.subscribe("sink").await?;
        assert_eq!(c.poll(4, Duration::ZERO).await?, all[..4]);
        // Another process breaks the file under the log (the table is gone), then mends it.
        let other = Connection::open(dir.path().join("bus.sqlite"))?;
        other.execute_batch("ALTER TABLE log RENAME TO log_away")?;
        assert!(c.poll(4, Duration::ZERO).await.is_err());
        assert!(c.poll(4, Duration::ZERO).await.is_err());
        other.execute_batch("ALTER TABLE log_away RENAME TO log")?;
        assert_eq!(c.poll(100, Duration::ZERO).await?, all[4..]);
        Ok(())
    }

    #[tokio::test]
    async fn a_waiting_poll_wakes_on_publish() -> Result<(), BusError> {
        let dir = tempfile::tempdir().map_err(|e| BusError::Config(e.to_string()))?;
        let bus = open(&dir);
        let mut c = bus.subscribe("sink").await?;
        let publisher = bus.clone();
        let t = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            publisher.publish(&[reading(1)]).await
        });
        let got = c.poll(10, Duration::from_secs(10)).await?;
        assert_eq!(got, vec![reading(1)]);
        t.await
            .map_err(|e| BusError::Unavailable(e.to_string()))??;
        Ok(())
    }

    #[tokio::test]
    async fn one_consumer_per_group() -> Result<(), BusError> {
        let dir = tempfile::tempdir().map_err(|e| BusError::Config(e.to_string()))?;
        let bus = open(&dir);
        let c = bus.subscribe("sink").await?;
        assert!(bus.subscribe("sink").await.is_err());
        assert!(bus.subscribe("other").await.is_ok());
        drop(c);
        assert!(bus.subscribe("sink").await.is_ok());
        Ok(())
    }
}
