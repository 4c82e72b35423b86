//! The one registry of names: the recorded threads (as the kernel noted
//! them and as /proc shows them), the groups exited threads are folded
//! into, and the other processes whose threads woke the target.

use std::collections::{HashMap, HashSet};

use crate::{model::FOLDED_THREADS, procfs};

/// Names by thread id, and which threads are alive.
#[derive(Debug, Default)]
pub struct Threads {
    /// The latest name of each thread, and of each folded group.
    names: HashMap<u32, String>,
    /// The threads alive at the last [`Threads::refresh`].
    live: HashSet<u32>,
    /// Folded groups of exited threads, by their name.
    groups: HashMap<String, u32>,
    /// Names of other processes (wakers), by process id.
    processes: HashMap<u32, String>,
    /// Threads the kernel noted (each had an event: it ran while recorded).
    seen_by_kernel: HashSet<u32>,
}

impl Threads {
    /// Notes names the kernel saw (threads that may have exited since); the
    /// kernel notes a thread's name again whenever it changed, so its note
    /// is as new as the thread's last event. /proc, read after, has the
    /// last word for threads still alive.
    pub fn note(&mut self, named: impl IntoIterator<Item = (u32, String)>) {
        for (tid, name) in named {
            self.seen_by_kernel.insert(tid);
            self.names.insert(tid, name);
        }
    }

    /// Whether the kernel noted the thread (it ran while recorded).
    pub fn seen_by_kernel(&self, tid: u32) -> bool {
        self.seen_by_kernel.contains(&tid)
    }

    /// Reads the threads now alive of the processes `pids` and their names
    /// from /proc (the latest name wins); none of a process that is gone.
    pub fn refresh(&mut self, pids: impl IntoIterator<Item = u32>) {
        self.live.clear();
        for pid in pids {
            for (tid, name) in procfs::threads(pid) {
                self.live.insert(tid);
                if let Some(name) = name {
                    self.names.insert(tid, name);
                }
            }
        }
    }

    /// The threads alive at the last refresh.
    pub fn live(&self) -> &HashSet<u32> {
        &self.live
    }

    /// A thread's (or folded group's) name, if it was ever seen.
    pub fn name(&self, tid: u32) -> Option<&str> {
        self.names.get(&tid).map(String::as_str)
    }

    /// Names a process that woke the target, once.
    pub fn note_process(&mut self, tgid: u32) {
        self.processes.entry(tgid).or_insert_with(|| {
            procfs::read_comm(tgid, tgid).unwrap_or_else(|_| "exited".to_owned())
        });
    }

    /// The name of another process, as noted.
    pub fn process(&self, tgid: u32) -> Option<&str> {
        self.processes.get(&tgid).map(String::as_str)
    }

    /// Which of `tids` have exited, each with the id of the group of its
    /// name ([`FOLDED_THREADS`] and up) that its data folds into; their
    /// own names are forgotten. `fallback` names threads never named.
    /// Empty while no thread is known alive (the target is gone).
    pub fn fold_exited(
        &mut self,
        tids: impl IntoIterator<Item = u32>,
        fallback: &str,
    ) -> HashMap<u32, u32> {
        if self.live.is_empty() {
            return HashMap::new();
        }
        let exited: HashSet<u32> = tids
            .into_iter()
            .filter(|tid| *tid < FOLDED_THREADS && !self.live.contains(tid))
            .collect();
        let mut folding = HashMap::with_capacity(exited.len());
        for tid in exited {
            let name = self
                .names
                .remove(&tid)
                .unwrap_or_else(|| fallback.to_owned());
            let next = FOLDED_THREADS + self.groups.len() as u32;
            let group = *self.groups.entry(name.clone()).or_insert(next);
            self.names.insert(group, name);
            folding.insert(tid, group);
        }
        folding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exited_threads_fold_by_name() {
        let mut threads = Threads::default();
        threads.note([
            (5, "w".to_owned()),
            (6, "w".to_owned()),
            (7, "main".to_owned()),
        ]);
        threads.live.insert(7);
        let folding = threads.fold_exited([5, 6, 7, 8], "app");
        let group = folding[&5];
        assert_eq!(folding[&6], group);
        assert!(group >= FOLDED_THREADS);
        assert!(!folding.contains_key(&7), "alive");
        assert_eq!(threads.name(group), Some("w"));
        assert_eq!(threads.name(folding[&8]), Some("app"));
        assert_eq!(threads.name(5), None, "forgotten");
        assert_eq!(threads.name(7), Some("main"));
    }

    #[test]
    fn the_kernels_newer_note_replaces_an_older_name() {
        let mut threads = Threads::default();
        threads.names.insert(9, "thread_churn".to_owned());
        threads.note([(9, "churner".to_owned()), (10, "new".to_owned())]);
        assert_eq!(threads.name(9), Some("churner"));
        assert_eq!(threads.name(10), Some("new"));
    }
}
