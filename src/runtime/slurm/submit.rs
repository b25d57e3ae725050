//! Submitting a job: a [`JobRequest`] and the cluster's settings become one `sbatch`
//! command line ([`sbatch_args`], pure), with the job's script on its stdin.

use std::path::PathBuf;

use super::client::{Slurm, SlurmSettings, command_line};
use super::error::{SlurmError, error_lines, is_unreachable};
use super::job_id::{JobId, parse_sbatch_parsable};

/// One job to submit.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    /// `--job-name`: carries a token of this devbox, so that a job is recognised as its
    /// own by name as well as by id. Must not contain `|` or control characters (the
    /// separator of the listings devbox parses).
    pub name: String,
    /// The batch script ([`super::job_script`]); its first line must be `#!`.
    pub script: String,
    /// The job's stdout and stderr are appended here (on a filesystem the node sees).
    pub log_file: PathBuf,
    /// `--chdir`: where the script starts, on the node.
    pub working_dir: PathBuf,
    /// `--mem`, rounded up to whole MiB. Always give one: without it a job takes the
    /// node's whole memory under `CR_Core_Memory`.
    pub memory_bytes: Option<u64>,
    /// `--cpus-per-task`, rounded up to whole CPUs.
    pub cpus: Option<f64>,
    /// `--uid`/`--gid`: the job runs as this user (devbox must be root to ask).
    pub uid_gid: Option<(u32, u32)>,
}

const MIB: u64 = 1024 * 1024;

/// The arguments of `sbatch` for `request` on the cluster `settings` describes.
pub fn sbatch_args(
    request: &JobRequest,
    settings: &SlurmSettings,
) -> Result<Vec<String>, SlurmError> {
    if request.name.is_empty() || request.name.chars().any(|c| c == '|' || c.is_control()) {
        return Err(SlurmError::InvalidRequest(format!(
            "job name {:?} is empty or holds '|' or a control character",
            request.name
        )));
    }
    let log_file = utf8_path("log file", &request.log_file)?;
    let working_dir = utf8_path("working directory", &request.working_dir)?;
    // sbatch expands `%j`, `%u`… in file names; `%%` is a plain `%`.
    let log_file = log_file.replace('%', "%%");

    let mut args = vec![
        "--parsable".to_owned(),
        // devbox's own environment (its API token, say) stays out of the job; the
        // script exports what the program needs.
        "--export=NONE".to_owned(),
        format!("--job-name={}", request.name),
        format!("--output={log_file}"),
        format!("--error={log_file}"),
        "--open-mode=append".to_owned(),
        format!("--chdir={working_dir}"),
    ];
    if let Some(bytes) = request.memory_bytes {
        // `--mem=0` would mean "all of the node's memory".
        if bytes == 0 {
            return Err(SlurmError::InvalidRequest("memory of 0 bytes".to_owned()));
        }
        args.push(format!("--mem={}M", bytes.div_ceil(MIB)));
    }
    if let Some(cpus) = request.cpus {
        if !cpus.is_finite() || cpus <= 0.0 || cpus > f64::from(u32::MAX) {
            return Err(SlurmError::InvalidRequest(format!("{cpus} CPUs")));
        }
        // In range, checked above: the cast cannot truncate.
        args.push(format!("--cpus-per-task={}", cpus.ceil() as u32));
    }
    if let Some(time) = &settings.time_limit {
        args.push(format!("--time={time}"));
    }
    if let Some(partition) = &settings.partition {
        args.push(format!("--partition={partition}"));
    }
    if let Some(account) = &settings.account {
        args.push(format!("--account={account}"));
    }
    if let Some((uid, gid)) = request.uid_gid {
        args.push(format!("--uid={uid}"));
        args.push(format!("--gid={gid}"));
    }
    args.extend(settings.sbatch_args.iter().cloned());
    Ok(args)
}

fn utf8_path<'a>(what: &str, path: &'a std::path::Path) -> Result<&'a str, SlurmError> {
    path.to_str().ok_or_else(|| {
        SlurmError::InvalidRequest(format!("{what} {} is not UTF-8", path.display()))
    })
}

impl Slurm {
    /// Submits `request`; returns the new job's id once the controller has queued it.
    ///
    /// [`SlurmError::Refused`]: Slurm will not take this job as asked (more memory or
    /// CPUs than any node has, an unknown partition, a bad time limit); asking again
    /// is pointless. [`SlurmError::Unreachable`] or [`SlurmError::Timeout`]: the job
    /// may or may not exist (the controller can have queued it and failed to answer);
    /// look for its name with [`Slurm::jobs_named_with_prefix`] before submitting again.
    pub async fn submit(&self, request: &JobRequest) -> Result<JobId, SlurmError> {
        let args = sbatch_args(request, &self.settings)?;
        let out = self.run("sbatch", &args, Some(&request.script)).await?;
        if !out.status.success() {
            let message = error_lines(&out.stderr);
            return Err(if is_unreachable(&out.stderr) {
                SlurmError::Unreachable {
                    command: "sbatch".to_owned(),
                    message,
                }
            } else if message.is_empty() {
                SlurmError::Refused {
                    message: format!("sbatch exited with {} and said nothing", out.status),
                }
            } else {
                SlurmError::Refused { message }
            });
        }
        parse_sbatch_parsable(&out.stdout).map_err(|err| SlurmError::Parse {
            command: command_line("sbatch", &args),
            problem: err.to_string(),
            output: out.stdout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> JobRequest {
        JobRequest {
            name: "devbox-1a2b3c:alice-ide".to_owned(),
            script: "#!/bin/bash\n".to_owned(),
            log_file: PathBuf::from("/shared/logs/alice-ide.log"),
            working_dir: PathBuf::from("/shared/workspaces/alice-ide"),
            memory_bytes: None,
            cpus: None,
            uid_gid: None,
        }
    }

    #[test]
    fn the_minimal_job_keeps_devbox_environment_out_and_appends_to_the_log() {
        let args = sbatch_args(&request(), &SlurmSettings::default()).unwrap();
        assert_eq!(
            args,
            [
                "--parsable",
                "--export=NONE",
                "--job-name=devbox-1a2b3c:alice-ide",
                "--output=/shared/logs/alice-ide.log",
                "--error=/shared/logs/alice-ide.log",
                "--open-mode=append",
                "--chdir=/shared/workspaces/alice-ide",
            ]
        );
    }

    #[test]
    fn limits_settings_and_user_come_in_order_with_the_extra_args_last() {
        let request = JobRequest {
            memory_bytes: Some(1024 * 1024 * 1024 + 1),
            cpus: Some(1.5),
            uid_gid: Some((1001, 1002)),
            ..request()
        };
        let settings = SlurmSettings {
            partition: Some("interactive".to_owned()),
            account: Some("course42".to_owned()),
            sbatch_args: vec!["--qos=short".to_owned(), "--mem=2G".to_owned()],
            time_limit: Some("8:00:00".to_owned()),
        };
        let args = sbatch_args(&request, &settings).unwrap();
        assert_eq!(
            args[7..],
            [
                "--mem=1025M",
                "--cpus-per-task=2",
                "--time=8:00:00",
                "--partition=interactive",
                "--account=course42",
                "--uid=1001",
                "--gid=1002",
                "--qos=short",
                "--mem=2G",
            ]
        );
    }

    #[test]
    fn memory_is_rounded_up_to_whole_mib_and_cpus_to_whole_cpus() {
        let args = |memory_bytes, cpus| {
            sbatch_args(
                &JobRequest {
                    memory_bytes,
                    cpus,
                    ..request()
                },
                &SlurmSettings::default(),
            )
            .unwrap()[7..]
                .to_vec()
        };
        assert_eq!(args(Some(1), Some(0.1)), ["--mem=1M", "--cpus-per-task=1"]);
        assert_eq!(
            args(Some(512 * 1024 * 1024), Some(2.0)),
            ["--mem=512M", "--cpus-per-task=2"]
        );
    }

    #[test]
    fn a_percent_in_the_log_path_is_not_a_slurm_pattern() {
        let request = JobRequest {
            log_file: PathBuf::from("/logs/100%j.log"),
            ..request()
        };
        let args = sbatch_args(&request, &SlurmSettings::default()).unwrap();
        assert_eq!(args[3], "--output=/logs/100%%j.log");
    }

    #[test]
    fn requests_devbox_should_never_make_are_refused_before_sbatch() {
        let bad = [
            JobRequest {
                name: "a|b".to_owned(),
                ..request()
            },
            JobRequest {
                name: "a\nb".to_owned(),
                ..request()
            },
            JobRequest {
                name: String::new(),
                ..request()
            },
            JobRequest {
                memory_bytes: Some(0),
                ..request()
            },
            JobRequest {
                cpus: Some(0.0),
                ..request()
            },
            JobRequest {
                cpus: Some(f64::NAN),
                ..request()
            },
        ];
        for request in bad {
            let err = sbatch_args(&request, &SlurmSettings::default()).unwrap_err();
            assert!(matches!(err, SlurmError::InvalidRequest(_)), "{err:?}");
        }
    }
}
