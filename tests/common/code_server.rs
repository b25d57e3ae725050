//! Where the tests and the benchmarks find the real code-server (this file is included
//! by both `tests/common` and `benches/common`).

use std::path::{Path, PathBuf};

/// The real code-server: `DEVBOX_CODE_SERVER`, else the project-local install that
/// `scripts/install-code-server.sh` makes; panics naming that script when neither exists.
pub fn code_server() -> PathBuf {
    if let Some(path) = std::env::var_os("DEVBOX_CODE_SERVER") {
        return PathBuf::from(path);
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/code-server/bin/code-server");
    assert!(
        local.exists(),
        "code-server not found: run scripts/install-code-server.sh (scripts/test.sh runs it) or set DEVBOX_CODE_SERVER"
    );
    local
}
