//! What should happen to one server now: a pure function of desired and observed state.
//!
//! Kept apart from the task that carries actions out, so every rule can be tested
//! without processes (the kube-runtime split of `reconcile` from the loop machinery).

use crate::spec::{DesiredState, ServerSpec};

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
    /// A process is running (healthy or not yet).
    pub running: bool,
    /// Hash of the spec the running process was started from.
    pub applied_hash: Option<&'a str>,
    /// The process exited (and its restart policy says so) or was stopped for being
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
    Start,
    /// Running from an older spec: stop, then start from the new one.
    Restart,
    Stop,
    /// Stop if running, then drop the server's status and port.
    Forget,
}

pub fn decide(target: Target<'_>, observed: &Observed<'_>) -> Action {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
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
}
