//! What a status records of the instance serving a server, tagged by the backend that
//! runs it, so that a restarted devbox adopts it: a local process group, or a Slurm job.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use crate::endpoint::Endpoint;
use crate::runtime::cgroup::InstanceCgroup;

/// The instance serving a server, as recorded for adoption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum InstanceRecord {
    Local(ProcessRecord),
    Slurm(SlurmJobRecord),
}

/// A local process group serving a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub pid: u32,
    /// Process group; equal to `pid` (each instance leads its own group).
    pub pgid: u32,
    /// Kernel start time of the process (clock ticks since boot), so a reused pid is
    /// never mistaken for ours.
    pub start_ticks: u64,
    /// Unique tag in the environment of every process of this instance, so processes
    /// that left the group (terminals run in their own sessions) are found on stop.
    #[serde(default)]
    pub instance: String,
    /// The Unix socket the instance listens on; `None`: it listens on the server's port
    /// on loopback (`listen: tcp`, and every record a devbox from before sockets wrote,
    /// so that such instances are still adopted and reached after an upgrade).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// The instance's own cgroup, when devbox could make one (a record without it, as
    /// every devbox before cgroups wrote, is an instance found by group and tag only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<InstanceCgroup>,
}

/// A Slurm job serving a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmJobRecord {
    pub job_id: u64,
    /// Unique tag in the job's name: a job id alone can be handed out again after
    /// slurmctld lost its latest state, so a job is this instance only if its name
    /// carries this tag.
    pub tag: String,
    /// The node the job runs on, once it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Where its code-server listens (`host`, `port`), once the job has said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<(String, u16)>,
}

impl InstanceRecord {
    /// The tag every part of the instance carries (a process's environment, a job's
    /// name).
    pub fn tag(&self) -> &str {
        match self {
            InstanceRecord::Local(process) => &process.instance,
            InstanceRecord::Slurm(job) => &job.tag,
        }
    }

    /// A name for logs: `process 4242`, `Slurm job 17`.
    pub fn describe(&self) -> String {
        match self {
            InstanceRecord::Local(process) => format!("process {}", process.pid),
            InstanceRecord::Slurm(job) => format!("Slurm job {}", job.job_id),
        }
    }

    /// Its identity for a list of facts: `pid 4242`, `Slurm job 17 on node n1`.
    pub fn identity(&self) -> String {
        match self {
            InstanceRecord::Local(process) => format!("pid {}", process.pid),
            InstanceRecord::Slurm(SlurmJobRecord {
                job_id,
                node: Some(node),
                ..
            }) => format!("Slurm job {job_id} on node {node}"),
            InstanceRecord::Slurm(job) => format!("Slurm job {}", job.job_id),
        }
    }

    pub fn local(&self) -> Option<&ProcessRecord> {
        match self {
            InstanceRecord::Local(process) => Some(process),
            InstanceRecord::Slurm(_) => None,
        }
    }

    /// Where devbox connects to the instance: a local process's socket, else the
    /// route `port` on loopback (`listen: tcp`); a job's host and port, once known.
    pub fn endpoint(&self, port: Option<u16>) -> Option<Endpoint> {
        match self {
            InstanceRecord::Local(process) => match &process.socket {
                Some(socket) => Some(Endpoint::Unix(socket.clone())),
                None => port.map(Endpoint::Tcp),
            },
            InstanceRecord::Slurm(job) => {
                job.address.as_ref().map(|(host, port)| Endpoint::Remote {
                    host: host.clone(),
                    port: *port,
                })
            }
        }
    }
}

/// Reads an instance record, tagged, or as the untagged process record of a status
/// file from before backends.
pub(super) fn read_record<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<InstanceRecord>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OnDisk {
        Tagged(InstanceRecord),
        Untagged(ProcessRecord),
    }
    Ok(
        Option::<OnDisk>::deserialize(deserializer)?.map(|record| match record {
            OnDisk::Tagged(record) => record,
            OnDisk::Untagged(process) => InstanceRecord::Local(process),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_tagged_and_old_ones_read_as_local() {
        let job = InstanceRecord::Slurm(SlurmJobRecord {
            job_id: 17,
            tag: "t".into(),
            node: Some("n1".into()),
            address: Some(("n1".into(), 41000)),
        });
        let json = serde_json::to_value(&job).unwrap();
        assert_eq!(json["backend"], "slurm");
        assert_eq!(json["address"], serde_json::json!(["n1", 41000]));
        assert_eq!(
            job.endpoint(Some(8020)),
            Some(Endpoint::Remote {
                host: "n1".into(),
                port: 41000
            })
        );

        #[derive(Deserialize)]
        struct Holder {
            #[serde(default, deserialize_with = "read_record")]
            record: Option<InstanceRecord>,
        }
        let old: Holder = serde_json::from_str(
            r#"{"record": {"pid": 5, "pgid": 5, "start_ticks": 1, "instance": "x"}}"#,
        )
        .unwrap();
        assert_eq!(old.record.as_ref().map(InstanceRecord::tag), Some("x"));
        assert_eq!(
            old.record.unwrap().endpoint(Some(8020)),
            Some(Endpoint::Tcp(8020))
        );
        let none: Holder = serde_json::from_str(r#"{"record": null}"#).unwrap();
        assert!(none.record.is_none());
    }
}
