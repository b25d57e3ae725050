//! The command layer of the Slurm backend: devbox's servers as Slurm batch jobs,
//! driven through Slurm's command-line tools.
//!
//! Slurm has no maintained Rust binding, and its REST API changes with every release;
//! `sbatch`, `squeue`, `scontrol`, `scancel` and `sstat` are the stable interface
//! (batchspawner and Open OnDemand shell out to them too). Every call runs with a
//! timeout and is killed when dropped, so a hung `slurmctld` cannot hang devbox; every
//! parser is a pure function tested on outputs captured from Slurm 22.05.
//!
//! # Layout
//!
//! - [`backend`]: [`SlurmRuntime`], the [`crate::runtime::Runtime`] made of the rest.
//! - [`client`]: [`Slurm`], the one handle the backend holds (its settings and the
//!   per-call timeout), and running one tool.
//! - [`error`]: [`SlurmError`], and how a tool's error text tells "cannot contact the
//!   controller" (state unknown) from "no such job".
//! - [`job_id`]: [`JobId`], and `sbatch --parsable`'s answer.
//! - [`submit`]: [`JobRequest`] → the `sbatch` command line.
//! - [`query`]: [`JobState`] of one job (`squeue`, and `scontrol show job` for the exit
//!   code), and waiting for a job to end.
//! - [`list`]: the live jobs whose names start with a prefix (adoption and the sweep).
//! - [`control`]: `scancel` and `scontrol update ... Comment=`.
//! - [`usage`]: memory and CPU of a running job (`sstat`).
//! - [`script`]: the bash script a job runs: start the program, find its port, report
//!   `host:port` as the job's comment, forward SIGTERM, exit with the program's status.
//!
//! # Who decides what
//!
//! Only [`JobState::Gone`] says a job is no more. Every error, and above all
//! [`SlurmError::Unreachable`] and [`SlurmError::Timeout`], means "state unknown": the
//! caller keeps treating the job as running and never submits a second one for it.

pub mod backend;
pub mod client;
pub mod control;
pub mod error;
pub mod job_id;
pub mod list;
pub mod query;
pub mod script;
pub mod submit;
pub mod usage;

pub use backend::SlurmRuntime;
pub use client::{DEFAULT_CALL_TIMEOUT, Slurm, SlurmSettings};
pub use error::SlurmError;
pub use job_id::JobId;
pub use list::NamedJob;
pub use query::{JobInfo, JobState, reported_endpoint};
pub use script::{JobScript, ScriptError, job_script};
pub use submit::JobRequest;
pub use usage::JobUsage;
