//! An optional cgroup of its own for the hashing threads (`HASHING_CGROUP`), marked idle (`cpu.idle = 1`).
//!
//! `SCHED_IDLE` ranks the hashing threads below shopd's other threads, but only within shopd's scheduling
//! group. The kernel first shares the cores between groups: cgroups, and, for processes in the root cgroup,
//! each session's autogroup (each PostgreSQL backend is a session of its own). A group kept busy by hashing
//! then competes as an equal with the database's groups, and a read waits for a backend that waits for a
//! core. In an idle cgroup beside the database's group the hashing threads weigh next to nothing against
//! it. Inside shopd's own cgroup they do not reliably help: that cgroup still weighs as one whole against
//! the database's. Both measured with the load harness, the p99 of (g) on PostgreSQL
//! (`docs/performance-history.md`, the run of 2026-12-04 04:07).
//!
//! So cgroup v1 only, where any thread can be moved to any cgroup of the hierarchy by writing its id to
//! `tasks`. cgroup v2 keeps the threads of a process within its own cgroup's subtree, where the idle cgroup
//! would be inside shopd's: a v2 directory is refused, pointing to the remedy that works there. Creating
//! the directory and letting shopd write to it is the deployment's part.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A cgroup, checked and marked idle, that hashing threads move into.
#[derive(Debug, Clone)]
pub struct HashingCgroup {
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("HASHING_CGROUP {path}: {reason}")]
pub struct CgroupError {
    path: String,
    reason: String,
}

impl HashingCgroup {
    /// Checks that `dir` is a cgroup v1 directory of the cpu controller, and marks it idle.
    pub fn prepare(dir: &Path) -> Result<Self, CgroupError> {
        let error = |reason: &str| CgroupError::new(dir, reason.to_owned());
        if dir.join("cgroup.threads").is_file() {
            return Err(error(
                "is a cgroup v2 directory: v2 keeps a process's threads inside its own cgroup, where an idle \
                 cgroup does not rank them below the database's; give the database's unit a larger \
                 CPUWeight instead (docs/configuration.md)",
            ));
        }
        let tasks = dir.join("tasks");
        if !tasks.is_file() {
            return Err(error("is not a cgroup: it has no tasks file"));
        }
        if lists(&tasks, std::process::id()) {
            return Err(error(
                "is the cgroup shopd runs in: marking it idle would idle all of shopd, not only its hashing",
            ));
        }
        let idle = dir.join("cpu.idle");
        if !idle.is_file() {
            return Err(error(
                "has no cpu.idle: it is not in the cpu controller's hierarchy, or Linux is older than 5.15",
            ));
        }
        write_to(&idle, "1")
            .map_err(|e| CgroupError::new(dir, format!("cannot mark it idle: {e}")))?;
        if inside_own_cgroup(dir, std::process::id()) {
            tracing::warn!(
                cgroup = %dir.display(),
                "HASHING_CGROUP lies inside the cgroup shopd runs in, where it does not reliably keep logins \
                 from slowing the database; put it beside the database's cgroup (docs/configuration.md)"
            );
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// Moves the calling thread into the cgroup.
    pub fn enter(&self) -> Result<(), CgroupError> {
        write_to(&self.dir.join("tasks"), &this_thread().to_string())
            .map_err(|e| CgroupError::new(&self.dir, format!("a hashing thread cannot enter: {e}")))
    }
}

impl CgroupError {
    fn new(dir: &Path, reason: String) -> Self {
        Self {
            path: dir.display().to_string(),
            reason,
        }
    }
}

/// Whether `dir` lies below a cgroup, other than the hierarchy's root, that holds the thread `pid`: inside
/// the cgroup shopd was started in, which still weighs as one whole against the database's.
fn inside_own_cgroup(dir: &Path, pid: u32) -> bool {
    let is_cgroup = |d: &Path| d.join("tasks").is_file();
    let mut ancestor = dir.parent();
    while let Some(cgroup) = ancestor.filter(|a| is_cgroup(a)) {
        let below_the_root = cgroup.parent().is_some_and(is_cgroup);
        if !below_the_root {
            return false;
        }
        if lists(&cgroup.join("tasks"), pid) {
            return true;
        }
        ancestor = cgroup.parent();
    }
    false
}

/// Whether the `tasks` file lists the thread `pid`.
fn lists(tasks: &Path, pid: u32) -> bool {
    let pid = pid.to_string();
    std::fs::read_to_string(tasks).is_ok_and(|text| text.lines().any(|t| t.trim() == pid))
}

/// Writes `value` to an existing cgroup file. Appending keeps what other threads wrote where the directory
/// is an ordinary one (the tests); a cgroup file takes each write as one command whatever the mode.
fn write_to(file: &Path, value: &str) -> std::io::Result<()> {
    let mut file = OpenOptions::new().append(true).open(file)?;
    file.write_all(format!("{value}\n").as_bytes())
}

#[cfg(target_os = "linux")]
fn this_thread() -> i64 {
    // SAFETY: gettid has no preconditions.
    i64::from(unsafe { libc::gettid() })
}

/// Elsewhere there are no cgroups: `prepare` finds none, so no thread gets here.
#[cfg(not(target_os = "linux"))]
fn this_thread() -> i64 {
    i64::from(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cgroup_v1() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tasks"), "").unwrap();
        std::fs::write(dir.path().join("cpu.idle"), "0\n").unwrap();
        dir
    }

    #[test]
    fn a_v1_cgroup_is_marked_idle_and_takes_the_threads_that_enter() {
        let dir = cgroup_v1();
        let cgroup = HashingCgroup::prepare(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("cpu.idle")).unwrap(),
            "0\n1\n"
        );
        std::thread::spawn(move || cgroup.enter().unwrap())
            .join()
            .unwrap();
        let tasks = std::fs::read_to_string(dir.path().join("tasks")).unwrap();
        let tid: i64 = tasks.trim().parse().unwrap();
        assert_ne!(
            tid,
            i64::from(std::process::id()),
            "a thread, not the process"
        );
    }

    #[test]
    fn a_cgroup_inside_the_one_shopd_runs_in_is_told_apart_from_one_beside_it() {
        let root = tempfile::tempdir().unwrap();
        let cgroup = |path: &str, tasks: &str| {
            let dir = root.path().join(path);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("tasks"), tasks).unwrap();
            dir
        };
        cgroup("", "1\n2\n");
        cgroup("database", "40\n41\n");
        cgroup("shop", "7\n70\n");
        let inside = cgroup("shop/hashing", "");
        let beside = cgroup("hashing", "");
        assert!(inside_own_cgroup(&inside, 70));
        assert!(!inside_own_cgroup(&beside, 70));
        assert!(!inside_own_cgroup(&inside, 40), "another process's cgroup");
        assert!(
            !inside_own_cgroup(&beside, 2),
            "the root holds every process started outside any cgroup"
        );
    }

    #[test]
    fn a_v2_cgroup_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        for (file, text) in [
            ("cgroup.threads", ""),
            ("cgroup.type", "domain\n"),
            ("cpu.idle", "0\n"),
        ] {
            std::fs::write(dir.path().join(file), text).unwrap();
        }
        let refused = HashingCgroup::prepare(dir.path()).unwrap_err().to_string();
        assert!(
            refused.contains("cgroup v2") && refused.contains("CPUWeight"),
            "{refused}"
        );
        for (file, text) in [("cgroup.type", "domain\n"), ("cpu.idle", "0\n")] {
            assert_eq!(
                std::fs::read_to_string(dir.path().join(file)).unwrap(),
                text
            );
        }
    }

    #[test]
    fn a_directory_that_is_no_cgroup_has_no_cpu_controller_or_holds_shopd_itself_is_refused() {
        let plain = tempfile::tempdir().unwrap();
        let refused = HashingCgroup::prepare(plain.path())
            .unwrap_err()
            .to_string();
        assert!(refused.contains("is not a cgroup"), "{refused}");

        let no_cpu = cgroup_v1();
        std::fs::remove_file(no_cpu.path().join("cpu.idle")).unwrap();
        let refused = HashingCgroup::prepare(no_cpu.path())
            .unwrap_err()
            .to_string();
        assert!(refused.contains("has no cpu.idle"), "{refused}");

        let own = cgroup_v1();
        std::fs::write(
            own.path().join("tasks"),
            format!("{}\n", std::process::id()),
        )
        .unwrap();
        let refused = HashingCgroup::prepare(own.path()).unwrap_err().to_string();
        assert!(refused.contains("the cgroup shopd runs in"), "{refused}");
        assert_eq!(
            std::fs::read_to_string(own.path().join("cpu.idle")).unwrap(),
            "0\n",
            "left as it was"
        );

        let missing = plain.path().join("gone");
        let refused = HashingCgroup::prepare(&missing).unwrap_err().to_string();
        assert!(refused.starts_with("HASHING_CGROUP "), "{refused}");
    }
}
