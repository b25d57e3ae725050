//! Port ownership: each code-server port belongs to exactly one server.
//!
//! Allocation happens under one lock, so two servers never get the same port. A port a
//! foreign process listens on is skipped (never killed); a spec that pins such a port
//! gets a clear error instead.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

use crate::config::PortRange;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("port {port} belongs to server `{owner}`")]
    Taken { port: u16, owner: String },
    #[error("port {port} is in use by another process (not managed by devbox)")]
    InUse { port: u16 },
    #[error("no free port left in {start}-{end}")]
    Exhausted { start: u16, end: u16 },
}

/// Which server owns which port.
///
/// A `std::sync::Mutex` suffices: every critical section is a map lookup plus at most a
/// few non-blocking `bind` probes, never an `.await`.
pub struct PortAllocator {
    range: PortRange,
    owners: Mutex<BTreeMap<u16, String>>,
}

impl PortAllocator {
    pub fn new(range: PortRange) -> Self {
        Self {
            range,
            owners: Mutex::new(BTreeMap::new()),
        }
    }

    /// The server owning `port`, if any.
    pub fn owner(&self, port: u16) -> Option<String> {
        self.lock().get(&port).cloned()
    }

    /// Records that `name` holds `port` (a server adopted after a devbox restart).
    pub fn claim(&self, name: &str, port: u16) {
        let mut owners = self.lock();
        owners.retain(|_, owner| owner != name);
        owners.entry(port).or_insert_with(|| name.to_owned());
    }

    /// Gives `name` a port to start on: `pinned` when the spec names one, else the
    /// port it held before when still free, else the first free one in the range.
    pub fn reserve(&self, name: &str, pinned: Option<u16>) -> Result<u16, PortError> {
        let mut owners = self.lock();
        let current = owners
            .iter()
            .find(|(_, owner)| *owner == name)
            .map(|(port, _)| *port);
        if let Some(port) = pinned {
            if let Some(owner) = owners.get(&port).filter(|owner| *owner != name) {
                return Err(PortError::Taken {
                    port,
                    owner: owner.clone(),
                });
            }
            if !is_bindable(port) {
                return Err(PortError::InUse { port });
            }
            owners.retain(|_, owner| owner != name);
            owners.insert(port, name.to_owned());
            return Ok(port);
        }
        if let Some(port) = current.filter(|p| self.range.contains(*p) && is_bindable(*p)) {
            return Ok(port);
        }
        let free = (self.range.start..=self.range.end)
            .find(|p| !owners.contains_key(p) && is_bindable(*p));
        match free {
            Some(port) => {
                owners.retain(|_, owner| owner != name);
                owners.insert(port, name.to_owned());
                Ok(port)
            }
            None => Err(PortError::Exhausted {
                start: self.range.start,
                end: self.range.end,
            }),
        }
    }

    /// Gives up every port `name` holds.
    pub fn release(&self, name: &str) {
        self.lock().retain(|_, owner| owner != name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u16, String>> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether nothing listens on 127.0.0.1:`port` (std sets SO_REUSEADDR, so ports in
/// TIME_WAIT count as free, as they do for code-server).
fn is_bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A range of `n` ports that were free a moment ago.
    fn free_range(n: u16) -> PortRange {
        for start in (40000..60000).step_by(97) {
            if (start..start + n).all(is_bindable) {
                return PortRange {
                    start,
                    end: start + n - 1,
                };
            }
        }
        panic!("no free port range");
    }

    #[test]
    fn distinct_ports_and_stable_reuse() {
        let range = free_range(3);
        let ports = PortAllocator::new(range);
        let a = ports.reserve("a", None).unwrap();
        let b = ports.reserve("b", None).unwrap();
        assert_ne!(a, b);
        assert_eq!(ports.reserve("a", None).unwrap(), a, "a keeps its port");
        assert_eq!(ports.owner(b).as_deref(), Some("b"));
        ports.release("b");
        assert_eq!(ports.owner(b), None);
    }

    #[test]
    fn foreign_listener_is_skipped_and_pinned_conflicts_are_errors() {
        let range = free_range(2);
        let _foreign = TcpListener::bind((Ipv4Addr::LOCALHOST, range.start)).unwrap();
        let ports = PortAllocator::new(range);
        assert_eq!(ports.reserve("a", None).unwrap(), range.end);
        assert_eq!(
            ports.reserve("b", Some(range.start)),
            Err(PortError::InUse { port: range.start })
        );
        assert_eq!(
            ports.reserve("b", Some(range.end)),
            Err(PortError::Taken {
                port: range.end,
                owner: "a".into()
            })
        );
        assert_eq!(
            ports.reserve("c", None),
            Err(PortError::Exhausted {
                start: range.start,
                end: range.end
            })
        );
    }
}
