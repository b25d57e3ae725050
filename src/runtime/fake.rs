//! A pretend [`Runtime`] for the reconciler's unit tests: instances are rows of a table
//! that the test scripts (crash this one, fail its health checks, refuse the next start)
//! and inspects (what was started from which plan, what was stopped). Nothing is spawned
//! and no socket is opened, so tests run under Tokio's paused clock, where every delay
//! the reconciler waits out is virtual and exact.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use super::{ExitInfo, Instance, LaunchPlan, Placement, Runtime, RuntimeError};
use crate::endpoint::Endpoint;
use crate::health::{HealthClient, HealthError, Healthz};
use crate::status::{InstanceRecord, ProcessRecord};

/// The first pid the fake hands out; each start takes the next.
const FIRST_PID: u32 = 1000;

/// How the instances of one server behave (see [`FakeRuntime::behave`]); the default is a
/// server that starts at once and answers its first probe.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// `start` fails as it does when the code-server binary is missing.
    pub refuse_start: bool,
    /// How long `start` takes before the instance exists (a slow launcher, a queued job).
    pub start_delay: Duration,
    /// Probes an instance fails before its first answer (code-server booting).
    pub failing_probes: u32,
    /// How long after its start an instance first answers.
    pub boot_time: Duration,
    /// What [`Runtime::exit_reason`] says of an exit of this server's instances.
    pub exit_reason: Option<String>,
    /// Instances wait to be placed, for this reason, as a queued Slurm job does
    /// (until [`FakeRuntime::place`] or [`FakeRuntime::never_place`]).
    pub queued: Option<String>,
}

/// What a booted instance's `/healthz` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// `{"status":"alive"}`: a browser was active in the last minute.
    Alive,
    /// `{"status":"expired","lastHeartbeat":…}`: no browser lately; `last_heartbeat` is
    /// when one last was, in milliseconds since the epoch (0: never).
    Expired { last_heartbeat: u64 },
    /// No answer at all (a hung or wedged code-server).
    Failing,
}

/// One instance, as the fake saw it.
#[derive(Debug, Clone)]
pub struct FakeInstance {
    pub server: String,
    pub record: ProcessRecord,
    /// The plan it was started from; `None` for one seeded as left by an earlier devbox.
    pub plan: Option<LaunchPlan>,
    pub started_at: Instant,
    pub ended_at: Option<Instant>,
    pub exit: Option<ExitInfo>,
    /// Ended by [`Runtime::stop`] (not a crash, not the sweep of unrecorded instances).
    pub stopped: bool,
    /// Taken over through [`Runtime::adopt`].
    pub adopted: bool,
    pub health: Health,
    /// Probes it was asked so far.
    pub probes: u32,
}

impl FakeInstance {
    /// A live, healthy instance of `server`, started now.
    fn new(server: &str, record: ProcessRecord, plan: Option<LaunchPlan>) -> Self {
        Self {
            server: server.to_owned(),
            record,
            plan,
            started_at: Instant::now(),
            ended_at: None,
            exit: None,
            stopped: false,
            adopted: false,
            health: Health::Alive,
            probes: 0,
        }
    }

    pub fn is_live(&self) -> bool {
        self.exit.is_none()
    }

    fn endpoint(&self) -> Option<Endpoint> {
        match &self.plan {
            Some(plan) => Some(plan.endpoint.clone()),
            None => self.record.socket.clone().map(Endpoint::Unix),
        }
    }
}

struct Row {
    instance: FakeInstance,
    exited: watch::Sender<Option<ExitInfo>>,
    /// Where a queued instance is (see [`Behaviour::queued`]).
    placement: Option<watch::Sender<Placement>>,
}

impl Row {
    fn end(&mut self, exit: ExitInfo) {
        self.instance.exit = Some(exit);
        self.instance.ended_at = Some(Instant::now());
        self.exited.send_replace(Some(exit));
    }
}

#[derive(Default)]
struct Table {
    rows: Vec<Row>,
    behaviours: HashMap<String, Behaviour>,
    /// When each server's refused starts were asked for.
    refused: HashMap<String, Vec<Instant>>,
    /// Tags passed to [`Runtime::clean_up`], in order.
    cleaned_up: Vec<String>,
    /// Tags [`Runtime::sweep_unrecorded`] ended.
    killed_unrecorded: Vec<String>,
    pids_handed_out: u32,
}

impl Table {
    fn live_row(&mut self, server: &str) -> Option<&mut Row> {
        self.rows
            .iter_mut()
            .rev()
            .find(|row| row.instance.server == server && row.instance.is_live())
    }

    fn row_by_tag(&mut self, tag: &str) -> Option<&mut Row> {
        self.rows
            .iter_mut()
            .find(|row| row.instance.record.instance == tag)
    }
}

/// The fake runtime and the test's handle on it at once. Cloning is cheap and shares
/// the table: the test keeps one clone, the controller's context owns another. A
/// `std::sync::Mutex` is enough: every access is a few reads or writes, and none is held
/// across an `.await`.
#[derive(Clone, Default)]
pub struct FakeRuntime {
    table: Arc<Mutex<Table>>,
}

impl FakeRuntime {
    fn table(&self) -> MutexGuard<'_, Table> {
        // A test that panicked while holding the lock has failed already.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes how `server`'s instances behave from now on.
    pub fn behave(&self, server: &str, change: impl FnOnce(&mut Behaviour)) {
        change(
            self.table()
                .behaviours
                .entry(server.to_owned())
                .or_default(),
        );
    }

    /// An instance of `server` that an earlier devbox left running, as `record` says:
    /// [`Runtime::adopt`] takes it over, and [`Runtime::sweep_unrecorded`] ends it when no
    /// status records it.
    pub fn seed_live(&self, server: &str, record: ProcessRecord) {
        let (exited, _) = watch::channel(None);
        self.table().rows.push(Row {
            instance: FakeInstance::new(server, record, None),
            exited,
            placement: None,
        });
    }

    /// `server`'s queued instance runs from now on.
    pub fn place(&self, server: &str) {
        let mut table = self.table();
        let row = table
            .live_row(server)
            .unwrap_or_else(|| panic!("no live instance of {server} to place"));
        let record = InstanceRecord::Local(row.instance.record.clone());
        if let Some(placement) = &row.placement {
            placement.send_replace(Placement::Placed(record));
        }
    }

    /// `server`'s queued instance can never run, for `reason`.
    pub fn never_place(&self, server: &str, reason: &str) {
        let mut table = self.table();
        let row = table
            .live_row(server)
            .unwrap_or_else(|| panic!("no live instance of {server}"));
        if let Some(placement) = &row.placement {
            placement.send_replace(Placement::Impossible(reason.to_owned()));
        }
    }

    /// Ends `server`'s live instance with `exit`, as a crash (or a clean exit) does.
    pub fn crash(&self, server: &str, exit: ExitInfo) {
        let mut table = self.table();
        let row = table
            .live_row(server)
            .unwrap_or_else(|| panic!("no live instance of {server} to end"));
        row.end(exit);
    }

    /// What `server`'s live instance answers from now on.
    pub fn set_health(&self, server: &str, health: Health) {
        let mut table = self.table();
        let row = table
            .live_row(server)
            .unwrap_or_else(|| panic!("no live instance of {server}"));
        row.instance.health = health;
    }

    /// Every instance of `server` (started, seeded or adopted), oldest first.
    pub fn instances(&self, server: &str) -> Vec<FakeInstance> {
        self.table()
            .rows
            .iter()
            .filter(|row| row.instance.server == server)
            .map(|row| row.instance.clone())
            .collect()
    }

    /// `server`'s instances still running.
    pub fn live(&self, server: &str) -> Vec<FakeInstance> {
        let mut instances = self.instances(server);
        instances.retain(FakeInstance::is_live);
        instances
    }

    /// Every instance still running, of any server.
    pub fn live_all(&self) -> Vec<FakeInstance> {
        self.table()
            .rows
            .iter()
            .filter(|row| row.instance.is_live())
            .map(|row| row.instance.clone())
            .collect()
    }

    /// Instances of `server` started through [`Runtime::start`].
    pub fn started(&self, server: &str) -> Vec<FakeInstance> {
        let mut instances = self.instances(server);
        instances.retain(|i| i.plan.is_some());
        instances
    }

    /// How many instances of `server` [`Runtime::start`] started.
    pub fn starts(&self, server: &str) -> usize {
        self.started(server).len()
    }

    /// How many of `server`'s instances [`Runtime::stop`] ended.
    pub fn stops(&self, server: &str) -> usize {
        self.instances(server).iter().filter(|i| i.stopped).count()
    }

    /// When each refused start of `server` was asked for.
    pub fn refused(&self, server: &str) -> Vec<Instant> {
        self.table()
            .refused
            .get(server)
            .cloned()
            .unwrap_or_default()
    }

    /// Tags of the instances [`Runtime::clean_up`] was asked to clean up after.
    pub fn cleaned_up(&self) -> Vec<String> {
        self.table().cleaned_up.clone()
    }

    /// Tags of the instances [`Runtime::sweep_unrecorded`] ended.
    pub fn killed_unrecorded(&self) -> Vec<String> {
        self.table().killed_unrecorded.clone()
    }

    fn behaviour(&self, server: &str) -> Behaviour {
        self.table()
            .behaviours
            .get(server)
            .cloned()
            .unwrap_or_default()
    }
}

fn not_answering(endpoint: &Endpoint, message: &str) -> HealthError {
    HealthError::Request {
        endpoint: endpoint.clone(),
        message: message.to_owned(),
    }
}

fn millis_since_epoch(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Runtime for FakeRuntime {
    async fn start(&self, plan: &LaunchPlan) -> Result<Instance, RuntimeError> {
        let behaviour = self.behaviour(&plan.server);
        if !behaviour.start_delay.is_zero() {
            tokio::time::sleep(behaviour.start_delay).await;
        }
        let mut table = self.table();
        if behaviour.refuse_start {
            table
                .refused
                .entry(plan.server.clone())
                .or_default()
                .push(Instant::now());
            return Err(RuntimeError::Spawn {
                program: plan.program.clone(),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        table.pids_handed_out += 1;
        let pid = FIRST_PID + table.pids_handed_out;
        let record = ProcessRecord {
            pid,
            pgid: pid,
            start_ticks: u64::from(pid) * 100,
            instance: format!("fake-{pid}"),
            socket: plan.endpoint.socket().map(ToOwned::to_owned),
            cgroup: None,
        };
        let (exited, receiver) = watch::channel(None);
        let (placement, placement_receiver) = match &behaviour.queued {
            Some(reason) => {
                let (sender, receiver) = watch::channel(Placement::Waiting(reason.clone()));
                (Some(sender), Some(receiver))
            }
            None => (None, None),
        };
        table.rows.push(Row {
            instance: FakeInstance::new(&plan.server, record.clone(), Some(plan.clone())),
            exited,
            placement,
        });
        Ok(Instance {
            record: InstanceRecord::Local(record),
            exited: receiver,
            placement: placement_receiver,
        })
    }

    async fn stop(&self, record: &InstanceRecord, _grace: Duration) -> Result<(), RuntimeError> {
        let mut table = self.table();
        let Some(record) = record.local() else {
            return Ok(());
        };
        if let Some(row) = table.row_by_tag(&record.instance)
            && row.instance.is_live()
        {
            row.instance.stopped = true;
            row.end(ExitInfo::Signal(nix::libc::SIGTERM));
        }
        Ok(())
    }

    async fn adopt(&self, record: &InstanceRecord) -> Option<Instance> {
        let record = record.local()?;
        let mut table = self.table();
        let row = table.row_by_tag(&record.instance)?;
        let same = row.instance.record.pid == record.pid
            && row.instance.record.start_ticks == record.start_ticks;
        if !(same && row.instance.is_live()) {
            return None;
        }
        row.instance.adopted = true;
        Some(Instance {
            record: InstanceRecord::Local(row.instance.record.clone()),
            exited: row.exited.subscribe(),
            placement: None,
        })
    }

    async fn clean_up(&self, record: &InstanceRecord) {
        self.table().cleaned_up.push(record.tag().to_owned());
    }

    /// Ends every live instance whose tag is not recorded (the table holds one devbox's
    /// instances only, so `owner` is not looked at).
    async fn sweep_unrecorded(&self, _owner: &str, recorded: &HashSet<String>) -> Vec<String> {
        let mut table = self.table();
        let mut killed = Vec::new();
        for row in &mut table.rows {
            if row.instance.is_live() && !recorded.contains(&row.instance.record.instance) {
                row.end(ExitInfo::Signal(nix::libc::SIGKILL));
                killed.push(row.instance.record.instance.clone());
            }
        }
        table.killed_unrecorded.extend(killed.iter().cloned());
        killed
    }

    fn limits_unenforced(&self, _backend: crate::runtime::Backend) -> Option<&str> {
        None
    }

    fn exit_reason(&self, record: &InstanceRecord, _exit: ExitInfo) -> Option<String> {
        let mut table = self.table();
        let server = table.row_by_tag(record.tag())?.instance.server.clone();
        table.behaviours.get(&server)?.exit_reason.clone()
    }

    fn shut_down(&self) {}

    async fn probe(
        &self,
        _client: &HealthClient,
        endpoint: &Endpoint,
        _timeout: Duration,
    ) -> Result<Healthz, HealthError> {
        let mut table = self.table();
        let Table {
            rows, behaviours, ..
        } = &mut *table;
        let Some(row) = rows.iter_mut().rev().find(|row| {
            row.instance.is_live() && row.instance.endpoint().as_ref() == Some(endpoint)
        }) else {
            return Err(not_answering(endpoint, "connection refused"));
        };
        let instance = &mut row.instance;
        instance.probes += 1;
        let behaviour = behaviours
            .get(&instance.server)
            .cloned()
            .unwrap_or_default();
        let booted = instance.probes > behaviour.failing_probes
            && instance.started_at.elapsed() >= behaviour.boot_time;
        if !booted {
            return Err(not_answering(endpoint, "connection refused (booting)"));
        }
        match instance.health {
            Health::Alive => Ok(Healthz {
                status: "alive".into(),
                last_heartbeat: millis_since_epoch(SystemTime::now()),
            }),
            Health::Expired { last_heartbeat } => Ok(Healthz {
                status: "expired".into(),
                last_heartbeat,
            }),
            Health::Failing => Err(not_answering(endpoint, "connection reset by peer")),
        }
    }
}
