#![cfg_attr(test, allow(clippy::unwrap_used))]
#![forbid(unsafe_code)]
//! Conntrack and NAT for IPv4 with no I/O: bytes and the time in, rewritten bytes and
//! decisions out (the boringtun split: the protocol here, the sockets and threads in
//! `vswitchd`). It behaves as Linux's conntrack with Docker's bridge-network rules
//! (MASQUERADE out of the uplink, DNAT for published ports, hairpin NAT).
//!
//! Modules:
//! - [`nat`]: the NAT engine (masquerade, published ports, hairpin, isolation):
//!   [`nat::Nat::process`], and [`nat::Nat::process_csum`] for a packet whose TCP or
//!   UDP checksum is partial (a veth's NEEDS_CSUM).
//! - [`lb`]: services (a VIP spread over healthy backends) and their scheduler.
//! - [`packet`]: zero-copy views of IPv4, TCP, UDP and ICMP headers.
//! - [`conntrack`]: the bounded flow table, the TCP state machine, timeouts, expiry.
//! - [`rewrite`]: in-place address/port rewrites with incremental checksum fix-up.
//! - [`mod@tuple`]: 5-tuples and reading them (and ICMP errors' quoted tuples) from packets.
//!
//! Every function is total: arbitrary bytes give an error or a neutral answer, never a
//! panic, and no `unsafe` is used.

pub mod conntrack;
pub mod lb;
pub mod nat;
pub mod packet;
pub mod rewrite;
pub mod tuple;

pub use nat::{Config, Direction, DropReason, Egress, Nat, Verdict};

#[cfg(test)]
mod testutil;
