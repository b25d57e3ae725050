//! Resource limits of one instance (`spec.resources`, `controller.default_resources`):
//! their types as written in YAML, their parsing into what the kernel takes (bytes, a
//! CPU quota per period, a process count), and how a spec's limits fall back on the
//! config's defaults. Enforcing them is the runtime's job ([`crate::runtime::cgroup`]).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Limits of one instance; every field optional (absent: unlimited, or the config's
/// default when the spec leaves it out).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Memory of all the instance's processes together, e.g. `2GiB`, `512MiB` (binary
    /// units `KiB`/`MiB`/`GiB`/`TiB` or `Ki`/`Mi`/`Gi`/`Ti`; `KB`/`MB`/`GB` are powers of
    /// ten; a bare number is bytes). Past it the kernel kills a process of the instance
    /// and the server shows "out of memory".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// CPU time as a number of cores, e.g. `1.5` (at least 0.01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Cpus>,
    /// Most processes and threads at once (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.cpus.is_none() && self.pids.is_none()
    }

    /// These limits, each one absent taken from `defaults`.
    pub fn or(self, defaults: Resources) -> Resources {
        Resources {
            memory: self.memory.or(defaults.memory),
            cpus: self.cpus.or(defaults.cpus),
            pids: self.pids.or(defaults.pids),
        }
    }

    /// Semantic checks, as `(field under the given prefix, message)` pairs.
    pub fn problems(&self, prefix: &str) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.pids == Some(0) {
            problems.push((format!("{prefix}.pids"), "must be at least 1".into()));
        }
        if self.memory.is_some_and(|m| m.0 < MIN_MEMORY) {
            problems.push((
                format!("{prefix}.memory"),
                format!("must be at least {}", ByteSize(MIN_MEMORY)),
            ));
        }
        problems
    }
}

/// Below this an instance cannot even start; the kernel takes smaller limits but they
/// only make the server fail at once.
const MIN_MEMORY: u64 = 1024 * 1024;

impl fmt::Display for Resources {
    /// `memory 2 GiB, cpus 1.5, pids 1024` (the limits set only).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(memory) = self.memory {
            parts.push(format!("memory {memory}"));
        }
        if let Some(cpus) = self.cpus {
            parts.push(format!("cpus {cpus}"));
        }
        if let Some(pids) = self.pids {
            parts.push(format!("pids {pids}"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// An amount of memory in bytes, written `2GiB`, `512MiB`, `1.5Gi` or `1073741824`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error(
        "invalid memory size `{0}`: write e.g. `512MiB`, `2GiB` (KiB, MiB, GiB, TiB; KB, MB, GB, TB; or bytes)"
    )]
    Size(String),
    #[error("invalid cpus `{0}`: write a number of cores of at least 0.01, e.g. `1.5`")]
    Cpus(String),
}

impl FromStr for ByteSize {
    type Err = ResourceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || ResourceError::Size(text.to_owned());
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" | "Ki" | "K" | "k" => 1 << 10,
            "MiB" | "Mi" | "M" => 1 << 20,
            "GiB" | "Gi" | "G" => 1 << 30,
            "TiB" | "Ti" | "T" => 1 << 40,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            _ => return Err(invalid()),
        };
        if number.is_empty() {
            return Err(invalid());
        }
        if let Ok(whole) = number.parse::<u64>() {
            return whole.checked_mul(factor).map(ByteSize).ok_or_else(invalid);
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        let bytes = (value * factor as f64).round();
        if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
            return Err(invalid());
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that keeps at least 1, with up to two decimals:
    /// `2 GiB`, `256 MiB`, `1.5 GiB`, `100 B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (unit, size) in UNITS {
            if self.0 >= size {
                let value = self.0 as f64 / size as f64;
                let text = format!("{value:.2}");
                let text = text.trim_end_matches('0').trim_end_matches('.');
                return write!(f, "{text} {unit}");
            }
        }
        write!(f, "{} B", self.0)
    }
}

impl Serialize for ByteSize {
    /// Exactly: `2GiB` when a whole number of a binary unit, else the bytes.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        match UNITS
            .iter()
            .find(|(_, size)| self.0 >= *size && self.0.is_multiple_of(*size))
        {
            Some((unit, size)) => serializer.collect_str(&format_args!("{}{unit}", self.0 / size)),
            None => serializer.serialize_u64(self.0),
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Bytes(u64),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Bytes(bytes) => Ok(ByteSize(bytes)),
            Written::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An amount of memory: `512MiB`, `2GiB`, `1.5Gi`, `800MB`, or a number of bytes.",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*([KMGT]i?B?|[kK]B|B)?\\s*$"}
            ]
        })
    }
}

/// A number of CPU cores (`1.5`), kept in thousandths so that it compares exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cpus {
    millis: u64,
}

/// The scheduling period CPU quotas are given for (cgroup v1's and v2's default).
pub const CPU_PERIOD_US: u64 = 100_000;

impl Cpus {
    /// Cores from a number such as `1.5`; at least 0.01 (the kernel's smallest quota is
    /// 1 ms per 100 ms period).
    pub fn from_cores(cores: f64) -> Result<Self, ResourceError> {
        let millis = (cores * 1000.0).round();
        if !(10.0..=1e12).contains(&millis) {
            return Err(ResourceError::Cpus(cores.to_string()));
        }
        Ok(Self {
            millis: millis as u64,
        })
    }

    /// The number of cores, as given.
    pub fn cores(self) -> f64 {
        self.millis as f64 / 1000.0
    }

    /// The CPU time allowed per [`CPU_PERIOD_US`], in microseconds.
    pub fn quota_us(self) -> u64 {
        self.millis * CPU_PERIOD_US / 1000
    }
}

impl fmt::Display for Cpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = format!("{}.{:03}", self.millis / 1000, self.millis % 1000);
        f.write_str(text.trim_end_matches('0').trim_end_matches('.'))
    }
}

impl FromStr for Cpus {
    type Err = ResourceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let cores: f64 = text
            .trim()
            .parse()
            .map_err(|_| ResourceError::Cpus(text.to_owned()))?;
        Self::from_cores(cores)
    }
}

impl Serialize for Cpus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.millis as f64 / 1000.0)
    }
}

impl<'de> Deserialize<'de> for Cpus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(f64),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Number(cores) => Cpus::from_cores(cores),
            Written::Text(text) => text.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Cpus {
    fn schema_name() -> Cow<'static, str> {
        "Cpus".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "CPU time as a number of cores, e.g. `1.5`; at least 0.01.",
            "type": "number",
            "minimum": 0.01
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_parse_into_bytes() {
        let cases = [
            ("2GiB", 2 << 30),
            ("512MiB", 512 << 20),
            ("256Mi", 256 << 20),
            ("1.5GiB", 3 << 29),
            ("64 MiB", 64 << 20),
            ("800MB", 800_000_000),
            ("4096", 4096),
            ("1K", 1024),
        ];
        for (text, bytes) in cases {
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text}");
        }
        for bad in [
            "",
            "MiB",
            "2 parsecs",
            "-1GiB",
            "1e400GiB",
            "99999999999TiB",
        ] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_sizes_print_in_the_largest_whole_unit() {
        assert_eq!(ByteSize(2 << 30).to_string(), "2 GiB");
        assert_eq!(ByteSize(256 << 20).to_string(), "256 MiB");
        assert_eq!(ByteSize(3 << 29).to_string(), "1.5 GiB");
        assert_eq!(ByteSize(100).to_string(), "100 B");
    }

    #[test]
    fn cpus_become_a_quota_per_period() {
        assert_eq!("1.5".parse::<Cpus>().map(Cpus::quota_us), Ok(150_000));
        assert_eq!(Cpus::from_cores(0.25).map(Cpus::quota_us), Ok(25_000));
        assert_eq!(Cpus::from_cores(2.0).map(Cpus::quota_us), Ok(200_000));
        assert_eq!(
            Cpus::from_cores(1.5).map(|c| c.to_string()).as_deref(),
            Ok("1.5")
        );
        for bad in [0.0, 0.001, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Cpus::from_cores(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn yaml_forms_and_defaults() {
        let written: Resources =
            crate::yaml::from_str("{memory: 2GiB, cpus: 1.5, pids: 1024}").expect("valid");
        assert_eq!(written.memory, Some(ByteSize(2 << 30)));
        assert_eq!(written.cpus.map(Cpus::quota_us), Some(150_000));
        assert_eq!(written.to_string(), "memory 2 GiB, cpus 1.5, pids 1024");
        let again: Resources =
            crate::yaml::from_str(&crate::yaml::to_string(&written).expect("yaml"))
                .expect("round trip");
        assert_eq!(again, written);
        let odd: Resources =
            crate::yaml::from_str("{memory: 1234567, cpus: 0.333}").expect("valid");
        let again: Resources = crate::yaml::from_str(&crate::yaml::to_string(&odd).expect("yaml"))
            .expect("round trip");
        assert_eq!(again, odd, "written back exactly");
        let only_pids: Resources = crate::yaml::from_str("{pids: 64}").expect("valid");
        let merged = only_pids.or(written);
        assert_eq!(merged.pids, Some(64));
        assert_eq!(merged.memory, written.memory);
        assert!(Resources::default().is_empty());
        assert!(crate::yaml::from_str::<Resources>("{memory: lots}").is_err());
        assert!(crate::yaml::from_str::<Resources>("{disk: 1GiB}").is_err());
        let problems = Resources {
            pids: Some(0),
            memory: Some(ByteSize(10)),
            cpus: None,
        }
        .problems("spec.resources");
        let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["spec.resources.pids", "spec.resources.memory"]);
    }
}
