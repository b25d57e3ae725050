//! [`JobId`]: a Slurm job's number, and reading it from `sbatch --parsable`.

use std::fmt;
use std::str::FromStr;

/// A Slurm job id. Unique within a cluster while the controller keeps its state; a
/// controller that lost its state can hand the same number out again, so a job is
/// recognised by its id *and* its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Slurm job id: {0:?}")]
pub struct InvalidJobId(pub String);

impl FromStr for JobId {
    type Err = InvalidJobId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // Plain digits only: `u64::from_str` would take a leading `+`.
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidJobId(text.to_owned()));
        }
        text.parse()
            .map(JobId)
            .map_err(|_| InvalidJobId(text.to_owned()))
    }
}

/// The job id in `sbatch --parsable`'s output: `id`, or `id;cluster` on a federation
/// or a multi-cluster setup.
pub fn parse_sbatch_parsable(stdout: &str) -> Result<JobId, InvalidJobId> {
    let line = stdout.trim();
    let id = line.split_once(';').map_or(line, |(id, _cluster)| id);
    id.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_round_trip() {
        let id: JobId = "13".parse().unwrap();
        assert_eq!(id, JobId(13));
        assert_eq!(id.to_string(), "13");
        for bad in ["", "+13", "13.batch", "-1", "1 3", "18446744073709551616"] {
            assert!(bad.parse::<JobId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sbatch_parsable_output_is_read_with_or_without_a_cluster() {
        // Captured: `sbatch --parsable ...` on 22.05 printed "13\n".
        assert_eq!(parse_sbatch_parsable("13\n"), Ok(JobId(13)));
        assert_eq!(parse_sbatch_parsable("4021;cluster2\n"), Ok(JobId(4021)));
        assert!(parse_sbatch_parsable("").is_err());
        assert!(parse_sbatch_parsable("Submitted batch job 13\n").is_err());
    }
}
