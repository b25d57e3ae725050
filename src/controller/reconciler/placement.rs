//! Instances a backend places itself (a Slurm job waits in the queue, then runs on
//! some node): the server shows why it waits, and its record says where it runs once
//! the backend knows. Local instances are placed when they start, and skip all this.

use super::ServerTask;
use super::start::StartOutcome;
use crate::logs::Level;
use crate::runtime::{Placement, Runtime, wait_exit};
use crate::spec::ServerSpec;

impl<R: Runtime> ServerTask<R> {
    /// Waits until the instance just started runs somewhere (`None`), or says how the
    /// start ended instead.
    pub(super) async fn await_placement(&mut self, spec: &ServerSpec) -> Option<StartOutcome> {
        let live = self.state.live.as_ref()?;
        let mut placement = live.instance.placement.clone()?;
        let mut exited = live.instance.exited.clone();
        loop {
            let now = placement.borrow_and_update().clone();
            match now {
                Placement::Placed(_) => {
                    self.on_placement(now);
                    return None;
                }
                Placement::Impossible(reason) => return Some(StartOutcome::Impossible(reason)),
                Placement::Waiting(_) => self.on_placement(now),
            }
            tokio::select! {
                changed = placement.changed() => {
                    if changed.is_err() {
                        // The backend no longer watches it: its exit says the rest.
                        return Some(StartOutcome::Exited(wait_exit(&mut exited).await));
                    }
                }
                exit = wait_exit(&mut exited) => return Some(StartOutcome::Exited(exit)),
                () = self.until_interrupted(spec) => {
                    return Some(StartOutcome::Interrupted { provisioned: false });
                }
            }
        }
    }

    /// Records what the backend says of where the instance is.
    pub(super) fn on_placement(&mut self, placement: Placement) {
        let Some(live) = self.state.live.as_mut() else {
            return;
        };
        match placement {
            Placement::Waiting(reason) => {
                let message = format!("waiting for the cluster: {reason}");
                if self.state.message.as_deref() != Some(message.as_str()) {
                    self.event(Level::Info, message.clone());
                    self.state.message = Some(message);
                }
            }
            Placement::Placed(record) => {
                if live.instance.record != record {
                    let place = record.identity();
                    live.instance.record = record;
                    self.state.message = Some("starting code-server".into());
                    self.event(Level::Info, format!("running as {place}"));
                }
            }
            // Seen by the start (`await_placement`) or, for an adopted instance, by the
            // exit that follows when the backend withdraws it.
            Placement::Impossible(_) => {}
        }
        self.publish();
    }
}
