//! `vswitch-cni`: a CNI plugin (specification 1.0.0, with `STATUS` and `GC` of 1.1.0)
//! that plugs containers into `vswitchd` the way `vsctl attach` does, with addresses from
//! the config's IPAM plugin (or, on a cluster overlay, from the cluster's allocator) and
//! published ports from the `portMappings` capability.
//!
//! By job: [`conf`] reads stdin and the `CNI_*` environment, [`ipam`] delegates to the
//! IPAM plugin, [`plugin`] does each verb through vswitchd's control socket (the `ctl`
//! crate's client), [`error`] is the spec's error object.

pub mod conf;
pub mod error;
pub mod ipam;
pub mod plugin;
