//! Cancelling a job from the command line (`roster job cancel`, and Ctrl-C while
//! following one), shared by both.

use crate::config::Settings;
use crate::db::Pool;
use crate::domain::job::JobId;
use crate::events::JobEvent;
use crate::models::job::{self, CancelOutcome, Job};

/// Cancels job `id` through the model function `POST /api/jobs/{id}/cancel` uses, and
/// tells the other processes' subscribers: a queued job cancelled here has no worker to
/// announce its ending.
pub fn cancel(settings: &Settings, pool: &Pool, id: JobId) -> anyhow::Result<CancelOutcome> {
    // No owner filter: the command line acts with the database's own rights, as an admin.
    let outcome = job::request_cancel(&mut *pool.get()?, &id, None)?;
    if let CancelOutcome::Cancelled(changed) | CancelOutcome::Requested(changed) = &outcome {
        if let Err(e) = announce(settings, pool, changed) {
            log::warn!("job {id}: the cancel is recorded, but other processes were not told at once ({e:#})");
        }
    }
    Ok(outcome)
}

/// Publishes the job's new status to the other processes (with Redis; the in-process
/// broker has no other process to tell).
fn announce(settings: &Settings, pool: &Pool, changed: &Job) -> anyhow::Result<()> {
    if settings.broker_url.is_none() {
        return Ok(());
    }
    actix_web::rt::System::new().block_on(async {
        let (_, channel) = crate::broker::connect(settings, pool).await?;
        if let Some(link) = crate::startup::event_link(channel, "roster-cli") {
            link.publish_now(JobEvent::status(changed)).await?;
        }
        Ok(())
    })
}

/// What a cancel did, in a sentence.
pub fn describe(id: JobId, outcome: &CancelOutcome) -> String {
    match outcome {
        CancelOutcome::Cancelled(_) => format!("job {id} cancelled (it had not started)"),
        CancelOutcome::Requested(_) => {
            format!("cancel requested: job {id} is running and stops within about a second")
        }
        CancelOutcome::AlreadyFinished(job) => {
            format!(
                "job {id} has already ended ({}); nothing to cancel",
                job.status
            )
        }
        CancelOutcome::NotFound => format!("no job {id}"),
    }
}
