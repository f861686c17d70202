#![cfg_attr(test, allow(clippy::unwrap_used))]
//! `vswitch-docker`: a Docker network plugin (libnetwork's *remote driver* protocol) that
//! makes every Docker network of driver `vswitch` a bridge of `vswitchd`.
//!
//! - [`api`]: the JSON bodies libnetwork posts and expects back.
//! - [`plugin`]: the handlers — each turns one libnetwork call (`NetworkDriver.*`, and
//!   `IpamDriver.*` for cluster overlays, whose addresses come from the cluster) into `vswitchd` requests
//!   (through [`plugin::Switch`]) and veth work (through [`plugin::Links`]), undoing what
//!   it did when a step fails.
//! - [`links`]: veth pairs made and removed with iproute2's `ip`, with a timeout.
//! - [`http`]: the HTTP/1.1 server on the plugin's Unix socket.
//! - [`engine`], [`names`]: containers' names and network aliases, learnt from the
//!   Docker Engine API, given to their endpoints as DNS names (`set-names`).
//!
//! The plugin keeps no state of its own: everything it needs later (which port is which
//! endpoint, its address, which trunk a VLAN network uses) is written into `vswitchd`'s
//! persisted config as `external_ids` of ports and read back with `show`.

pub mod api;
pub mod engine;
pub mod http;
pub mod links;
pub mod names;
pub mod plugin;
