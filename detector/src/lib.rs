//! The detector role.
//!
//! Anomaly detection over stack weights is not built yet: this role starts, opens the tables
//! like the others, and waits for shutdown, so deployments can already run it as its own
//! process. The statistics, baselines and the `anomalies` table land with the detector issue.

use std::sync::Arc;

use stackdrift_storage::Store;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Runs the detector until `shutdown`.
pub async fn run(store: Arc<Store>, shutdown: CancellationToken) {
    let _ = store;
    warn!("detector: anomaly detection is not implemented in this version; the role only idles");
    shutdown.cancelled().await;
    info!("detector stopped");
}
