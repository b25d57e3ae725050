//! Writing status files off the caller's thread.
//!
//! Status changes are frequent (every phase, every extension, every health verdict)
//! and each atomic file write costs two fsyncs. The callers are reconciler tasks on the
//! async runtime's few worker threads, which must not wait for the disk (a thousand
//! servers appearing at once would stall the API for seconds). So a change only marks
//! its server dirty, and one background thread writes the newest status of every dirty
//! server: several changes between two writes cost one write. [`Writer::flush`] waits
//! until everything marked so far is on disk (graceful shutdown, forgetting a server).

use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The handle of the writer thread. Dropping it lets the thread finish what is marked,
/// then end.
pub(super) struct Writer {
    queue: Arc<Queue>,
}

struct Queue {
    state: Mutex<QueueState>,
    /// Signalled when a server is marked or the writer closes.
    work: Condvar,
    /// Signalled when a batch is done.
    done: Condvar,
}

#[derive(Default)]
struct QueueState {
    dirty: BTreeSet<String>,
    /// Names of the batch being written right now.
    writing: BTreeSet<String>,
    closed: bool,
    /// The last write that failed (`None` again after a write succeeds).
    failure: Option<String>,
}

impl Writer {
    /// Starts the thread; `persist(name)` writes (or removes) one server's file.
    pub(super) fn spawn(
        persist: impl Fn(&str) -> Result<(), String> + Send + 'static,
    ) -> std::io::Result<Self> {
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState::default()),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let worker = queue.clone();
        std::thread::Builder::new()
            .name("status-writer".into())
            .spawn(move || worker.run(persist))?;
        Ok(Self { queue })
    }

    /// Schedules a write of server `name`'s status.
    pub(super) fn mark(&self, name: &str) {
        let mut state = self.queue.lock();
        if !state.dirty.contains(name) {
            state.dirty.insert(name.to_owned());
            self.queue.work.notify_one();
        }
    }

    /// Blocks until every write scheduled before this call has been attempted.
    pub(super) fn flush(&self) {
        let mut state = self.queue.lock();
        let mut waiting_for: BTreeSet<String> =
            state.dirty.union(&state.writing).cloned().collect();
        while !waiting_for.is_empty() {
            state = self
                .queue
                .done
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            waiting_for.retain(|name| state.dirty.contains(name) || state.writing.contains(name));
        }
    }

    /// Why the last status write failed, while the failure lasts (a full disk).
    pub(super) fn failure(&self) -> Option<String> {
        self.queue.lock().failure.clone()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue.lock().closed = true;
        self.queue.work.notify_one();
    }
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn run(&self, persist: impl Fn(&str) -> Result<(), String>) {
        loop {
            let batch = {
                let mut state = self.lock();
                while state.dirty.is_empty() && !state.closed {
                    state = self
                        .work
                        .wait(state)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                if state.dirty.is_empty() {
                    return;
                }
                let batch = std::mem::take(&mut state.dirty);
                state.writing.clone_from(&batch);
                batch
            };
            let mut failure = None;
            for name in &batch {
                if let Err(err) = persist(name) {
                    tracing::error!(server = %name, %err, "status not persisted");
                    failure = Some(err);
                }
            }
            let mut state = self.lock();
            state.writing.clear();
            state.failure = failure;
            self.done.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn marks_coalesce_and_flush_waits_for_them() {
        let writes = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Mutex::new(()));
        let writer = {
            let (writes, gate) = (writes.clone(), gate.clone());
            Writer::spawn(move |_| {
                let _held = gate.lock().unwrap();
                writes.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .unwrap()
        };
        {
            // While the writer is held up, many marks of one name make one write.
            let _held = gate.lock().unwrap();
            for _ in 0..101 {
                writer.mark("a");
            }
        }
        writer.flush();
        let after_flush = writes.load(Ordering::SeqCst);
        assert!(
            (1..=2).contains(&after_flush),
            "{after_flush} writes for 101 marks"
        );
        writer.flush();
        assert_eq!(
            writes.load(Ordering::SeqCst),
            after_flush,
            "nothing left to do"
        );
    }

    #[test]
    fn failures_are_reported_until_a_write_succeeds() {
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let writer = {
            let fail = fail.clone();
            Writer::spawn(move |name| {
                if fail.load(Ordering::SeqCst) {
                    Err(format!("{name}: no space left on device"))
                } else {
                    Ok(())
                }
            })
            .unwrap()
        };
        writer.mark("a");
        writer.flush();
        assert_eq!(
            writer.failure().as_deref(),
            Some("a: no space left on device")
        );
        fail.store(false, Ordering::SeqCst);
        writer.mark("a");
        writer.flush();
        assert_eq!(writer.failure(), None);
    }
}
