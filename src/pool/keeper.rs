//! The pool keeper: a task of the controller that keeps every pool at its size. Each
//! round it reads the pool members' spec files and their servers' phases, asks
//! [`super::plan`] what to do, and writes or removes spec files through the spec
//! writer; the controller then starts and stops them like any server. It wakes when a
//! status changes, and every few seconds for the schedules.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};

use super::members::{is_current_member, new_member};
use super::plan::{self, Member, MemberState, Plan, Room, Wanted};
use super::{Pools, schedule};
use crate::data_dirs::DataRoots;
use crate::metrics::METRICS;
use crate::spec::{DesiredState, POOL_NAME_PREFIX};
use crate::spec_files::{CreateError, NewPort, Quota, SpecFileError, SpecFiles};
use crate::status::{Phase, StatusStore};

/// Rounds without a status change: the schedules' resolution.
const ROUND_INTERVAL: Duration = Duration::from_secs(5);
/// Least time between rounds: a burst of status changes makes one round.
const SETTLE: Duration = Duration::from_millis(100);

/// What the keeper works with.
pub struct Keeper {
    pub pools: Arc<Pools>,
    pub specs: SpecFiles,
    pub statuses: StatusStore,
    /// Wakes the controller after a spec file was written or removed.
    pub rescan: Arc<Notify>,
    pub max_servers: usize,
    pub parallelism: usize,
    /// Where servers keep their data: the state dir, and `runtime.slurm.shared_dir`.
    pub data_roots: DataRoots,
}

/// A spec file of a pool member, as read for one round.
struct MemberFile {
    name: String,
    template: String,
    /// Made from the template as the config has it now, and valid against the config.
    current: bool,
    /// Its spec asks for it to run (an admin may have stopped it).
    wants_running: bool,
}

impl Keeper {
    /// Keeps the pools until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        // Also without any pool: members of pools the config no longer has are removed.
        let mut changes = self.statuses.subscribe();
        // When each member the keeper made was written, until it is first ready.
        let mut made: HashMap<String, (String, SystemTime)> = HashMap::new();
        loop {
            self.round(&mut made).await;
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = changes.changed() => {}
                _ = tokio::time::sleep(ROUND_INTERVAL) => {}
            }
            tokio::time::sleep(SETTLE).await;
        }
    }

    async fn round(&self, made: &mut HashMap<String, (String, SystemTime)>) {
        let specs = self.specs.clone();
        let pools = self.pools.clone();
        let data_roots = self.data_roots.clone();
        let read = tokio::task::spawn_blocking(move || {
            let (files, members) = read_members(&specs, &pools);
            (files, members, data_roots.names_with_data(POOL_NAME_PREFIX))
        })
        .await;
        let (files, members, leftovers) = match read {
            Ok(read) => read,
            Err(err) => {
                tracing::error!(%err, "pool keeper: reading the pool members failed");
                return;
            }
        };
        let now = chrono::Local::now();
        let sizes: Vec<u32> = self
            .pools
            .iter()
            .map(|pool| schedule::size_at(&pool.sizing, &now))
            .collect();
        let wanted: Vec<Wanted<'_>> = self
            .pools
            .iter()
            .zip(&sizes)
            .map(|(pool, size)| Wanted {
                template: &pool.template.name,
                pool: &pool.name,
                size: *size,
            })
            .collect();
        let planned_members: Vec<Member<'_>> = members
            .iter()
            .map(|m| Member {
                name: &m.name,
                template: &m.template,
                current: m.current,
                state: MemberState::of(self.statuses.get(&m.name).as_ref(), m.wants_running),
            })
            .collect();
        self.time_refills(made);
        let users_starting = self
            .statuses
            .filter_map_all(|s| {
                (s.pool.is_none() && matches!(s.phase, Phase::Provisioning | Phase::Starting))
                    .then_some(())
            })
            .len();
        let room = Room {
            files: files.len(),
            max_servers: self.max_servers,
            users_starting,
            parallelism: self.parallelism,
        };
        // A new member never takes a name whose data is still there: it would start
        // in that folder's workspace (a deleted server's work, or an older template's
        // clone), which provisioning keeps as it is.
        let taken: BTreeSet<String> = files.union(&leftovers).cloned().collect();
        let plan = plan::plan(&wanted, &planned_members, &taken, room);
        if plan == Plan::default() {
            return;
        }
        let started = SystemTime::now();
        let specs = self.specs.clone();
        let pools = self.pools.clone();
        let outcome = tokio::task::spawn_blocking(move || carry_out(&specs, &pools, plan)).await;
        match outcome {
            Ok(created) => {
                for (template, name) in created {
                    made.insert(name, (template, started));
                }
            }
            Err(err) => tracing::error!(%err, "pool keeper: writing the plan failed"),
        }
        self.rescan.notify_one();
    }

    /// Times the members the keeper made that became ready: from their spec written to
    /// their status's `started_at` (also when one was claimed before a round saw it
    /// ready).
    fn time_refills(&self, made: &mut HashMap<String, (String, SystemTime)>) {
        made.retain(|name, (template, written)| {
            let Some(status) = self.statuses.get(name) else {
                // Not picked up yet: wait; gone for good: nothing to time.
                return self.specs.path(name).exists();
            };
            let healthy = status
                .started_at
                .as_deref()
                .and_then(|at| humantime::parse_rfc3339(at).ok())
                .and_then(|at| at.duration_since(*written).ok());
            match healthy {
                Some(took) => {
                    METRICS.pools.refilled(template, took);
                    false
                }
                None => true,
            }
        });
    }
}

/// The names of all spec files, and the pool members among them.
fn read_members(specs: &SpecFiles, pools: &Pools) -> (BTreeSet<String>, Vec<MemberFile>) {
    let files: BTreeSet<String> = specs.names().into_iter().collect();
    let members = files
        .iter()
        .filter(|name| name.starts_with(POOL_NAME_PREFIX))
        .filter_map(|name| {
            let server = specs.read(name).ok()?;
            let template = server.metadata.unclaimed_pool()?.to_owned();
            // One the config no longer accepts (its port outside a changed range) would
            // fail every claim: it is replaced like one of an older template.
            let current = pools.iter().any(|pool| is_current_member(&server, pool))
                && specs.check(&server).is_ok();
            Some(MemberFile {
                name: name.clone(),
                template,
                current,
                wants_running: server.spec.state == DesiredState::Running,
            })
        })
        .collect();
    (files, members)
}

/// Removes and writes what `plan` says; the (template, name) of the members written.
fn carry_out(specs: &SpecFiles, pools: &Pools, plan: Plan) -> Vec<(String, String)> {
    for name in &plan.remove {
        // Only while it is still unclaimed: a claim may have come first.
        match specs.delete_where(name, |server| server.metadata.unclaimed_pool().is_some()) {
            Ok(true) => tracing::info!(server = %name, "pool server removed"),
            Ok(false) => {}
            Err(err) => tracing::warn!(server = %name, %err, "cannot remove a pool server"),
        }
    }
    let mut created = Vec::new();
    for (template, name) in plan.create {
        let Some(pool) = pools.iter().find(|pool| pool.template.name == template) else {
            continue;
        };
        match specs.create(
            &new_member(pool, &name),
            Quota::default(),
            NewPort::PickFree,
        ) {
            Ok(_) => {
                tracing::info!(server = %name, template = %template, "pool server added");
                created.push((template, name));
            }
            // Someone else's file now, or the cap reached: the next round plans again.
            Err(CreateError::File(SpecFileError::Exists(_)) | CreateError::Full { .. }) => {}
            Err(err) => {
                tracing::warn!(server = %name, %err, "cannot add a pool server");
                break;
            }
        }
    }
    created
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, PoolScale, TemplateItem};
    use crate::spec::POOL_LABEL;
    use crate::status::ServerStatus;

    /// A keeper over spec files and statuses in a temporary folder, for the embedded
    /// config's `Python Starter` template as `template` makes it.
    struct Setup {
        root: tempfile::TempDir,
        keeper: Keeper,
        made: HashMap<String, (String, SystemTime)>,
    }

    impl Setup {
        fn new(template: impl FnOnce(&mut TemplateItem)) -> Self {
            let root = tempfile::tempdir().expect("temp dir");
            let keeper = keeper(root.path(), template);
            Self {
                root,
                keeper,
                made: HashMap::new(),
            }
        }

        /// devbox starts again on the same folders, with the template edited.
        fn restart(&mut self, template: impl FnOnce(&mut TemplateItem)) {
            self.keeper = keeper(self.root.path(), template);
            self.made.clear();
        }

        async fn round(&mut self) {
            self.keeper.round(&mut self.made).await;
        }

        /// Spec files there are.
        fn files(&self) -> Vec<String> {
            let mut names = self.keeper.specs.names();
            names.sort();
            names
        }

        /// The controller reports `name` (whose spec file exists) in `phase`.
        fn report(&self, name: &str, phase: Phase) {
            let spec = self.keeper.specs.read(name).expect("spec");
            let mut status = ServerStatus::new(name, spec.metadata.id.unwrap_or_default(), name);
            status.pool = spec.metadata.unclaimed_pool().map(str::to_owned);
            status.phase = phase;
            self.keeper.statuses.put(status);
        }
    }

    fn keeper(root: &std::path::Path, template: impl FnOnce(&mut TemplateItem)) -> Keeper {
        let mut config = Config::embedded_default();
        config.controller.specs_dir = root.join("specs");
        std::fs::create_dir_all(&config.controller.specs_dir).expect("specs dir");
        let item = config
            .packaged_assets
            .tabs
            .iter_mut()
            .flat_map(|tab| tab.items.iter_mut())
            .find(|item| item.name == "Python Starter")
            .expect("the embedded config's starter template");
        template(item);
        Keeper {
            pools: Arc::new(Pools::of_config(&config)),
            statuses: StatusStore::open(&root.join("state")).expect("statuses"),
            rescan: Arc::new(Notify::new()),
            max_servers: config.controller.max_servers,
            parallelism: config.controller.prebuilt_parallelism,
            data_roots: DataRoots::new(vec![root.join("state")]),
            specs: SpecFiles::new(Arc::new(config)),
        }
    }

    fn prebuilt(n: u32) -> impl FnOnce(&mut TemplateItem) {
        move |item| item.prebuilt = n
    }

    #[tokio::test]
    async fn a_pool_fills_two_at_a_time_and_stops_at_its_size() {
        let mut setup = Setup::new(prebuilt(3));
        setup.round().await;
        assert_eq!(
            setup.files(),
            ["pool-python-starter-1", "pool-python-starter-2"]
        );
        setup.round().await;
        assert_eq!(setup.files().len(), 2, "both are still on their way");
        setup.report("pool-python-starter-1", Phase::Running);
        setup.round().await;
        assert_eq!(setup.files().len(), 3);
        for name in setup.files() {
            setup.report(&name, Phase::Running);
        }
        setup.round().await;
        assert_eq!(setup.files().len(), 3, "full");
        let member = setup
            .keeper
            .specs
            .read("pool-python-starter-3")
            .expect("spec");
        assert_eq!(
            member.metadata.labels.get(POOL_LABEL).map(String::as_str),
            Some("Python Starter")
        );
        assert_eq!(member.spec.state, crate::spec::DesiredState::Running);
        assert!(member.spec.port.is_some(), "a port of its own, pinned");
    }

    #[tokio::test]
    async fn users_starting_servers_hold_the_refill_back() {
        let mut setup = Setup::new(prebuilt(3));
        for user in ["ada", "bob"] {
            let mut status = ServerStatus::new(user, uuid::Uuid::new_v4(), user);
            status.phase = Phase::Provisioning;
            setup.keeper.statuses.put(status);
        }
        setup.round().await;
        assert!(setup.files().is_empty(), "{:?}", setup.files());
    }

    #[tokio::test]
    async fn a_schedule_that_has_fired_sets_the_size() {
        let mut setup = Setup::new(|item| {
            item.prebuilt = 2;
            // Fired a minute ago at the latest, whatever the time now.
            item.prebuilt_schedule = vec![PoolScale {
                cron: "* * * * *".into(),
                count: 0,
            }];
        });
        setup.round().await;
        assert!(setup.files().is_empty(), "{:?}", setup.files());
    }

    #[tokio::test]
    async fn members_of_an_edited_template_are_replaced_and_claimed_ones_kept() {
        let mut setup = Setup::new(prebuilt(2));
        setup.round().await;
        for name in setup.files() {
            setup.report(&name, Phase::Running);
        }
        setup
            .keeper
            .specs
            .update("pool-python-starter-1", |server| {
                server.metadata.owner = Some("ada".into());
                crate::pool::members::release(server);
            })
            .expect("claimed");
        setup.restart(|item| {
            item.prebuilt = 2;
            item.extensions_groups.push("jupyter".into());
        });
        setup.round().await;
        let files = setup.files();
        assert_eq!(
            files,
            [
                "pool-python-starter-1",
                "pool-python-starter-3",
                "pool-python-starter-4"
            ],
            "the claimed one stays, the old member goes, two new ones come"
        );
        let new = setup
            .keeper
            .specs
            .read("pool-python-starter-3")
            .expect("spec");
        let pool = setup
            .keeper
            .pools
            .get("Starters", "Python Starter")
            .expect("pool");
        assert!(is_current_member(&new, pool));
    }

    #[tokio::test]
    async fn a_template_without_a_pool_any_more_loses_its_members() {
        let mut setup = Setup::new(prebuilt(2));
        setup.round().await;
        assert_eq!(setup.files().len(), 2);
        setup.restart(prebuilt(0));
        assert!(setup.keeper.pools.is_empty());
        setup.round().await;
        assert!(setup.files().is_empty(), "{:?}", setup.files());
    }

    #[tokio::test]
    async fn members_down_for_good_or_stopped_are_replaced() {
        let mut setup = Setup::new(prebuilt(2));
        setup.round().await;
        // One exited and stays down (its restart policy), one an admin stopped.
        let mut halted = ServerStatus::new("pool-python-starter-1", uuid::Uuid::new_v4(), "x");
        halted.pool = Some("Python Starter".into());
        halted.phase = Phase::Stopped;
        halted.halted_revision = Some("r1".into());
        setup.keeper.statuses.put(halted);
        setup
            .keeper
            .specs
            .update("pool-python-starter-2", |server| {
                server.spec.state = crate::spec::DesiredState::Stopped;
            })
            .expect("stopped");
        setup.round().await;
        assert_eq!(
            setup.files(),
            ["pool-python-starter-3", "pool-python-starter-4"],
            "both replaced"
        );
    }
}
