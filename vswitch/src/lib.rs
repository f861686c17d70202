#![cfg_attr(test, allow(clippy::unwrap_used))]
//! vswitch: the dataplane library behind `vswitchd`.
//!
//! Ports (`port`, `sys`) feed workers (`worker`), which run each frame through the
//! `pipeline` (classify, guard, learn over the `fdb`, decide, egress rewrite) and queue
//! what it returns to destination ports. The
//! control plane (`controller`, `server`, `config`) owns the desired state and publishes
//! immutable snapshots of it (`dataplane`) for the workers to forward by.

pub mod clustering;
pub mod config;
pub mod controller;
pub mod counters;
pub mod daemon;
pub mod dataplane;
pub mod encrypt;
pub mod fdb;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod gateway;
pub mod metrics;
pub mod pipeline;
pub mod pool;
pub mod port;
pub mod portsec;
pub mod server;
pub mod sys;
pub mod tunnel;
pub mod vlan;
pub mod wire;
pub mod worker;
