//! A test that changes what belongs to the whole process (environment variables, the global
//! tracing subscriber) runs in a process of its own, so that one test binary per crate can
//! still hold it: the test starts itself again, alone, in a child process of the same binary.

use std::process::Command;

/// Set in the child to the name of the one test it runs.
const ALONE: &str = "MCREG_TEST_ALONE";

/// `true` when this process was started to run `test` alone: the caller goes on with the
/// test's body. Otherwise it runs `test` again in a child process of the current test binary
/// (with `--exact`, so nothing else runs there), asserts that exactly that test passed, and
/// returns `false`: the caller returns at once.
///
/// `module` is the caller's `module_path!()`; `test` is the test function's name.
///
/// ```no_run
/// # use conformance::harness::alone_in_process;
/// #[test]
/// fn reads_the_environment() {
///     if !alone_in_process(module_path!(), "reads_the_environment") {
///         return;
///     }
///     // SAFETY: the only test of this process, before it starts any thread.
///     unsafe { std::env::set_var("SOME_VAR", "1") };
/// }
/// ```
pub fn alone_in_process(module: &str, test: &str) -> bool {
    let name = test_name(module, test);
    if std::env::var(ALONE).is_ok_and(|running| running == name) {
        return true;
    }
    let binary = std::env::current_exe().expect("the test binary's path");
    let output = Command::new(&binary)
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(ALONE, &name)
        .output()
        .unwrap_or_else(|err| panic!("running {} for {name}: {err}", binary.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name}, alone in a process of its own, did not pass ({}):\n{stdout}\n{stderr}",
        output.status
    );
    false
}

/// The name libtest gives the test `test` of module `module` (a `module_path!()`):
/// its path without the crate's name, as `--exact` wants it.
pub fn test_name(module: &str, test: &str) -> String {
    match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{test}"),
        None => test.to_owned(),
    }
}
