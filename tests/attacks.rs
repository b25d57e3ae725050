//! Attacks on a devbox started as the README's run command starts it, each tried as an
//! attacker would, with real devbox, real code-server, real HTTP and WebSocket. Each
//! test shows the attack refused and that nothing happened (no spec file, no process,
//! no file written by a payload, memory bounded), and the same flow without an
//! `Origin` (scripts, the CLI) or from devbox's own origin still working.
//!
//! One file per front: `web` (what a web page the operator visits can do: CORS,
//! simple requests, DNS rebinding, the token in the browser), `instances` (what a
//! local user or a participant can do to an instance directly), `resources` (memory,
//! disk, connections and servers without bounds; git URLs into the host).

mod common;

#[path = "attacks/git_fetch.rs"]
mod git_fetch;
#[path = "attacks/instances.rs"]
mod instances;
#[path = "attacks/isolation.rs"]
mod isolation;
#[path = "attacks/resources.rs"]
mod resources;
#[path = "attacks/web.rs"]
mod web;
