//! What the pool keeper does next, as a pure function of the pools' sizes and the
//! members there are: which members to remove (from an older config, or more than the
//! pool wants) and which to create, within the parallelism and the server cap.

use std::collections::BTreeSet;

use super::members::member_name;
use crate::status::{Phase, ServerStatus};

/// A pool as the plan sees it.
#[derive(Debug, Clone)]
pub struct Wanted<'a> {
    /// The template's name (the members' label).
    pub template: &'a str,
    /// The members' name prefix.
    pub pool: &'a str,
    /// How many members it should have now.
    pub size: u32,
}

/// An unclaimed member (a spec file labelled with its template).
#[derive(Debug, Clone)]
pub struct Member<'a> {
    pub name: &'a str,
    pub template: &'a str,
    /// Made from the template as the config has it now.
    pub current: bool,
    pub state: MemberState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Running and healthy: it can be claimed.
    Ready,
    /// Being provisioned or started (or not picked up by the controller yet).
    Coming,
    /// Down: failed and waiting for a retry, started again after failures, or on its
    /// way down. It keeps its place but not a start slot.
    Down,
    /// Down for good (stopped, given up on, halted after an exit, never valid): it is
    /// replaced.
    Dead,
}

impl MemberState {
    /// The state of a member whose server's status is `status` (`None`: not picked
    /// up by the controller yet) and whose spec asks it to run or not.
    pub fn of(status: Option<&ServerStatus>, wants_running: bool) -> Self {
        let Some(status) = status else {
            return if wants_running {
                Self::Coming
            } else {
                Self::Dead
            };
        };
        // Kept down until its spec changes: it exited as its restart policy allows,
        // or the controller gave up on it.
        let given_up = status.halted_revision.is_some()
            || (status.phase == Phase::Failed && status.next_retry_at.is_none());
        if !wants_running || given_up {
            return Self::Dead;
        }
        match status.phase {
            Phase::Running => Self::Ready,
            Phase::Invalid => Self::Dead,
            Phase::Failed | Phase::Stopped | Phase::Stopping => Self::Down,
            // Retried after failures: down until it runs, so that a pool whose
            // template cannot come up says so rather than "starting" for ever.
            Phase::Pending | Phase::Provisioning | Phase::Starting
                if status.consecutive_crashes > 0 =>
            {
                Self::Down
            }
            Phase::Pending | Phase::Provisioning | Phase::Starting => Self::Coming,
        }
    }
}

/// What else limits the keeper.
#[derive(Debug, Clone, Copy)]
pub struct Room {
    /// Spec files there are (every server, pool or not).
    pub files: usize,
    pub max_servers: usize,
    /// Servers of users being provisioned or started: they come first.
    pub users_starting: usize,
    /// `controller.prebuilt_parallelism`.
    pub parallelism: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Members to remove.
    pub remove: Vec<String>,
    /// (template, member name) of members to create.
    pub create: Vec<(String, String)>,
}

/// The next step towards every pool having its size in members made from the current
/// config. `taken` holds the names a new member may not have: every spec file's, and
/// those whose data is left on disk (new members get the lowest free number).
pub fn plan(
    wanted: &[Wanted<'_>],
    members: &[Member<'_>],
    taken: &BTreeSet<String>,
    room: Room,
) -> Plan {
    let mut plan = Plan::default();
    let mut kept: Vec<&Member<'_>> = Vec::new();
    for member in members {
        let pool = wanted.iter().find(|w| w.template == member.template);
        match pool {
            Some(_) if member.current && member.state != MemberState::Dead => kept.push(member),
            // From an older config, of a template that has no pool any more, or down
            // for good.
            _ => plan.remove.push(member.name.to_owned()),
        }
    }
    let mut deficits = Vec::new();
    for pool in wanted {
        let mut own: Vec<&Member<'_>> = kept
            .iter()
            .copied()
            .filter(|m| m.template == pool.template)
            .collect();
        let size = pool.size as usize;
        if own.len() > size {
            // Too many: the least useful go first (not ready, then the newest).
            own.sort_by_key(|m| {
                (
                    m.state == MemberState::Ready,
                    std::cmp::Reverse(index(m.name)),
                )
            });
            let surplus = own.len() - size;
            for member in own.drain(..surplus) {
                plan.remove.push(member.name.to_owned());
                kept.retain(|k| k.name != member.name);
            }
        }
        deficits.push((pool, size - own.len()));
    }
    let coming = kept
        .iter()
        .filter(|m| m.state == MemberState::Coming)
        .count();
    let mut slots = room
        .parallelism
        .saturating_sub(coming + room.users_starting)
        .min(
            room.max_servers
                .saturating_sub(room.files.saturating_sub(plan.remove.len())),
        );
    let mut taken = taken.clone();
    // One member per pool at a time, so that every pool fills.
    while slots > 0 && deficits.iter().any(|(_, missing)| *missing > 0) {
        for (pool, missing) in deficits.iter_mut() {
            if slots == 0 || *missing == 0 {
                continue;
            }
            let name = (1..)
                .map(|n| member_name(pool.pool, n))
                .find(|name| !taken.contains(name))
                .unwrap_or_default();
            taken.insert(name.clone());
            plan.create.push((pool.template.to_owned(), name));
            *missing -= 1;
            slots -= 1;
        }
    }
    plan
}

/// The number at the end of a member's name (0 when there is none).
fn index(name: &str) -> u32 {
    name.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: Room = Room {
        files: 0,
        max_servers: 500,
        users_starting: 0,
        parallelism: 2,
    };

    fn wanted(size: u32) -> Wanted<'static> {
        Wanted {
            template: "Python Starter",
            pool: "pool-python-starter",
            size,
        }
    }

    fn member(name: &'static str, state: MemberState) -> Member<'static> {
        Member {
            name,
            template: "Python Starter",
            current: true,
            state,
        }
    }

    fn names(members: &[Member<'_>]) -> BTreeSet<String> {
        members.iter().map(|m| m.name.to_owned()).collect()
    }

    #[test]
    fn an_empty_pool_fills_a_few_at_a_time_with_the_lowest_free_numbers() {
        let taken = BTreeSet::from(["pool-python-starter-1".to_owned()]);
        let plan = plan(&[wanted(3)], &[], &taken, ROOMY);
        assert_eq!(
            plan.create,
            [
                (
                    "Python Starter".to_owned(),
                    "pool-python-starter-2".to_owned()
                ),
                (
                    "Python Starter".to_owned(),
                    "pool-python-starter-3".to_owned()
                ),
            ],
            "two at a time; -1 is another server's (a claimed one) now"
        );
        assert!(plan.remove.is_empty());
    }

    #[test]
    fn members_on_their_way_use_the_start_slots_and_users_come_first() {
        let members = [member("pool-python-starter-1", MemberState::Coming)];
        let plan1 = plan(&[wanted(5)], &members, &names(&members), ROOMY);
        assert_eq!(plan1.create.len(), 1);
        let busy = Room {
            users_starting: 1,
            ..ROOMY
        };
        assert!(
            plan(&[wanted(5)], &members, &names(&members), busy)
                .create
                .is_empty()
        );
        let down = [member("pool-python-starter-1", MemberState::Down)];
        assert_eq!(
            plan(&[wanted(1)], &down, &names(&down), ROOMY),
            Plan::default(),
            "a failed member keeps its place (the controller retries it)"
        );
    }

    #[test]
    fn a_full_pool_is_left_alone_and_a_smaller_one_loses_its_least_ready_members() {
        let members = [
            member("pool-python-starter-1", MemberState::Ready),
            member("pool-python-starter-2", MemberState::Coming),
            member("pool-python-starter-3", MemberState::Ready),
        ];
        assert_eq!(
            plan(&[wanted(3)], &members, &names(&members), ROOMY),
            Plan::default()
        );
        let smaller = plan(&[wanted(1)], &members, &names(&members), ROOMY);
        assert_eq!(
            smaller.remove,
            ["pool-python-starter-2", "pool-python-starter-3"]
        );
        assert!(smaller.create.is_empty());
    }

    #[test]
    fn members_of_an_older_template_or_of_no_pool_are_replaced() {
        let members = [
            Member {
                current: false,
                ..member("pool-python-starter-1", MemberState::Ready)
            },
            Member {
                template: "Gone",
                ..member("pool-gone-1", MemberState::Ready)
            },
        ];
        let plan = plan(&[wanted(1)], &members, &names(&members), ROOMY);
        assert_eq!(plan.remove, ["pool-python-starter-1", "pool-gone-1"]);
        assert_eq!(plan.create.len(), 1);
        assert_ne!(
            plan.create[0].1, "pool-python-starter-1",
            "a new file, not the old name"
        );
    }

    #[test]
    fn a_member_down_for_good_is_replaced() {
        let members = [
            member("pool-python-starter-1", MemberState::Dead),
            member("pool-python-starter-2", MemberState::Ready),
        ];
        let plan = plan(&[wanted(2)], &members, &names(&members), ROOMY);
        assert_eq!(plan.remove, ["pool-python-starter-1"]);
        assert_eq!(
            plan.create,
            [(
                "Python Starter".to_owned(),
                "pool-python-starter-3".to_owned()
            )]
        );
    }

    #[test]
    fn a_members_state_follows_its_status_and_its_spec() {
        type Edit = fn(&mut ServerStatus);
        /// The status's phase and what else it says (`None`: no status yet).
        type Seen = Option<(Phase, Edit)>;
        let plain: Edit = |_| {};
        let crashed: Edit = |s| s.consecutive_crashes = 2;
        let retried: Edit = |s| {
            s.consecutive_crashes = 2;
            s.next_retry_at = Some("2026-12-06T10:00:00Z".into());
        };
        let halted: Edit = |s| s.halted_revision = Some("r1".into());
        use MemberState::{Coming, Dead, Down, Ready};
        // (what the status says, whether the spec asks it to run, the state)
        let cases: [(Seen, bool, MemberState); 14] = [
            (None, true, Coming),
            (None, false, Dead),
            (Some((Phase::Running, plain)), true, Ready),
            (Some((Phase::Running, plain)), false, Dead),
            (Some((Phase::Pending, plain)), true, Coming),
            (Some((Phase::Provisioning, plain)), true, Coming),
            (Some((Phase::Starting, plain)), true, Coming),
            (Some((Phase::Starting, crashed)), true, Down),
            (Some((Phase::Failed, retried)), true, Down),
            (Some((Phase::Failed, crashed)), true, Dead),
            (Some((Phase::Stopped, halted)), true, Dead),
            (Some((Phase::Stopped, plain)), true, Down),
            (Some((Phase::Stopping, plain)), true, Down),
            (Some((Phase::Invalid, plain)), true, Dead),
        ];
        for (seen, wants_running, expected) in cases {
            let status = seen.map(|(phase, edit)| {
                let mut status = ServerStatus::new("pool-python-starter-1", uuid::Uuid::nil(), "x");
                status.phase = phase;
                edit(&mut status);
                status
            });
            assert_eq!(
                MemberState::of(status.as_ref(), wants_running),
                expected,
                "{status:?} (wants running: {wants_running})"
            );
        }
    }

    #[test]
    fn the_server_cap_holds() {
        let full = Room {
            files: 500,
            ..ROOMY
        };
        assert!(
            plan(&[wanted(3)], &[], &BTreeSet::new(), full)
                .create
                .is_empty()
        );
        let one_left = Room {
            files: 499,
            ..ROOMY
        };
        assert_eq!(
            plan(&[wanted(3)], &[], &BTreeSet::new(), one_left)
                .create
                .len(),
            1
        );
    }

    #[test]
    fn several_pools_fill_side_by_side() {
        let other = Wanted {
            template: "Data",
            pool: "pool-data",
            size: 3,
        };
        let plan = plan(&[wanted(3), other], &[], &BTreeSet::new(), ROOMY);
        let templates: Vec<_> = plan.create.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(templates, ["Python Starter", "Data"]);
    }
}
