//! `testlab`: the workspace's one test lab. Every integration test (`vswitch/tests`,
//! `docker/tests`), `vstopo` and the benches build their networks with it: real network
//! namespaces, veths, a real `vswitchd` configured with the real `vsctl`, real programs
//! (`ping`, `iperf3`, `tcpdump`, `dockerd`, `podman`) — and take all of it down again, also when a
//! test panics or a signal arrives.
//!
//! Modules, each owning one job:
//! - [`proc`]: running a command to completion with a timeout ([`Out`], [`RunError`]),
//!   tools on `PATH`, root, polling;
//! - [`stop`]: stop signals (SIGINT/SIGTERM/SIGHUP as a flag every wait polls), signals
//!   to processes, deadlines;
//! - [`bg`]: background processes with their output in files, killed on drop ([`Bg`]);
//! - [`netns`]: quiet namespaces, veths, addresses, removal of everything in them;
//! - [`vswitchd`]: starting `vswitchd` in a namespace, waiting for its socket, `vsctl`;
//! - [`dockerd`]: a private `dockerd` in a namespace;
//! - [`podman`]: a private podman (own storage, containers.conf, CNI directory);
//! - [`etcd`]: a private `etcd` in a namespace, and certificates for its TLS tests;
//! - [`etcd_members`]: an etcd of several members in one namespace;
//! - [`traffic`]: ping and iperf3 command lines and what they measured;
//! - [`snmp`]: a namespace's `/proc/net/snmp` counters.
//!
//! Names of namespaces and interfaces are the caller's: a lab prefixes them with
//! something unique per run so that tests running at once never meet.

use std::time::Duration;

pub mod bg;
pub mod dockerd;
pub mod etcd;
pub mod etcd_members;
pub mod netns;
pub mod podman;
pub mod proc;
pub mod slowdisk;
pub mod snmp;
pub mod stop;
pub mod traffic;
pub mod vswitchd;

pub use bg::{Bg, Output};
pub use netns::Namespaces;
pub use proc::{
    is_root, require_root, require_tools, run, run_env, sh, try_run, try_run_env, wait_until,
    which, Opts, Out, RunError,
};
pub use traffic::gbps;
pub use vswitchd::{Bins, Switchd};

/// Timeout of a short command (`ip`, `vsctl`, `sysctl`).
pub const SHORT: Duration = Duration::from_secs(10);
/// Timeout of a traffic command (`ping`, `iperf3`).
pub const LONG: Duration = Duration::from_secs(40);
