//! Pools of prebuilt servers. A template with `prebuilt: N` (or a `prebuilt_schedule`)
//! has N servers of its own kept provisioned, running and unclaimed, so that
//! `create-from-template` hands one out at once rather than cloning the workspace,
//! copying extensions and booting code-server while the user waits.
//!
//! A pool server is an ordinary spec file, `specs/pool-<template>-<n>.yaml` with the label
//! `devbox/pool: <template>`, which the controller reconciles like any other: it is
//! adopted after a devbox restart, restarted after a crash, and seen by GitOps tools.
//! This module only writes and removes those files and hands them out:
//!
//! - [`members`]: a pool's names and fingerprint, and the spec of a new member;
//! - [`schedule`]: a pool's size at a given time (`prebuilt`, `prebuilt_schedule`);
//! - [`plan`]: what to create and remove next, as a pure function of the pools and
//!   their members;
//! - [`keeper`]: the controller's task that carries the plan out;
//! - [`claim`]: a ready member becomes a caller's server in one spec write.

pub mod claim;
pub mod keeper;
pub mod members;
pub mod plan;
pub mod schedule;

use crate::config::{Config, TemplateItem};
use crate::spec::TemplateRef;
use crate::status::StatusStore;
use plan::MemberState;

/// One template's pool, as the config defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// The template (tab and item name).
    pub template: TemplateRef,
    /// The member names' prefix, `pool-<template slug>`.
    pub name: String,
    /// What a member made now is made of ([`members::fingerprint`]): a member with
    /// another fingerprint is from an older config and is replaced.
    pub fingerprint: String,
    /// `prebuilt` and `prebuilt_schedule`.
    pub sizing: Sizing,
}

/// How big a pool is over time.
#[derive(Debug, Clone, PartialEq)]
pub struct Sizing {
    pub prebuilt: u32,
    pub schedule: Vec<(croner::Cron, u32)>,
}

/// Every pool of the config. Built once at start-up (the config does not change
/// while devbox runs); shared read-only by the keeper and the API.
#[derive(Debug, Clone, Default)]
pub struct Pools {
    pools: Vec<Pool>,
}

impl Pools {
    /// The pools of `config`'s templates that have one. A template whose spec would not
    /// resolve (the config's checks allow none) has no pool.
    pub fn of_config(config: &Config) -> Self {
        let mut pools = Vec::new();
        for tab in &config.packaged_assets.tabs {
            for item in &tab.items {
                if let Some(pool) = Self::pool_of(config, &tab.name, item) {
                    pools.push(pool);
                }
            }
        }
        Self { pools }
    }

    fn pool_of(config: &Config, tab: &str, item: &TemplateItem) -> Option<Pool> {
        if item.prebuilt == 0 && item.prebuilt_schedule.is_empty() {
            return None;
        }
        let template = TemplateRef {
            tab: tab.to_owned(),
            name: item.name.clone(),
        };
        let schedule = item
            .prebuilt_schedule
            .iter()
            .filter_map(|entry| Some((schedule::parse(&entry.cron).ok()?, entry.count)))
            .collect();
        let fingerprint = match members::fingerprint(config, &template) {
            Ok(fingerprint) => fingerprint,
            Err(problem) => {
                tracing::warn!(template = %item.name, %problem, "the template cannot have a pool");
                return None;
            }
        };
        Some(Pool {
            name: members::pool_name(&item.name),
            template,
            fingerprint,
            sizing: Sizing {
                prebuilt: item.prebuilt,
                schedule,
            },
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Pool> {
        self.pools.iter()
    }

    /// The pool of the template `name` in tab `tab`.
    pub fn get(&self, tab: &str, name: &str) -> Option<&Pool> {
        self.pools
            .iter()
            .find(|pool| pool.template.tab == tab && pool.template.name == name)
    }

    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    /// Each pool as it is now (for `GET /pools` and `/metrics`).
    pub fn figures(&self, statuses: &StatusStore) -> Vec<Figures<'_>> {
        let now = chrono::Local::now();
        self.pools
            .iter()
            .map(|pool| {
                let members = statuses.filter_map_all(|s| {
                    (s.pool.as_deref() == Some(pool.template.name.as_str()))
                        // Its spec is not read here: one asked to stop shows as down
                        // until the keeper replaces it.
                        .then(|| MemberState::of(Some(s), true))
                });
                let count =
                    |wanted: &[MemberState]| members.iter().filter(|m| wanted.contains(m)).count();
                Figures {
                    pool,
                    size: schedule::size_at(&pool.sizing, &now),
                    ready: count(&[MemberState::Ready]),
                    coming: count(&[MemberState::Coming]),
                    down: count(&[MemberState::Down, MemberState::Dead]),
                }
            })
            .collect()
    }
}

/// A pool's size and members at one moment.
#[derive(Debug, Clone)]
pub struct Figures<'a> {
    pub pool: &'a Pool,
    /// Members it keeps now.
    pub size: u32,
    /// Unclaimed members running and healthy.
    pub ready: usize,
    /// Unclaimed members on their way up.
    pub coming: usize,
    /// Unclaimed members that failed (and are retried) or were stopped.
    pub down: usize,
}
