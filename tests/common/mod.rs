//! What the process-killing tests share: a child process running one ignored test of
//! the same test binary, waited for until it is ready to be killed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the ignored test `test` of this test binary in a child process with `$env` set
/// to `dir`, and returns it once it has written `dir/marker`.
///
/// # Panics
/// If the child exits, or writes no marker within `limit`.
pub fn child_until_marker(test: &str, env: &str, dir: &Path, limit: Duration) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", test, "--nocapture"])
        .env(env, dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !dir.join("marker").exists() {
        assert!(start.elapsed() < limit, "{test} wrote no marker");
        assert!(child.try_wait().unwrap().is_none(), "{test} exited");
        std::thread::sleep(Duration::from_millis(2));
    }
    child
}
