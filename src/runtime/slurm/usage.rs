//! What a running job uses: `sstat` on its batch step (where the job script and the
//! program run), which needs no accounting database (`JobAcctGatherType` suffices).
//!
//! sstat says nothing useful when it has no figures: right after the start (measured:
//! no output for the first seconds, until the first gathering), for a job that is not
//! running, and also when the controller cannot be reached (22.05 then prints
//! `couldn't get steps for job N` and exits 0, the same as for an unknown job). All of
//! these are "no figures now": `Ok(None)`.

use super::client::{Slurm, command_line};
use super::error::{SlurmError, failure};
use super::job_id::JobId;

/// A job's figures from `sstat`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobUsage {
    /// The batch step's peak resident memory (MaxRSS: the highest sum over its
    /// processes seen so far, not the current one).
    pub memory_bytes: u64,
    /// CPU time used so far (AveCPU: with the one task of a batch step, its total).
    pub cpu_seconds: f64,
}

/// The first line of `sstat -n -P -a -j ID.batch -o MaxRSS,AveCPU` (`4116K|00:00:03`);
/// `None` when there is none or a field is empty. (22.05's sstat has no `TotalCPU`.)
pub fn parse_sstat(stdout: &str) -> Result<Option<JobUsage>, String> {
    let Some(line) = stdout.lines().find(|line| !line.trim().is_empty()) else {
        return Ok(None);
    };
    let (rss, cpu) = line
        .split_once('|')
        .ok_or_else(|| format!("no '|' in {line:?}"))?;
    let (rss, cpu) = (rss.trim(), cpu.trim().trim_end_matches('|'));
    if rss.is_empty() || cpu.is_empty() {
        return Ok(None);
    }
    Ok(Some(JobUsage {
        memory_bytes: parse_memory(rss).ok_or_else(|| format!("memory {rss:?}"))?,
        cpu_seconds: parse_cpu_time(cpu).ok_or_else(|| format!("CPU time {cpu:?}"))?,
    }))
}

/// Slurm's memory figures: KiB-based with a unit letter (`4116K`, `1.50M`, `2G`); a
/// bare number is in bytes (sstat prints `0` so).
fn parse_memory(text: &str) -> Option<u64> {
    let (number, unit) = match text.char_indices().last()? {
        (at, c) if c.is_ascii_alphabetic() => (&text[..at], Some(c.to_ascii_uppercase())),
        _ => (text, None),
    };
    let factor: u64 = match unit {
        None => 1,
        Some('K') => 1 << 10,
        Some('M') => 1 << 20,
        Some('G') => 1 << 30,
        Some('T') => 1 << 40,
        Some('P') => 1 << 50,
        Some(_) => return None,
    };
    let value: f64 = number.parse().ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    // Within u64 for any memory a node has; `as` saturates beyond.
    Some((value * factor as f64).round() as u64)
}

/// Slurm's durations: `[days-][hours:]minutes:seconds[.fraction]` (`00:00:58`,
/// `1-02:03:04`, `01:02.345`).
fn parse_cpu_time(text: &str) -> Option<f64> {
    let (days, clock) = match text.split_once('-') {
        Some((days, clock)) => (days.parse::<u64>().ok()?, clock),
        None => (0, text),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let (hours, minutes, seconds) = match parts.as_slice() {
        [h, m, s] => (h.parse::<u64>().ok()?, m.parse::<u64>().ok()?, *s),
        [m, s] => (0, m.parse::<u64>().ok()?, *s),
        _ => return None,
    };
    let seconds: f64 = seconds.parse().ok()?;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some(((days * 24 + hours) * 60 + minutes) as f64 * 60.0 + seconds)
}

impl Slurm {
    /// The job's memory and CPU so far; `Ok(None)` when sstat has no figures (see the
    /// module's doc).
    pub async fn usage(&self, id: JobId) -> Result<Option<JobUsage>, SlurmError> {
        let args = vec![
            "-n".to_owned(),
            "-P".to_owned(),
            "-a".to_owned(),
            "-j".to_owned(),
            format!("{id}.batch"),
            "-o".to_owned(),
            "MaxRSS,AveCPU".to_owned(),
        ];
        let command = command_line("sstat", &args);
        let out = self.run("sstat", &args, None).await?;
        if !out.status.success() {
            return Err(failure(&command, out.status, &out.stderr));
        }
        parse_sstat(&out.stdout).map_err(|problem| SlurmError::Parse {
            command,
            problem,
            output: out.stdout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `sstat -n -P -a -j ID.batch -o MaxRSS,AveCPU` on Slurm 22.05.8, captured: an
    // idle `sleep` job after 5 s, and a job busy in a loop beside a 50 MiB Python.
    const IDLE: &str = "4116K|00:00:00\n";
    const BUSY_3S: &str = "71396K|00:00:03\n";
    const BUSY_58S: &str = "71396K|00:00:58\n";

    #[test]
    fn captured_figures_are_read() {
        assert_eq!(
            parse_sstat(IDLE),
            Ok(Some(JobUsage {
                memory_bytes: 4116 * 1024,
                cpu_seconds: 0.0
            }))
        );
        assert_eq!(
            parse_sstat(BUSY_3S),
            Ok(Some(JobUsage {
                memory_bytes: 71396 * 1024,
                cpu_seconds: 3.0
            }))
        );
        assert_eq!(parse_sstat(BUSY_58S).unwrap().unwrap().cpu_seconds, 58.0);
    }

    #[test]
    fn no_output_is_no_figures() {
        // Right after the start, for an ended job (stderr: "StepId=14.batch not found
        // running."), and with the controller down (stderr: "couldn't get steps for
        // job 13"): exit 0, nothing on stdout.
        assert_eq!(parse_sstat(""), Ok(None));
        assert_eq!(parse_sstat("|\n"), Ok(None));
    }

    #[test]
    fn every_unit_and_duration_form_slurm_prints_is_read() {
        assert_eq!(parse_memory("0"), Some(0));
        assert_eq!(parse_memory("1.50M"), Some(1_572_864));
        assert_eq!(parse_memory("2G"), Some(2 << 30));
        assert_eq!(parse_memory("3k"), Some(3072));
        assert_eq!(parse_cpu_time("1-02:03:04"), Some(93_784.0));
        assert_eq!(parse_cpu_time("01:02.345"), Some(62.345));
        assert_eq!(parse_cpu_time("10:00:00"), Some(36_000.0));
    }

    #[test]
    fn nonsense_is_an_error_never_a_panic() {
        for bad in [
            "4116K",
            "4116X|00:00:00",
            "K|00:00:00",
            "-1K|00:00:00",
            "1K|soon",
        ] {
            assert!(parse_sstat(bad).is_err(), "{bad}");
        }
        for bad in ["", "1:2:3:4", "x-01:00", "00:-1"] {
            assert_eq!(parse_cpu_time(bad), None, "{bad}");
        }
    }
}
