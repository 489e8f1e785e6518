//! Image garbage collection by disk use, as the kubelet does it: when the filesystem holding
//! the image store is more than 85 % full, the least recently used images that no container
//! uses are removed until it is at most 80 % full.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::{annotations, Shared};

/// Above this share of the filesystem in use, images are collected.
pub const HIGH_PERCENT: u64 = 85;
/// Collection stops once use is down to this share.
pub const LOW_PERCENT: u64 = 80;
/// How often disk use is checked.
const PERIOD: Duration = Duration::from_secs(300);

/// How many bytes the store may keep: `None` when the filesystem is below the high mark.
pub fn store_budget(fs_size: u64, fs_used: u64, store_used: u64) -> Option<u64> {
    if fs_size == 0 || fs_used * 100 < fs_size * HIGH_PERCENT {
        return None;
    }
    let to_free = fs_used.saturating_sub(fs_size / 100 * LOW_PERCENT);
    Some(store_used.saturating_sub(to_free))
}

/// Checks disk use every few minutes and collects images when it is too high.
pub async fn run(shared: Arc<Shared>) {
    let mut ticker = tokio::time::interval(PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let s = shared.clone();
        let done = tokio::task::spawn_blocking(move || collect(&s)).await;
        match done {
            Ok(Ok(Some(report))) => tracing::info!(
                removed = ?report.removed,
                freed = report.usage_before.saturating_sub(report.usage_after),
                "image garbage collection"
            ),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!("image garbage collection: {e}"),
            Err(e) => tracing::warn!("image garbage collection task: {e}"),
        }
    }
}

fn collect(shared: &Shared) -> Result<Option<crate::image::GcReport>, String> {
    let root = shared.images.root().to_path_buf();
    let fs = nix::sys::statvfs::statvfs(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let block = fs.fragment_size() as u64;
    let size = fs.blocks() as u64 * block;
    let used = size.saturating_sub(fs.blocks_free() as u64 * block);
    let store_used = shared.images.disk_usage().map_err(|e| e.to_string())?;
    let Some(budget) = store_budget(size, used, store_used) else {
        return Ok(None);
    };
    // Images some container on this node was made from stay.
    let mut keep = HashSet::new();
    for id in shared.runtime.list().map_err(|e| e.to_string())? {
        if let Some(image) = shared
            .runtime
            .annotations(&id)
            .ok()
            .and_then(|a| a.get(annotations::IMAGE_ID).cloned())
        {
            let (reference, digest) = image.split_once('@').unwrap_or((image.as_str(), ""));
            keep.insert(reference.to_string());
            keep.insert(digest.to_string());
        }
    }
    shared
        .images
        .garbage_collect(budget, &keep)
        .map(Some)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_only_above_the_high_mark_down_to_the_low_one() {
        const G: u64 = 1 << 30;
        assert_eq!(store_budget(100 * G, 84 * G, 10 * G), None);
        // 90 % used: 10 % of the disk must go, so the store keeps 30 - 10 GiB.
        assert_eq!(store_budget(100 * G, 90 * G, 30 * G), Some(20 * G));
        // More to free than the store holds: everything not in use goes.
        assert_eq!(store_budget(100 * G, 99 * G, 5 * G), Some(0));
        assert_eq!(store_budget(0, 0, 0), None);
    }
}
