//! Ports held by running servers, inside the controller: which server's instance holds
//! which route number (`/vscode/<port>/`) right now.
//!
//! The spec files alone own port pins: the spec writer ([`crate::spec_files`]) picks a
//! free number for a new spec under its own lock and writes it, and the scan decides
//! between two files that pin one port. The allocator learns what the files pin from
//! each scan ([`PortAllocator::set_file_pins`]) and only tracks what is held: a port is
//! reserved when a server starts, claimed when a running server is adopted after a
//! restart, and released when it stops. A server whose spec pins no port gets one here
//! at start, never a port another file pins or another server holds. With
//! `code_server.listen: tcp` a port a foreign process listens on is skipped (never
//! killed), and a spec that pins such a port gets a clear error; with Unix sockets (the
//! default) the number is only a route, and nothing is probed.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, Mutex};

use crate::config::{ListenMode, PortRange};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("port {port} belongs to server `{owner}`")]
    Taken { port: u16, owner: String },
    #[error("port {port} is in use by another process (not managed by devbox)")]
    InUse { port: u16 },
    #[error("no free port left in {start}-{end}")]
    Exhausted { start: u16, end: u16 },
}

/// Which server holds which port, and which ports the spec files pin (as the last scan
/// read them). Shared by the controller's reconciler tasks in an `Arc`; the spec writer
/// sees it read-only through [`HeldPorts`].
///
/// A `std::sync::Mutex` suffices: every critical section is a map lookup plus at most a
/// few non-blocking `bind` probes, never an `.await`.
pub struct PortAllocator {
    range: PortRange,
    /// Whether instances listen on their TCP port (`listen: tcp`), so that a port must
    /// be bindable to be given.
    probe: bool,
    inner: Mutex<Ports>,
}

#[derive(Default)]
struct Ports {
    /// Ports held by a server (running, or about to start).
    held: BTreeMap<u16, String>,
    /// Ports pinned by spec files, by the server whose file won each: never given to
    /// another server.
    file_pins: BTreeMap<u16, String>,
}

impl Ports {
    /// Whether `port` is free for `name`: nobody else holds it, and no other file pins it.
    fn free_for(&self, port: u16, name: &str) -> bool {
        self.held.get(&port).is_none_or(|owner| owner == name)
            && self.file_pins.get(&port).is_none_or(|owner| owner == name)
    }
}

impl PortAllocator {
    pub fn new(range: PortRange, listen: ListenMode) -> Self {
        Self {
            range,
            probe: listen == ListenMode::Tcp,
            inner: Mutex::new(Ports::default()),
        }
    }

    /// The server holding `port`, if any.
    pub fn owner(&self, port: u16) -> Option<String> {
        self.lock().held.get(&port).cloned()
    }

    /// A read-only view of the held ports, for the spec writer.
    pub fn held_view(self: &Arc<Self>) -> HeldPorts {
        HeldPorts(self.clone())
    }

    /// Records the ports the spec files pin, by server, as a scan decided them: the
    /// files speak, so whatever the previous scan said is replaced.
    pub fn set_file_pins(&self, pins: BTreeMap<u16, String>) {
        self.lock().file_pins = pins;
    }

    /// Records that `name` holds `port` (a server adopted after a devbox restart).
    pub fn claim(&self, name: &str, port: u16) {
        let mut ports = self.lock();
        ports.held.retain(|_, owner| owner != name);
        ports.held.entry(port).or_insert_with(|| name.to_owned());
    }

    /// Gives `name` a port to start on: `pinned` when its spec names one, else
    /// `preferred` (the port it had before) when still free, else the first free one in
    /// the range. Ports other servers hold, and (unless pinned) ports other spec files
    /// pin, as the last scan read them or as `pinned_elsewhere` says of the files now,
    /// are never given.
    pub fn reserve(
        &self,
        name: &str,
        pinned: Option<u16>,
        preferred: Option<u16>,
        pinned_elsewhere: &dyn Fn(u16) -> bool,
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
                if !self.bindable(port) {
                    return Err(PortError::InUse { port });
                }
                port
            }
            None => {
                let usable = |p: u16| {
                    self.range.contains(p)
                        && ports.free_for(p, name)
                        && !pinned_elsewhere(p)
                        && self.bindable(p)
                };
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

    /// Gives up the port `name` holds.
    pub fn release(&self, name: &str) {
        self.lock().held.retain(|_, owner| owner != name);
    }

    fn bindable(&self, port: u16) -> bool {
        !self.probe || is_bindable(port)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ports> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the controller's servers hold, as the spec writer may see it: it reads, never
/// changes. Cloning shares the allocator.
#[derive(Clone)]
pub struct HeldPorts(Arc<PortAllocator>);

impl HeldPorts {
    /// Every held port and its server, at this moment.
    pub fn snapshot(&self) -> BTreeMap<u16, String> {
        self.0.lock().held.clone()
    }
}

/// Whether nothing listens on 127.0.0.1:`port` (std sets SO_REUSEADDR, so ports in
/// TIME_WAIT count as free, as they do for code-server).
pub fn is_bindable(port: u16) -> bool {
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
        let ports = PortAllocator::new(range, ListenMode::Tcp);
        let a = ports.reserve("a", None, None, &|_| false).unwrap();
        let b = ports.reserve("b", None, None, &|_| false).unwrap();
        assert_ne!(a, b);
        assert_eq!(
            ports.reserve("a", None, Some(a), &|_| false).unwrap(),
            a,
            "a gets its old port back"
        );
        assert_eq!(ports.owner(b).as_deref(), Some("b"));
        ports.release("b");
        assert_eq!(ports.owner(b), None);
        assert_eq!(
            ports.reserve("c", None, None, &|_| false).unwrap(),
            b,
            "a released port is reused"
        );
    }

    #[test]
    fn ports_files_pin_are_never_handed_to_another_server() {
        let range = free_range(2);
        let ports = PortAllocator::new(range, ListenMode::Socket);
        ports.set_file_pins(BTreeMap::from([(range.start, "pinner".to_owned())]));
        assert_eq!(
            ports
                .reserve("a", None, Some(range.start), &|_| false)
                .unwrap(),
            range.end,
            "a's old port is pinned by another file now"
        );
        assert!(
            ports.reserve("b", None, None, &|_| false).is_err(),
            "the only other port is pinned"
        );
        assert_eq!(
            ports
                .reserve("pinner", Some(range.start), None, &|_| false)
                .unwrap(),
            range.start
        );
    }

    #[test]
    fn each_scan_replaces_the_file_pins() {
        let range = free_range(1);
        let ports = PortAllocator::new(range, ListenMode::Socket);
        ports.set_file_pins(BTreeMap::from([(range.start, "gone".to_owned())]));
        assert!(ports.reserve("a", None, None, &|_| false).is_err());
        // The file that pinned it was deleted (or no longer pins it): the next scan says so.
        ports.set_file_pins(BTreeMap::new());
        assert_eq!(
            ports.reserve("a", None, None, &|_| false).unwrap(),
            range.start
        );
    }

    #[test]
    fn adoption_claims_a_port_once_and_the_writer_sees_it_held() {
        let range = free_range(2);
        let ports = Arc::new(PortAllocator::new(range, ListenMode::Socket));
        let held = ports.held_view();
        ports.claim("adopted", range.start);
        ports.claim("adopted", range.start);
        assert_eq!(
            held.snapshot(),
            BTreeMap::from([(range.start, "adopted".to_owned())])
        );
        assert_eq!(
            ports.reserve("b", None, None, &|_| false).unwrap(),
            range.end
        );
        ports.release("adopted");
        assert_eq!(
            held.snapshot(),
            BTreeMap::from([(range.end, "b".to_owned())])
        );
    }

    #[test]
    fn with_tcp_a_foreign_listener_is_skipped_and_pinned_conflicts_are_errors() {
        let range = free_range(2);
        let _foreign = TcpListener::bind((Ipv4Addr::LOCALHOST, range.start)).unwrap();
        let ports = PortAllocator::new(range, ListenMode::Tcp);
        assert_eq!(
            ports.reserve("a", None, None, &|_| false).unwrap(),
            range.end
        );
        assert_eq!(
            ports.reserve("b", Some(range.start), None, &|_| false),
            Err(PortError::InUse { port: range.start })
        );
        assert_eq!(
            ports.reserve("b", Some(range.end), None, &|_| false),
            Err(PortError::Taken {
                port: range.end,
                owner: "a".into()
            })
        );
        assert_eq!(
            ports.reserve("c", None, None, &|_| false),
            Err(PortError::Exhausted {
                start: range.start,
                end: range.end
            })
        );
    }

    #[test]
    fn with_sockets_the_number_is_only_a_route() {
        let range = free_range(1);
        let _foreign = TcpListener::bind((Ipv4Addr::LOCALHOST, range.start)).unwrap();
        let ports = PortAllocator::new(range, ListenMode::Socket);
        assert_eq!(
            ports.reserve("a", None, None, &|_| false).unwrap(),
            range.start
        );
    }
}
