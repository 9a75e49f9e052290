//! The native push source (issue 21): one dedicated PostgreSQL connection that `LISTEN`s on
//! [`crate::schema::NOTIFY_CHANNEL`], where every commit that appends to the change log notifies (a statement
//! trigger, see [`crate::schema`]), and publishes each notification to the [`ChangeHub`].
//!
//! The connection is not from the pool and reconnects with a backoff when lost. While it is down the hub is not
//! live and waiters poll; when it comes (back) every waiter looks at the log once, so a commit made while it was
//! down is not missed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::hub::ChangeHub;
use crate::schema::NOTIFY_CHANNEL;

/// The connection's `application_name` (tests find it by this name to kill it).
pub const APPLICATION_NAME: &str = "oversync-listen";

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Keeps a `LISTEN` connection to `db` up for as long as the task runs.
pub async fn run(hub: Arc<ChangeHub>, mut db: tokio_postgres::Config) {
    db.application_name(APPLICATION_NAME);
    let mut backoff = BACKOFF_MIN;
    loop {
        match session(&hub, &db).await {
            Ok(()) => backoff = BACKOFF_MIN,
            Err(e) => tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                "the LISTEN connection failed; watchers poll until it is back"),
        }
        hub.set_live(false);
        metrics::gauge!(crate::observe::names::LISTEN).set(0.0);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection's life: connect, `LISTEN`, publish until the connection ends.
async fn session(hub: &ChangeHub, db: &tokio_postgres::Config) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = db.connect(NoTls).await?;
    let driver = async {
        let mut messages = futures_util::stream::poll_fn(|cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            if let AsyncMessage::Notification(n) = message? {
                match serde_json::from_str::<(String, String, i64)>(n.payload()) {
                    Ok((user, source, top)) => {
                        let kind = match source.as_str() {
                            oversync_protocol::wire::BACKEND_SOURCE => "backend",
                            "membership" => "membership",
                            _ => "device",
                        };
                        metrics::counter!(crate::observe::names::NOTICES, "kind" => kind).increment(1);
                        hub.publish(&user, &source, top);
                    }
                    Err(e) => tracing::warn!(error = %e, "unreadable change notification"),
                }
            }
        }
        Ok::<(), tokio_postgres::Error>(())
    };
    let listen = async {
        client.batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}")).await?;
        hub.set_live(true);
        metrics::gauge!(crate::observe::names::LISTEN).set(1.0);
        tracing::info!("listening for committed changes");
        // The connection lives until the driver sees it end.
        std::future::pending::<()>().await;
        Ok::<(), tokio_postgres::Error>(())
    };
    tokio::select! {
        r = driver => r,
        r = listen => r,
    }
}
