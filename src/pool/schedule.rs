//! A pool's size at a given time: the `count` of the `prebuilt_schedule` entry that
//! fired last, or `prebuilt` without a schedule (a cron expression repeats: one of a
//! schedule's entries has always fired). Cron expressions are POSIX's five fields, in
//! the host's local time.

use std::str::FromStr;

use chrono::{DateTime, TimeZone};
use croner::Cron;

use super::Sizing;

/// Why a schedule entry's `cron` is not one.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "`{0}` is not a cron expression of five fields (minute hour day-of-month month \
         day-of-week)"
    )]
    FieldCount(String),
    #[error("`{expression}`: {source}")]
    Invalid {
        expression: String,
        source: croner::errors::CronError,
    },
}

/// A schedule entry's `cron`.
pub fn parse(expression: &str) -> Result<Cron, ScheduleError> {
    if expression.split_whitespace().count() != 5 {
        return Err(ScheduleError::FieldCount(expression.to_owned()));
    }
    Cron::from_str(expression).map_err(|source| ScheduleError::Invalid {
        expression: expression.to_owned(),
        source,
    })
}

/// The pool's size at `now`.
pub fn size_at<Tz: TimeZone>(sizing: &Sizing, now: &DateTime<Tz>) -> u32
where
    DateTime<Tz>: croner::CronDateTime,
{
    sizing
        .schedule
        .iter()
        .filter_map(|(cron, count)| Some((cron.find_previous_occurrence(now, true).ok()?, *count)))
        .max_by(|(a, _), (b, _)| a.cmp(b))
        .map_or(sizing.prebuilt, |(_, count)| count)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn sizing(prebuilt: u32, entries: &[(&str, u32)]) -> Sizing {
        Sizing {
            prebuilt,
            schedule: entries
                .iter()
                .map(|(cron, count)| (parse(cron).expect("a valid expression"), *count))
                .collect(),
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a valid time")
            .with_timezone(&Utc)
    }

    #[test]
    fn the_entry_that_fired_last_sets_the_size() {
        // A class on Mondays: 30 seats from 8:30, none from noon.
        let class = sizing(2, &[("30 8 * * MON", 30), ("0 12 * * MON", 0)]);
        // 2026-12-07 is a Monday.
        assert_eq!(
            size_at(&class, &at("2026-12-07T08:29:00Z")),
            0,
            "since last Monday noon"
        );
        assert_eq!(size_at(&class, &at("2026-12-07T08:30:00Z")), 30);
        assert_eq!(size_at(&class, &at("2026-12-07T11:59:59Z")), 30);
        assert_eq!(size_at(&class, &at("2026-12-07T12:00:00Z")), 0);
        assert_eq!(size_at(&class, &at("2026-12-10T09:00:00Z")), 0);
    }

    #[test]
    fn without_a_schedule_the_size_is_prebuilt() {
        assert_eq!(size_at(&sizing(3, &[]), &at("2026-12-07T08:00:00Z")), 3);
    }

    #[test]
    fn bad_expressions_are_refused_with_the_expression() {
        for bad in [
            "* * * *",
            "0 0 * * * *",
            "61 * * * *",
            "0 25 * * *",
            "often",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.to_string().contains(bad), "{err}");
        }
        assert!(parse("*/15 8-17 * * MON-FRI").is_ok());
    }
}
