//! What a pool's members are called and made of: the names `pool-<template slug>-<n>`,
//! the fingerprint of the template they were made from, and the spec of a new member.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::Pool;
use crate::config::{Config, SettingsMap};
use crate::spec::{self, ApiVersion, DesiredState, DevServer, DevServerSpec, Kind, Metadata};
use crate::spec::{POOL_FINGERPRINT_ANNOTATION, POOL_LABEL, POOL_NAME_PREFIX, TemplateRef};

/// Longest pool name: a member's name (`<pool>-<n>`, n of up to five digits) stays a
/// valid server name (63 characters).
const MAX_POOL_NAME: usize = 57;

/// `pool-` and the template's name in lower case, every run of other characters than
/// letters and digits as one `-`.
pub fn pool_name(template: &str) -> String {
    let mut name = String::from(POOL_NAME_PREFIX);
    for c in template.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    name.truncate(MAX_POOL_NAME);
    let trimmed = name.trim_end_matches('-').len();
    name.truncate(trimmed);
    if name == "pool" {
        name.push_str("-template");
    }
    name
}

/// The name of member `n` of pool `pool`.
pub fn member_name(pool: &str, n: u32) -> String {
    format!("{pool}-{n}")
}

/// Why a template cannot have a pool: a server made from it would not resolve.
#[derive(Debug, thiserror::Error)]
#[error("a server made from the template is not valid: {}", problems.join("; "))]
pub struct UnfitTemplate {
    pub problems: Vec<String>,
}

/// What a server of `template` is made of (groups, extensions, settings, repository
/// and ref, limits, backend): the restart hash of a spec made from it alone. An edit of
/// the template (or of a group it uses) gives another.
pub fn fingerprint(config: &Config, template: &TemplateRef) -> Result<String, UnfitTemplate> {
    let name = "pool-fingerprint";
    let server = server(name, template, BTreeMap::new());
    let file = config.controller.specs_dir.join(format!("{name}.yaml"));
    spec::resolve(&file, "", &server, config)
        .map(|resolved| resolved.hash)
        .map_err(|problems| UnfitTemplate {
            problems: problems.iter().map(ToString::to_string).collect(),
        })
}

/// The spec of member `name` of `pool`: the template, running, no owner, labelled.
pub fn new_member(pool: &Pool, name: &str) -> DevServer {
    let annotations = BTreeMap::from([(
        POOL_FINGERPRINT_ANNOTATION.to_owned(),
        pool.fingerprint.clone(),
    )]);
    let mut server = server(name, &pool.template, annotations);
    server
        .metadata
        .labels
        .insert(POOL_LABEL.to_owned(), pool.template.name.clone());
    server
}

fn server(name: &str, template: &TemplateRef, annotations: BTreeMap<String, String>) -> DevServer {
    DevServer {
        api_version: ApiVersion::V1,
        kind: Kind::DevServer,
        metadata: Metadata {
            name: name.to_owned(),
            display_name: None,
            id: Some(Uuid::new_v4()),
            owner: None,
            labels: BTreeMap::new(),
            annotations,
        },
        spec: DevServerSpec {
            state: DesiredState::Running,
            port: None,
            extension_groups: Vec::new(),
            extensions: Vec::new(),
            user_settings: SettingsMap::new(),
            workspace: None,
            template: Some(template.clone()),
            env: Default::default(),
            restart_policy: Default::default(),
            idle_timeout: None,
            resources: None,
            runtime: None,
        },
    }
}

/// Whether `server` is an unclaimed member of `pool` made from the template as it is
/// now, asked to run.
pub fn is_current_member(server: &DevServer, pool: &Pool) -> bool {
    server.spec.state == DesiredState::Running
        && server.metadata.unclaimed_pool() == Some(pool.template.name.as_str())
        && server.spec.template.as_ref() == Some(&pool.template)
        && server.metadata.annotations.get(POOL_FINGERPRINT_ANNOTATION) == Some(&pool.fingerprint)
}

/// Takes `server` out of its pool: what a claim writes besides the new owner.
pub fn release(server: &mut DevServer) {
    server.metadata.labels.remove(POOL_LABEL);
    server
        .metadata
        .annotations
        .remove(POOL_FINGERPRINT_ANNOTATION);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_names_are_server_names_for_any_template_name() {
        assert_eq!(pool_name("Databricks Workshop"), "pool-databricks-workshop");
        assert_eq!(pool_name("C++ / Rust (2026)"), "pool-c-rust-2026");
        assert_eq!(pool_name("???"), "pool-template");
        let long = pool_name(&"x".repeat(200));
        assert!(spec::is_valid_name(&member_name(&long, 99_999)));
        assert!(spec::is_valid_name(&member_name(&pool_name("é"), 1)));
    }
}
