//! Process shutdown: the first SIGINT or SIGTERM.

use std::future::Future;

/// Resolves on the first SIGINT or SIGTERM. The handlers are installed when
/// this is called, so a signal that comes while the services start is not
/// lost (and does not kill the process unannounced).
pub fn signals() -> anyhow::Result<impl Future<Output = ()> + Send> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            tracing::info!("shutdown requested");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutdown requested");
        })
    }
}
