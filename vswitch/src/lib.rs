#![cfg_attr(test, allow(clippy::unwrap_used))]
//! vswitch: the dataplane library behind `vswitchd`.
//!
//! Ports (`port`, `sys`) feed workers (`worker`), which take the forwarding decision
//! (`forward`, over the `fdb`) for each frame and queue it to destination ports. The
//! control plane (`controller`, `server`, `config`) owns the desired state and publishes
//! immutable snapshots of it (`dataplane`) for the workers to forward by.

pub mod config;
pub mod controller;
pub mod counters;
pub mod daemon;
pub mod dataplane;
pub mod fdb;
pub mod forward;
pub mod fuzzing;
pub mod gateway;
pub mod pool;
pub mod port;
pub mod server;
pub mod sys;
pub mod tunnel;
pub mod vlan;
pub mod wire;
pub mod worker;
