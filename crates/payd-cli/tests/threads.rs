//! The threads of `payd serve` and their priorities (Linux): request handling and the
//! writer run at the process's niceness; the background engine (gateway calls, wallet
//! worker, webhook deliverer) runs niced by `--engine-nice`, so that busy cores answer
//! requests first.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail loudly by design.

#[allow(dead_code)] // This test uses only part of the shared helpers.
mod support;

use support::Proc;

/// Each thread's name and niceness, from `/proc/<pid>/task/<tid>/stat`.
fn threads(pid: u32) -> Vec<(u32, String, i64)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap();
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // The thread just exited.
        };
        let tid = task.file_name().to_str().unwrap().parse().unwrap();
        // "tid (comm) state ppid ...": niceness is the 19th field, the 17th after the comm.
        let (head, rest) = stat.rsplit_once(')').unwrap();
        let name = head.split_once('(').unwrap().1.to_owned();
        let nice = rest.split_whitespace().nth(16).unwrap().parse().unwrap();
        threads.push((tid, name, nice));
    }
    threads
}

#[test]
fn the_engine_runs_niced_and_request_handling_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let payd = Proc::serve(
        &dir.path().join("data"),
        &["--engine-threads", "2", "--engine-nice", "7"],
    );
    let threads = threads(payd.pid());
    let process_nice = threads
        .iter()
        .find(|(tid, _, _)| *tid == payd.pid())
        .map(|(_, _, nice)| *nice)
        .unwrap();
    let named = |name: &str| -> Vec<i64> {
        threads
            .iter()
            .filter(|(_, n, _)| n == name)
            .map(|(_, _, nice)| *nice)
            .collect()
    };
    // Two workers, and the engine's blocking threads (store reads) by the time we look.
    let engine = named("payd-engine");
    assert!(engine.len() >= 2, "{threads:?}");
    let expected = (process_nice + 7).min(19);
    assert!(engine.iter().all(|n| *n == expected), "{threads:?}");
    let http = named("payd-http");
    assert!(!http.is_empty(), "{threads:?}");
    assert!(http.iter().all(|n| *n == process_nice), "{threads:?}");
    assert_eq!(named("payd-writer"), vec![process_nice], "{threads:?}");
}
