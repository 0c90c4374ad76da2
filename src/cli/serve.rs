//! `roster serve`, `roster worker` and `roster migrate`.

use clap::Args;

use crate::config::Settings;
use crate::startup::{wait_for_signal, Application, Hooks, Services};

#[derive(Debug, Default, Args)]
pub struct Opts {
    /// Serve HTTP only; leave the jobs to `roster worker` processes.
    #[arg(long)]
    pub no_workers: bool,
}

pub fn run(settings: Settings, opts: Opts) -> anyhow::Result<i32> {
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings, Hooks::default(), !opts.no_workers).await?;
        app.run_until_signalled().await?;
        Ok(0)
    })
}

pub fn run_worker(settings: Settings) -> anyhow::Result<i32> {
    actix_web::rt::System::new().block_on(async move {
        let services = Services::start(settings, Hooks::default(), true).await?;
        log::info!("worker {} ready", services.node);
        wait_for_signal().await;
        services.shutdown().await;
        Ok(0)
    })
}

pub fn migrate(settings: Settings) -> anyhow::Result<i32> {
    let pool = crate::db::connect(&settings.database_url, 1)?;
    let ran = crate::db::migrate(&pool)?;
    println!("{ran} migration(s) applied to {}", settings.database_url);
    Ok(0)
}
