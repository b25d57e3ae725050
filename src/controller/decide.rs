//! Every decision the reconciler takes about one server, as pure functions of desired
//! and observed state, so that each rule is tested without processes (the kube-runtime
//! split of `reconcile` and `error_policy` from the loop machinery):
//!
//! - [`decide`]: what to do now to converge: adopt, start, restart, stop, forget;
//! - [`after_exit`]: an instance exited: restart it, or keep it down;
//! - [`next_attempt`]: a start failed or an instance crashed: when to try again, and
//!   whether the server counts as `failed` meanwhile;
//! - [`judge_health`]: a health check answered (or not): fine, idle (cull it), or
//!   unhealthy (restart it after [`UNHEALTHY_LIMIT`] failures in a row).

use std::time::{Duration, SystemTime};

use crate::config::ControllerSettings;
use crate::health::{HealthError, Healthz};
use crate::runtime::ExitInfo;
use crate::spec::{DesiredState, RestartPolicy, ServerSpec};
use crate::status::Phase;

/// An instance healthy this long has recovered: its crash counter starts again at zero.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Failed health checks in a row after which a running instance is restarted.
pub const UNHEALTHY_LIMIT: u32 = 3;

/// What the spec side says, after invalid specs have been replaced by the last applied one.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// The spec file is gone.
    Deleted,
    /// No valid spec has ever been applied; nothing may be done.
    Unknown,
    Spec(&'a ServerSpec),
}

/// What the server is doing right now.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed<'a> {
    /// An earlier devbox recorded an instance of this server that nobody has looked
    /// at yet.
    pub recorded: bool,
    /// An instance is running (healthy or not yet).
    pub running: bool,
    /// Hash of the spec the running instance was started from.
    pub applied_hash: Option<&'a str>,
    /// The instance exited (and its restart policy says so) or was stopped for being
    /// idle: it stays down while the spec has this revision.
    pub halted_revision: Option<&'a str>,
    /// A restart after a failure of the spec with this hash is scheduled for later
    /// (an edited spec does not wait for it).
    pub retry_for_hash: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Already where it should be (or waiting for a scheduled retry).
    Nothing,
    /// Take over the recorded instance if it still runs, else clean up after it;
    /// then decide again.
    Adopt,
    Start,
    /// Running from an older spec: stop, then start from the new one.
    Restart,
    Stop,
    /// Stop if running, then drop the server's status, port and data.
    Forget,
}

/// What to do now to bring the server to `target`.
pub fn decide(target: Target<'_>, observed: &Observed<'_>) -> Action {
    if observed.recorded {
        // First of all: what runs must be known before anything is started or dropped.
        return Action::Adopt;
    }
    match target {
        Target::Deleted => Action::Forget,
        Target::Unknown => Action::Nothing,
        Target::Spec(spec) => match (spec.state, observed.running) {
            (DesiredState::Stopped, true) => Action::Stop,
            (DesiredState::Stopped, false) => Action::Nothing,
            (DesiredState::Running, true) if observed.applied_hash == Some(spec.hash.as_str()) => {
                Action::Nothing
            }
            (DesiredState::Running, true) => Action::Restart,
            (DesiredState::Running, false)
                if observed.halted_revision == Some(spec.revision.as_str())
                    || observed.retry_for_hash == Some(spec.hash.as_str()) =>
            {
                Action::Nothing
            }
            (DesiredState::Running, false) => Action::Start,
        },
    }
}

/// Why an instance is started again (the `reason` label of the restarts metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartReason {
    /// It failed (exit code, signal, unknown end).
    Crash,
    /// It exited cleanly and the policy is `always`.
    Exit,
    Unhealthy,
    SpecChange,
}

impl RestartReason {
    pub fn label(self) -> &'static str {
        match self {
            RestartReason::Crash => "crash",
            RestartReason::Exit => "exit",
            RestartReason::Unhealthy => "unhealthy",
            RestartReason::SpecChange => "spec_change",
        }
    }
}

/// What follows an instance's own exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// Start it again (after [`next_attempt`]'s delay).
    Restart(RestartReason),
    /// Keep it down until the spec changes, in this phase.
    Halt(Phase),
}

pub fn after_exit(policy: RestartPolicy, exit: ExitInfo) -> AfterExit {
    let clean = exit.is_success();
    let restart = match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => !clean,
        RestartPolicy::Never => false,
    };
    match (restart, clean) {
        (true, true) => AfterExit::Restart(RestartReason::Exit),
        (true, false) => AfterExit::Restart(RestartReason::Crash),
        (false, true) => AfterExit::Halt(Phase::Stopped),
        (false, false) => AfterExit::Halt(Phase::Failed),
    }
}

/// When a server that failed is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// Failures in a row of the same spec, this one included.
    pub number: u32,
    pub delay: Duration,
    /// The server shows as `failed` until then (a crash loop, or a failure that is not
    /// a crash: no port, a bad workspace); else as `starting`.
    pub failed: bool,
}

/// The next attempt after a failure. `failures_before` counts earlier failures in a
/// row of the same spec; `crash` says whether this one was the instance's (it exited
/// or stopped answering) rather than a failure to set it up.
pub fn next_attempt(failures_before: u32, crash: bool, config: &ControllerSettings) -> Attempt {
    let number = failures_before.saturating_add(1);
    Attempt {
        number,
        delay: config.restart_backoff.delay(number),
        failed: !crash || number >= config.crash_loop_threshold,
    }
}

/// Whether an instance healthy for `healthy_for` has recovered from earlier crashes.
pub fn recovered(healthy_for: Option<Duration>) -> bool {
    healthy_for.is_some_and(|d| d >= STABLE_AFTER)
}

/// What a health check says about a running instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Fine,
    /// No browser for longer than the spec's `idle_timeout`: stop it and keep it down.
    Idle,
    /// Failed this many checks in a row; not yet enough to act.
    Failing(u32),
    /// Failed [`UNHEALTHY_LIMIT`] checks in a row: restart it.
    Unhealthy,
    /// The check failed for want of devbox's own resources: it says nothing about the
    /// instance (restarting it would punish its user for a flood of connections).
    Unknown,
}

/// Judges one health check. `failures_before`: failed checks in a row before this one;
/// `healthy_for`: since when the instance has been healthy (the idle time of an
/// instance no browser ever opened).
pub fn judge_health(
    answer: &Result<Healthz, HealthError>,
    failures_before: u32,
    idle_timeout: Option<Duration>,
    healthy_for: Duration,
    now: SystemTime,
) -> Health {
    match answer {
        Ok(healthz) if is_idle(healthz, idle_timeout, healthy_for, now) => Health::Idle,
        Ok(_) => Health::Fine,
        Err(err) if err.is_devboxs_own() => Health::Unknown,
        Err(_) if failures_before + 1 >= UNHEALTHY_LIMIT => Health::Unhealthy,
        Err(_) => Health::Failing(failures_before + 1),
    }
}

/// Whether no browser has been active for longer than `idle_timeout`. code-server says
/// `expired` once no client was active in the last minute, and `lastHeartbeat` is when
/// one last was (0 when none ever connected: then the time healthy counts).
fn is_idle(
    healthz: &Healthz,
    idle_timeout: Option<Duration>,
    healthy_for: Duration,
    now: SystemTime,
) -> bool {
    let Some(limit) = idle_timeout else {
        return false;
    };
    if healthz.status != "expired" {
        return false;
    }
    let idle_for = if healthz.last_heartbeat > 0 {
        let last = SystemTime::UNIX_EPOCH + Duration::from_millis(healthz.last_heartbeat);
        now.duration_since(last).unwrap_or_default()
    } else {
        healthy_for
    };
    idle_for > limit
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::endpoint::Endpoint;
    use std::path::Path;

    fn spec(state: &str, settings: &str) -> ServerSpec {
        let text = format!(
            "apiVersion: devbox/v1\nkind: DevServer\nmetadata:\n  name: a\nspec:\n  state: {state}\n  user_settings: {{{settings}}}\n"
        );
        crate::spec::load(Path::new("a.yaml"), &text, &Config::embedded_default()).unwrap()
    }

    #[test]
    fn running_spec() {
        let s = spec("running", "");
        let idle = Observed::default();
        assert_eq!(decide(Target::Spec(&s), &idle), Action::Start);
        let current = Observed {
            running: true,
            applied_hash: Some(&s.hash),
            ..idle
        };
        assert_eq!(decide(Target::Spec(&s), &current), Action::Nothing);
        let edited = spec("running", "a: 1");
        assert_eq!(decide(Target::Spec(&edited), &current), Action::Restart);
    }

    #[test]
    fn a_recorded_instance_is_adopted_before_anything_else() {
        let recorded = Observed {
            recorded: true,
            ..Observed::default()
        };
        assert_eq!(decide(Target::Deleted, &recorded), Action::Adopt);
        assert_eq!(decide(Target::Unknown, &recorded), Action::Adopt);
        assert_eq!(
            decide(Target::Spec(&spec("stopped", "")), &recorded),
            Action::Adopt
        );
    }

    #[test]
    fn waits_for_retry_and_respects_halt() {
        let s = spec("running", "");
        let retry = Observed {
            retry_for_hash: Some(&s.hash),
            ..Observed::default()
        };
        assert_eq!(decide(Target::Spec(&s), &retry), Action::Nothing);
        // A fixed spec does not wait out the backoff of the broken one.
        assert_eq!(
            decide(Target::Spec(&spec("running", "c: 3")), &retry),
            Action::Start
        );
        let halted = Observed {
            halted_revision: Some(&s.revision),
            ..Observed::default()
        };
        assert_eq!(decide(Target::Spec(&s), &halted), Action::Nothing);
        // An edit lifts the halt.
        assert_eq!(
            decide(Target::Spec(&spec("running", "b: 2")), &halted),
            Action::Start
        );
    }

    #[test]
    fn stopped_deleted_and_unknown() {
        let running = Observed {
            running: true,
            ..Observed::default()
        };
        assert_eq!(
            decide(Target::Spec(&spec("stopped", "")), &running),
            Action::Stop
        );
        assert_eq!(
            decide(Target::Spec(&spec("stopped", "")), &Observed::default()),
            Action::Nothing
        );
        assert_eq!(decide(Target::Deleted, &running), Action::Forget);
        assert_eq!(decide(Target::Unknown, &running), Action::Nothing);
    }

    #[test]
    fn exits_follow_the_restart_policy() {
        use RestartPolicy::*;
        let (clean, crash, killed) = (ExitInfo::Code(0), ExitInfo::Code(3), ExitInfo::Signal(9));
        assert_eq!(
            after_exit(Always, clean),
            AfterExit::Restart(RestartReason::Exit)
        );
        assert_eq!(
            after_exit(Always, crash),
            AfterExit::Restart(RestartReason::Crash)
        );
        assert_eq!(
            after_exit(OnFailure, clean),
            AfterExit::Halt(Phase::Stopped)
        );
        assert_eq!(
            after_exit(OnFailure, killed),
            AfterExit::Restart(RestartReason::Crash)
        );
        assert_eq!(
            after_exit(OnFailure, ExitInfo::Unknown),
            AfterExit::Restart(RestartReason::Crash)
        );
        assert_eq!(after_exit(Never, clean), AfterExit::Halt(Phase::Stopped));
        assert_eq!(after_exit(Never, crash), AfterExit::Halt(Phase::Failed));
    }

    #[test]
    fn crashes_back_off_and_a_loop_gives_up() {
        let config = Config::embedded_default().controller;
        let initial = config.restart_backoff.initial.get();
        let first = next_attempt(0, true, &config);
        assert_eq!(
            (first.number, first.delay, first.failed),
            (1, initial, false)
        );
        let second = next_attempt(1, true, &config);
        assert_eq!(second.delay, initial * 2);
        let last = next_attempt(config.crash_loop_threshold - 1, true, &config);
        assert!(
            last.failed,
            "the threshold-th crash in a row is a crash loop"
        );
        assert!(last.delay <= config.restart_backoff.max.get());
        // A failure to set the server up shows at once.
        assert!(next_attempt(0, false, &config).failed);
        assert!(!recovered(Some(STABLE_AFTER - Duration::from_millis(1))));
        assert!(recovered(Some(STABLE_AFTER)));
        assert!(!recovered(None));
    }

    #[test]
    fn health_checks_judge_failures_and_idleness() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let ms = |at: SystemTime| {
            at.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        };
        let alive = Ok(Healthz {
            status: "alive".into(),
            last_heartbeat: ms(now),
        });
        let expired_since = |ago: u64| {
            Ok(Healthz {
                status: "expired".into(),
                last_heartbeat: ms(now - Duration::from_secs(ago)),
            })
        };
        let limit = Some(Duration::from_secs(600));
        let long = Duration::from_secs(3600);
        assert_eq!(judge_health(&alive, 2, limit, long, now), Health::Fine);
        assert_eq!(
            judge_health(&expired_since(601), 0, limit, long, now),
            Health::Idle
        );
        assert_eq!(
            judge_health(&expired_since(599), 0, limit, long, now),
            Health::Fine
        );
        assert_eq!(
            judge_health(&expired_since(9000), 0, None, long, now),
            Health::Fine
        );
        // Never opened: the time since it became healthy counts.
        let never = Ok(Healthz {
            status: "expired".into(),
            last_heartbeat: 0,
        });
        assert_eq!(judge_health(&never, 0, limit, long, now), Health::Idle);
        assert_eq!(
            judge_health(&never, 0, limit, Duration::from_secs(5), now),
            Health::Fine
        );

        let endpoint = Endpoint::Tcp(8020);
        let refused = || {
            Err(HealthError::Request {
                endpoint: endpoint.clone(),
                message: "refused".into(),
            })
        };
        assert_eq!(
            judge_health(&refused(), 0, limit, long, now),
            Health::Failing(1)
        );
        assert_eq!(
            judge_health(&refused(), UNHEALTHY_LIMIT - 1, limit, long, now),
            Health::Unhealthy
        );
        let exhausted = Err(HealthError::DevboxExhausted {
            endpoint,
            source: std::io::Error::from_raw_os_error(24),
        });
        assert_eq!(
            judge_health(&exhausted, UNHEALTHY_LIMIT - 1, limit, long, now),
            Health::Unknown
        );
    }
}
