//! ARP and IPv4 (options, TCP, UDP, ICMP echo and errors) through Gateway::handle on two networks and the uplink.
//!
//! The harness and its checks: `vswitch::fuzzing::gateway`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vswitch::fuzzing::gateway(data));
