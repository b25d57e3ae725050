//! The live jobs whose names start with a prefix: how a devbox finds the jobs it
//! submitted (their names start with a token of its own) when no status records them,
//! after a crash between submitting and recording.

use super::client::{Slurm, command_line};
use super::error::{SlurmError, failure};
use super::job_id::JobId;

/// A live job: queued, starting, running, suspended or ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedJob {
    pub id: JobId,
    pub name: String,
}

/// The jobs of `squeue -h -o '%i|%j'` whose names start with `prefix`. The id is read
/// up to the first `|`, so names may hold `|`, `:` or `-`.
pub fn parse_named_jobs(stdout: &str, prefix: &str) -> Result<Vec<NamedJob>, String> {
    let mut jobs = Vec::new();
    for line in stdout.lines().filter(|line| !line.trim().is_empty()) {
        let (id, name) = line
            .split_once('|')
            .ok_or_else(|| format!("no '|' in {line:?}"))?;
        if !name.starts_with(prefix) {
            continue;
        }
        let id = id.parse().map_err(|err| format!("{err} in {line:?}"))?;
        jobs.push(NamedJob {
            id,
            name: name.to_owned(),
        });
    }
    Ok(jobs)
}

impl Slurm {
    /// The live jobs (PENDING, RUNNING, CONFIGURING, COMPLETING, SUSPENDED) whose
    /// names start with `prefix`: devbox's user's jobs, or everyone's when devbox runs
    /// as root (then it submits for other users with `--uid`).
    pub async fn jobs_named_with_prefix(&self, prefix: &str) -> Result<Vec<NamedJob>, SlurmError> {
        let mut args: Vec<String> = ["-h", "-t", "PD,R,CF,CG,S", "-o", "%i|%j"]
            .map(str::to_owned)
            .into();
        if !nix::unistd::geteuid().is_root() {
            args.push("--me".to_owned());
        }
        let command = command_line("squeue", &args);
        let out = self.run("squeue", &args, None).await?;
        if !out.status.success() {
            return Err(failure(&command, out.status, &out.stderr));
        }
        parse_named_jobs(&out.stdout, prefix).map_err(|problem| SlurmError::Parse {
            command,
            problem,
            output: out.stdout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `squeue -h -t PD,R,CF,CG,S -o '%i|%j'` on Slurm 22.05.8, captured with five jobs
    // queued or running (one named by hand with a space and a `|`).
    const LISTING: &str = "\
16|devbox-t
17|devbox-t
13|devbox-abc:srv-1|x
23|devbox-xxxx with space|pipe
24|jupyter-notebook
";

    #[test]
    fn jobs_are_picked_by_name_prefix_with_names_kept_whole() {
        let jobs = parse_named_jobs(LISTING, "devbox-abc:").unwrap();
        assert_eq!(
            jobs,
            [NamedJob {
                id: JobId(13),
                name: "devbox-abc:srv-1|x".to_owned()
            }]
        );
        let ids: Vec<u64> = parse_named_jobs(LISTING, "devbox-")
            .unwrap()
            .iter()
            .map(|job| job.id.0)
            .collect();
        assert_eq!(ids, [16, 17, 13, 23]);
    }

    #[test]
    fn nothing_queued_is_an_empty_list() {
        assert_eq!(parse_named_jobs("", "devbox-"), Ok(vec![]));
    }

    #[test]
    fn a_broken_line_of_ours_is_an_error_and_others_lines_are_ignored() {
        assert!(parse_named_jobs("13 devbox-abc\n", "devbox").is_err());
        assert!(parse_named_jobs("x|devbox-abc\n", "devbox").is_err());
        assert_eq!(parse_named_jobs("x|other\n", "devbox"), Ok(vec![]));
    }
}
