//! Port ownership: each code-server port belongs to exactly one server.
//!
//! Allocation happens under one lock, so two servers never get the same port. A port a
//! foreign process listens on is skipped (never killed); a spec that pins such a port
//! gets a clear error instead. A port a spec pins stays reserved for it while its server
//! is stopped; any other port returns to the pool when its server stops.

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
    #[error("port {port} is outside the range {start}-{end}")]
    OutOfRange { port: u16, start: u16, end: u16 },
}

/// Which server holds which port, and which ports specs pin.
///
/// A `std::sync::Mutex` suffices: every critical section is a map lookup plus at most a
/// few non-blocking `bind` probes, never an `.await`.
pub struct PortAllocator {
    range: PortRange,
    inner: Mutex<Ports>,
}

#[derive(Default)]
struct Ports {
    /// Ports held by a server (running, or about to start).
    held: BTreeMap<u16, String>,
    /// Ports pinned by specs: never handed to another server, running or not.
    pinned: BTreeMap<u16, Pin>,
}

struct Pin {
    name: String,
    /// Made for a spec file that is about to be written ([`PortAllocator::pin_free`],
    /// [`PortAllocator::pin`]) rather than read from one. It lasts until a scan sees a
    /// spec file of that name (which then speaks for itself) or its maker drops it, so
    /// a scan that ran between the pin and the write cannot free the port.
    pending: bool,
}

impl Ports {
    /// Pins `port` for the spec file about to be written for `name`.
    fn add_pin(&mut self, port: u16, name: &str) {
        self.pinned.insert(
            port,
            Pin {
                name: name.to_owned(),
                pending: true,
            },
        );
    }

    /// Whether `port` is free for `name`: nobody else holds or pins it.
    fn free_for(&self, port: u16, name: &str) -> bool {
        self.held.get(&port).is_none_or(|owner| owner == name)
            && self.pinned.get(&port).is_none_or(|pin| pin.name == name)
    }
}

impl PortAllocator {
    pub fn new(range: PortRange) -> Self {
        Self {
            range,
            inner: Mutex::new(Ports::default()),
        }
    }

    /// The server holding `port`, if any.
    pub fn owner(&self, port: u16) -> Option<String> {
        self.lock().held.get(&port).cloned()
    }

    /// Records the ports the spec files pin, as a scan read them. `has_spec_file(name)`
    /// tells whether that scan saw a spec file for `name`: pending pins of names it did
    /// not see are kept (their files may be written right now).
    pub fn set_pinned(&self, pinned: BTreeMap<u16, String>, has_spec_file: impl Fn(&str) -> bool) {
        let mut ports = self.lock();
        let mut next: BTreeMap<u16, Pin> = pinned
            .into_iter()
            .map(|(port, name)| {
                let pin = Pin {
                    name,
                    pending: false,
                };
                (port, pin)
            })
            .collect();
        for (port, pin) in std::mem::take(&mut ports.pinned) {
            if pin.pending && !has_spec_file(&pin.name) {
                next.entry(port).or_insert(pin);
            }
        }
        ports.pinned = next;
    }

    /// Picks a free port for a spec about to be written for `name`, and pins it at once
    /// so that concurrent callers get distinct ports.
    pub fn pin_free(&self, name: &str) -> Result<u16, PortError> {
        let mut ports = self.lock();
        let port = (self.range.start..=self.range.end)
            .find(|p| ports.free_for(*p, name) && !ports.pinned.contains_key(p) && is_bindable(*p))
            .ok_or(PortError::Exhausted {
                start: self.range.start,
                end: self.range.end,
            })?;
        ports.add_pin(port, name);
        Ok(port)
    }

    /// Drops a pin made by [`Self::pin_free`] whose spec was never written.
    pub fn unpin(&self, name: &str, port: u16) {
        let mut ports = self.lock();
        if ports
            .pinned
            .get(&port)
            .is_some_and(|pin| pin.name == name && pin.pending)
        {
            ports.pinned.remove(&port);
        }
    }

    /// Pins `port` for a spec about to be written for `name` (an explicit port), if no
    /// other server holds or pins it; of concurrent callers for one port, one wins.
    pub fn pin(&self, name: &str, port: u16) -> Result<(), PortError> {
        let mut ports = self.lock();
        self.check_free_in(&ports, name, port)?;
        ports.add_pin(port, name);
        Ok(())
    }

    /// Whether `port` may be pinned by a new spec for `name` (for explicit ports).
    pub fn check_free(&self, name: &str, port: u16) -> Result<(), PortError> {
        self.check_free_in(&self.lock(), name, port)
    }

    fn check_free_in(&self, ports: &Ports, name: &str, port: u16) -> Result<(), PortError> {
        let other = |owner: &&String| *owner != name;
        if let Some(owner) = ports
            .held
            .get(&port)
            .filter(other)
            .or_else(|| ports.pinned.get(&port).map(|p| &p.name).filter(other))
        {
            return Err(PortError::Taken {
                port,
                owner: owner.clone(),
            });
        }
        if !self.range.contains(port) {
            return Err(PortError::OutOfRange {
                port,
                start: self.range.start,
                end: self.range.end,
            });
        }
        Ok(())
    }

    /// Records that `name` holds `port` (a server adopted after a devbox restart).
    pub fn claim(&self, name: &str, port: u16) {
        let mut ports = self.lock();
        ports.held.retain(|_, owner| owner != name);
        ports.held.entry(port).or_insert_with(|| name.to_owned());
    }

    /// Gives `name` a port to start on: `pinned` when the spec names one, else
    /// `preferred` (the port it had before) when still free, else the first free one in
    /// the range. Ports that other servers hold or that other specs pin are never given.
    pub fn reserve(
        &self,
        name: &str,
        pinned: Option<u16>,
        preferred: Option<u16>,
    ) -> Result<u16, PortError> {
        let mut ports = self.lock();
        let port = match pinned {
            Some(port) => {
                if let Some(owner) = ports.held.get(&port).filter(|owner| *owner != name) {
                    return Err(PortError::Taken {
                        port,
                        owner: owner.clone(),
                    });
                }
                if !is_bindable(port) {
                    return Err(PortError::InUse { port });
                }
                port
            }
            None => {
                let usable =
                    |p: u16| self.range.contains(p) && ports.free_for(p, name) && is_bindable(p);
                preferred
                    .filter(|p| usable(*p))
                    .or_else(|| (self.range.start..=self.range.end).find(|p| usable(*p)))
                    .ok_or(PortError::Exhausted {
                        start: self.range.start,
                        end: self.range.end,
                    })?
            }
        };
        ports.held.retain(|_, owner| owner != name);
        ports.held.insert(port, name.to_owned());
        Ok(port)
    }

    /// Gives up the port `name` holds (it stays reserved if its spec pins it).
    pub fn release(&self, name: &str) {
        self.lock().held.retain(|_, owner| owner != name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ports> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
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

    /// A range of `n` ports that were free a moment ago: its own for each call (tests run
    /// in parallel, and one holds a port of its range on purpose), spread by the pid
    /// over test processes, and below the kernel's ephemeral ports (32768 and up), which
    /// any outgoing connection may take at any moment.
    fn free_range(n: u16) -> PortRange {
        use std::sync::atomic::{AtomicU16, Ordering};
        static NEXT: AtomicU16 = AtomicU16::new(0);
        let base = 22_000 + (std::process::id() % 50) as u16 * 100;
        for _ in 0..100 {
            let start = base + NEXT.fetch_add(n, Ordering::Relaxed) % 5_000;
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
    fn distinct_ports_preferred_reuse_and_release() {
        let range = free_range(3);
        let ports = PortAllocator::new(range);
        let a = ports.reserve("a", None, None).unwrap();
        let b = ports.reserve("b", None, None).unwrap();
        assert_ne!(a, b);
        assert_eq!(
            ports.reserve("a", None, Some(a)).unwrap(),
            a,
            "a gets its old port back"
        );
        assert_eq!(ports.owner(b).as_deref(), Some("b"));
        ports.release("b");
        assert_eq!(ports.owner(b), None);
        assert_eq!(
            ports.reserve("c", None, None).unwrap(),
            b,
            "a released port is reused"
        );
    }

    #[test]
    fn pinned_ports_are_never_handed_out() {
        let range = free_range(2);
        let ports = PortAllocator::new(range);
        ports.set_pinned(BTreeMap::from([(range.start, "pinner".to_owned())]), |_| {
            true
        });
        assert_eq!(
            ports.reserve("a", None, Some(range.start)).unwrap(),
            range.end
        );
        assert!(
            ports.reserve("b", None, None).is_err(),
            "the only other port is pinned"
        );
        assert_eq!(
            ports.reserve("pinner", Some(range.start), None).unwrap(),
            range.start
        );
    }

    #[test]
    fn pins_for_unwritten_spec_files_survive_scans() {
        let range = free_range(3);
        let ports = PortAllocator::new(range);
        let a = ports.pin_free("a").unwrap();
        let b = ports.pin_free("b").unwrap();
        assert_ne!(a, b);
        // A scan that did not see the files of `a` and `b` (not written yet, however
        // late the scan began) keeps their pins.
        ports.set_pinned(BTreeMap::new(), |_| false);
        assert_eq!(ports.pin_free("c").unwrap(), range.end);
        assert!(matches!(
            ports.check_free("d", a),
            Err(PortError::Taken { .. })
        ));
        ports.unpin("c", range.end);
        assert!(
            ports.check_free("d", range.end).is_ok(),
            "an unpinned port is free again"
        );
        // A scan that saw their files takes the pins from the files: `a`'s file pins
        // its port, `b`'s file no longer does.
        ports.set_pinned(BTreeMap::from([(a, "a".to_owned())]), |name| {
            name == "a" || name == "b"
        });
        assert!(ports.check_free("d", a).is_err());
        assert!(ports.check_free("d", b).is_ok());
        // Once `a`'s file is gone, so is its pin.
        ports.set_pinned(BTreeMap::new(), |_| false);
        assert!(ports.check_free("d", a).is_ok());
    }

    #[test]
    fn foreign_listener_is_skipped_and_pinned_conflicts_are_errors() {
        let range = free_range(2);
        let _foreign = TcpListener::bind((Ipv4Addr::LOCALHOST, range.start)).unwrap();
        let ports = PortAllocator::new(range);
        assert_eq!(ports.reserve("a", None, None).unwrap(), range.end);
        assert_eq!(
            ports.reserve("b", Some(range.start), None),
            Err(PortError::InUse { port: range.start })
        );
        assert_eq!(
            ports.reserve("b", Some(range.end), None),
            Err(PortError::Taken {
                port: range.end,
                owner: "a".into()
            })
        );
        assert_eq!(
            ports.reserve("c", None, None),
            Err(PortError::Exhausted {
                start: range.start,
                end: range.end
            })
        );
    }
}
