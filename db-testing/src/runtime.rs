//! The admin runtime: creating and dropping databases runs on a private runtime owned by this
//! crate, because each `#[tokio::test]` has its own short-lived runtime and a connection pool
//! must not outlive the runtime it was created on.

use std::future::Future;
use std::sync::{OnceLock, mpsc};
use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use tokio::runtime::Runtime;

/// How long any connection, the pools' and the locks' sessions alike, may take to open.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

/// A multi-threaded runtime that never shuts down, so the admin pool outlives every test's runtime
/// and `Drop` can wait for it without blocking the runtime it is called from.
fn admin_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("db-testing-admin")
            .enable_all()
            .build()
            .expect("the db_testing admin runtime starts (threads and timers are available)")
    })
}

/// Runs `work` on the admin runtime and waits for it from any runtime; a panic in it is resumed here.
pub(crate) async fn on_admin_runtime<T, F>(work: F) -> T
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    match admin_runtime().spawn(work).await {
        Ok(output) => output,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => panic!("db_testing admin task ended unexpectedly: {error}"),
    }
}

/// Starts `work` on the admin runtime, to run while the caller goes on.
pub(crate) fn spawn_on_admin_runtime<T, F>(work: F) -> tokio::task::JoinHandle<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    admin_runtime().spawn(work)
}

/// Runs `work` on the admin runtime and blocks this thread for it, as `Drop` must;
/// `None` when `work` did not finish within `timeout`.
pub(crate) fn block_on_admin_runtime<T, F>(work: F, timeout: Duration) -> Option<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (sender, receiver) = mpsc::channel();
    admin_runtime().spawn(async move {
        let _ = sender.send(work.await);
    });
    receiver.recv_timeout(timeout).ok()
}

/// A pool of at most `max_connections` to `url`, opening none until asked, statements not logged.
pub(crate) async fn connect_pool(
    url: &str,
    max_connections: u32,
) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(0)
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(CONNECT_TIMEOUT)
        .sqlx_logging(false);
    Database::connect(options).await
}
