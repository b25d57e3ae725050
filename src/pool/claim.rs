//! Claiming: a ready member of a template's pool becomes the caller's server (its
//! owner, display name and id, no pool label) in one atomic write of its spec file,
//! under the spec writer's lock, so that no member is handed out twice. Its instance
//! keeps running: nothing that restarts it changes.

use uuid::Uuid;

use super::Pool;
use super::members::{FINGERPRINT_ANNOTATION, is_current_member};
use crate::spec::{POOL_LABEL, ServerSpec};
use crate::spec_files::{CreateError, Quota, SpecFiles};
use crate::status::{Phase, StatusStore};

/// Whose server a claimed member becomes.
#[derive(Debug, Clone)]
pub struct Claimant {
    pub owner: Option<String>,
    pub display_name: String,
    pub id: Uuid,
}

/// Claims a ready member of `pool` for `claimant`: the members the controller reports
/// running and healthy are tried in turn, each checked again in its file under the lock
/// (still unclaimed, made from the current template). `None`: no member was ready.
/// Blocks (spec files): async callers use `spawn_blocking`.
pub fn claim(
    specs: &SpecFiles,
    statuses: &StatusStore,
    pool: &Pool,
    quota: &Quota,
    claimant: &Claimant,
) -> Result<Option<ServerSpec>, CreateError> {
    let mut ready = statuses.filter_map_all(|status| {
        (status.pool.as_deref() == Some(pool.template.name.as_str())
            && status.phase == Phase::Running)
            .then(|| status.name.clone())
    });
    ready.sort();
    for name in ready {
        let claimed = specs.claim(
            &name,
            quota,
            |server| is_current_member(server, pool),
            |server| {
                let metadata = &mut server.metadata;
                metadata.owner.clone_from(&claimant.owner);
                metadata.display_name = Some(claimant.display_name.clone());
                metadata.id = Some(claimant.id);
                metadata.labels.remove(POOL_LABEL);
                metadata.annotations.remove(FINGERPRINT_ANNOTATION);
            },
        )?;
        if claimed.is_some() {
            return Ok(claimed);
        }
    }
    Ok(None)
}
