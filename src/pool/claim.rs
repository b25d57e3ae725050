//! Claiming: a ready member of a template's pool becomes the caller's server (its
//! owner, display name and id, no pool label) in one atomic write of its spec file,
//! under the spec writer's lock, so that no member is handed out twice. Its instance
//! keeps running (nothing that restarts it changes), except under
//! `isolation.run_as: owner`, where the new owner is such a change: it starts again as
//! the owner's user.

use uuid::Uuid;

use super::Pool;
use super::members::{is_current_member, release};
use crate::spec::ServerSpec;
use crate::spec_files::{CreateError, Quota, SpecFileError, SpecFiles};
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
                release(server);
            },
        );
        match claimed {
            Ok(Some(spec)) => return Ok(Some(spec)),
            Ok(None) => {}
            // A member the config no longer accepts (the keeper replaces it): the next.
            Err(CreateError::File(
                err @ (SpecFileError::Invalid(_)
                | SpecFileError::PortPinned { .. }
                | SpecFileError::PortHeld { .. }),
            )) => {
                tracing::warn!(server = %name, %err, "a pool server cannot be handed out");
            }
            Err(err) => return Err(err),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;
    use crate::identity::UserName;
    use crate::pool::Pools;
    use crate::pool::members::{member_name, new_member};
    use crate::spec::{DevServer, POOL_LABEL};
    use crate::spec_files::NewPort;
    use crate::status::ServerStatus;

    /// Spec files and statuses in a temporary folder, with the embedded config's
    /// `Python Starter` template keeping a pool.
    struct Setup {
        _dir: tempfile::TempDir,
        specs: SpecFiles,
        statuses: StatusStore,
        pools: Pools,
    }

    impl Setup {
        fn new(max_servers_per_user: usize) -> Self {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut config = Config::embedded_default();
            config.controller.specs_dir = dir.path().join("specs");
            std::fs::create_dir_all(&config.controller.specs_dir).expect("specs dir");
            config.auth.max_servers_per_user = max_servers_per_user;
            for tab in &mut config.packaged_assets.tabs {
                for item in &mut tab.items {
                    item.prebuilt = 3;
                }
            }
            let pools = Pools::of_config(&config);
            let statuses = StatusStore::open(&dir.path().join("state")).expect("statuses");
            Self {
                specs: SpecFiles::new(Arc::new(config)),
                statuses,
                pools,
                _dir: dir,
            }
        }

        fn pool(&self) -> &Pool {
            self.pools
                .get("Starters", "Python Starter")
                .expect("the starter's pool")
        }

        /// Writes member `n` of the pool and reports it as `phase`.
        fn member(&self, n: u32, phase: Phase) -> String {
            self.write_member(
                new_member(self.pool(), &member_name(&self.pool().name, n)),
                phase,
            )
        }

        fn write_member(&self, server: DevServer, phase: Phase) -> String {
            let name = server.metadata.name.clone();
            let spec = self
                .specs
                .create(&server, Quota::default(), NewPort::PickFree)
                .expect("member written");
            let mut status = ServerStatus::new(&name, spec.id, &spec.display_name);
            status.pool = spec.pool.clone();
            status.phase = phase;
            self.statuses.put(status);
            name
        }

        fn claim(&self, owner: Option<&str>, quota: &Quota) -> Option<ServerSpec> {
            let claimant = Claimant {
                owner: owner.map(str::to_owned),
                display_name: "Ada's seat".into(),
                id: Uuid::new_v4(),
            };
            claim(&self.specs, &self.statuses, self.pool(), quota, &claimant).expect("claim")
        }
    }

    fn admin() -> Quota {
        Quota::default()
    }

    #[test]
    fn a_claim_takes_a_ready_member_out_of_the_pool_as_the_claimants() {
        let setup = Setup::new(2);
        setup.member(1, Phase::Starting);
        let ready = setup.member(2, Phase::Running);
        let claimed = setup.claim(Some("ada"), &admin()).expect("a ready member");
        assert_eq!(
            claimed.name, ready,
            "the running one, never the starting one"
        );
        assert_eq!(claimed.owner, UserName::parse("ada").ok());
        assert_eq!(claimed.display_name, "Ada's seat");
        assert_eq!(claimed.pool, None);
        let file = setup.specs.read(&ready).expect("spec");
        assert!(!file.metadata.labels.contains_key(POOL_LABEL));
        assert!(
            file.metadata.annotations.is_empty(),
            "{:?}",
            file.metadata.annotations
        );
        // The status still says running and unclaimed until the controller acts on the
        // file: the file decides, and it is nobody's member any more.
        assert_eq!(setup.claim(Some("bob"), &admin()), None);
    }

    #[test]
    fn racing_claims_hand_each_member_out_once() {
        let setup = Setup::new(2);
        for n in 1..=3 {
            setup.member(n, Phase::Running);
        }
        let claimed: Vec<Option<ServerSpec>> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..8)
                .map(|i| {
                    let setup = &setup;
                    scope.spawn(move || setup.claim(Some(&format!("user{i}")), &admin()))
                })
                .collect();
            racers
                .into_iter()
                .map(|racer| racer.join().expect("no panic"))
                .collect()
        });
        let names: BTreeSet<String> = claimed.iter().flatten().map(|s| s.name.clone()).collect();
        assert_eq!(claimed.iter().flatten().count(), 3, "{claimed:?}");
        assert_eq!(names.len(), 3, "no member twice: {names:?}");
        for spec in claimed.iter().flatten() {
            let file = setup.specs.read(&spec.name).expect("spec");
            assert_eq!(
                file.metadata.owner,
                spec.owner.as_ref().map(|o| o.to_string())
            );
        }
    }

    #[test]
    fn a_user_at_their_limit_claims_nothing_and_the_member_stays_ready() {
        let setup = Setup::new(1);
        let member = setup.member(1, Phase::Running);
        let own = crate::pool::members::new_member(setup.pool(), "adas-own");
        let mut own = own;
        own.metadata.owner = Some("ada".into());
        own.metadata.labels.clear();
        setup.write_member(own, Phase::Stopped);
        let before = std::fs::read_to_string(setup.specs.path(&member)).expect("spec");
        let quota = Quota::limited("ada", 1);
        let err = claim(
            &setup.specs,
            &setup.statuses,
            setup.pool(),
            &quota,
            &Claimant {
                owner: Some("ada".into()),
                display_name: "second".into(),
                id: Uuid::new_v4(),
            },
        )
        .expect_err("over the limit");
        assert!(matches!(err, CreateError::OwnerFull { .. }), "{err}");
        let after = std::fs::read_to_string(setup.specs.path(&member)).expect("spec");
        assert_eq!(before, after, "the member is untouched");
    }

    #[test]
    fn a_member_the_config_no_longer_accepts_is_passed_over() {
        let setup = Setup::new(2);
        let broken = setup.member(1, Phase::Running);
        let good = setup.member(2, Phase::Running);
        // The port range changed under it: its pinned port is outside.
        let path = setup.specs.path(&broken);
        let text = std::fs::read_to_string(&path).expect("spec");
        let port = setup
            .specs
            .read(&broken)
            .expect("spec")
            .spec
            .port
            .expect("a port");
        std::fs::write(&path, text.replace(&format!("port: {port}"), "port: 1")).expect("edit");
        let claimed = setup.claim(None, &admin()).expect("the good one");
        assert_eq!(claimed.name, good);
    }

    #[test]
    fn members_of_an_older_template_or_given_an_owner_are_not_claimed() {
        let setup = Setup::new(2);
        let mut old = new_member(setup.pool(), "pool-python-starter-1");
        old.metadata.annotations.insert(
            crate::spec::POOL_FINGERPRINT_ANNOTATION.into(),
            "older".into(),
        );
        setup.write_member(old, Phase::Running);
        let mut seated = new_member(setup.pool(), "pool-python-starter-2");
        seated.metadata.owner = Some("seat-pool-python-starter-2".into());
        setup.write_member(seated, Phase::Running);
        assert_eq!(setup.claim(None, &admin()), None);
    }
}
