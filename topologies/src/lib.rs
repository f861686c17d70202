//! `vstopo`: Mininet/containerlab-style topology files for vswitch.
//!
//! A YAML file names hosts (network namespaces with addresses), switches (real `vswitchd`
//! processes configured through the real `vsctl`), links (veth pairs and TAP ports) and
//! checks (ping, pingall, tcp, iperf, http, fdb, exec). `vstopo` builds it, runs the
//! checks, and tears everything down again.
//!
//! Modules, each owning one job:
//! - [`model`]: the file's shape (serde types carrying source lines);
//! - [`plan`]: meaning and validation, `FILE:LINE: message` errors, the resolved [`plan::Plan`];
//! - [`lab`]: building a plan with `ip`/`vswitchd`/`vsctl` and tearing it down;
//! - [`state`]: the on-disk record of a run (for `down`, `exec`, and cleanup after a crash);
//! - [`checks`]: running checks and reporting what they measured;
//! - [`probe`]: TCP helpers `vstopo` runs as itself inside namespaces;
//! - [`proc`]: running programs with timeouts, signals;
//! - [`render`]: `vstopo show`'s text;
//! - [`cmd`]: the subcommands.

pub mod checks;
pub mod cmd;
pub mod lab;
pub mod model;
pub mod plan;
pub mod probe;
pub mod proc;
pub mod render;
pub mod state;
