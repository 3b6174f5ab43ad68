//! The pool's filler: beside the tests, it drops the databases they finished with and tops the
//! pool up again, so that a test waits only for its claim.
//!
//! `cargo xtask db-test` runs one (`testdb serve`) for the length of the suite. While a filler of
//! a template is alive (registered in `pool_fillers` under its owner token, see `lease`), a
//! [`crate::TestDb`] of that template is handed over when dropped: one statement lists it in
//! `finished_databases` and notifies the filler, instead of `DROP DATABASE` and a new clone on the
//! test's path. Without a live filler (plain `cargo test`), the drop does both itself, as before.

use std::future::Future;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::admin::Admin;
use crate::errors::TestDbError;
use crate::provision::PoolSlot;

/// How often the filler looks without being woken: a notification sent while it was busy
/// is not lost, but one sent by a test whose connection broke might be.
const RECHECK: Duration = Duration::from_secs(1);

/// What a filler did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FillerReport {
    /// Finished test databases it dropped.
    pub dropped: usize,
    /// Clones it made to keep the pool full.
    pub cloned: usize,
}

/// A filler serving one template's pool, from [`crate::TestTemplate::start_filler`] until
/// [`PoolFiller::stop`].
pub struct PoolFiller {
    stop: oneshot::Sender<()>,
    serving: JoinHandle<Result<FillerReport, TestDbError>>,
}

impl PoolFiller {
    /// Starts `serving`, which says on `registered` once tests hand their databases to it, and
    /// returns when it has (or has failed).
    pub(crate) async fn start(
        serving: impl FnOnce(
            oneshot::Receiver<()>,
            oneshot::Sender<()>,
        ) -> JoinHandle<Result<FillerReport, TestDbError>>,
    ) -> Result<PoolFiller, TestDbError> {
        let (stop, stopped) = oneshot::channel();
        let (registered, is_registered) = oneshot::channel();
        let serving = serving(stopped, registered);
        match is_registered.await {
            Ok(()) => Ok(PoolFiller { stop, serving }),
            // It ended before registering: its error says why.
            Err(_) => {
                Err(Self::outcome(serving)
                    .await
                    .err()
                    .unwrap_or_else(|| TestDbError::Failed {
                        action: "starting the pool's filler".to_owned(),
                        cause: "it ended before it was registered".to_owned(),
                        remedy: "check the server is healthy",
                    }))
            }
        }
    }

    /// Stops it once it has dropped what the tests finished with; returns what it did.
    pub async fn stop(self) -> Result<FillerReport, TestDbError> {
        let _ = self.stop.send(());
        Self::outcome(self.serving).await
    }

    async fn outcome(
        serving: JoinHandle<Result<FillerReport, TestDbError>>,
    ) -> Result<FillerReport, TestDbError> {
        match serving.await {
            Ok(outcome) => outcome,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("db_testing's filler ended unexpectedly: {error}"),
        }
    }
}

/// Serves `slot`'s pool until `until` completes, then drops what is finished once more. Says
/// on `registered` when it is registered, so that drops are handed to it from then on.
pub(crate) async fn serve(
    admin: &Admin,
    slot: &PoolSlot,
    until: impl Future<Output = ()>,
    registered: oneshot::Sender<()>,
) -> Result<FillerReport, TestDbError> {
    let owner = admin.lease.owner();
    let mut listener = slot.bookkeeping.listen_for_finished().await?;
    slot.bookkeeping
        .register_filler(&slot.template, owner)
        .await?;
    let _ = registered.send(());
    let mut report = FillerReport::default();
    let served = async {
        tokio::pin!(until);
        loop {
            one_pass(admin, slot, &mut report).await?;
            tokio::select! {
                () = &mut until => return Ok::<(), TestDbError>(()),
                // An error here (a broken connection) is not fatal: the recheck still runs.
                _ = listener.recv() => {}
                () = tokio::time::sleep(RECHECK) => {}
            }
        }
    }
    .await;
    // Unregistered first, so that tests finishing from now on drop their own databases.
    let unregistered = slot
        .bookkeeping
        .unregister_filler(&slot.template, owner)
        .await;
    served?;
    unregistered?;
    report.dropped += drop_finished(admin, slot).await?;
    Ok(report)
}

async fn one_pass(
    admin: &Admin,
    slot: &PoolSlot,
    report: &mut FillerReport,
) -> Result<(), TestDbError> {
    report.dropped += drop_finished(admin, slot).await?;
    report.cloned += slot.fill(admin).await?;
    Ok(())
}

async fn drop_finished(admin: &Admin, slot: &PoolSlot) -> Result<usize, TestDbError> {
    let finished = slot.bookkeeping.take_finished().await?;
    for name in &finished {
        admin.drop_database_force(name).await?;
    }
    Ok(finished.len())
}
