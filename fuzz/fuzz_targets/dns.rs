//! DNS messages to a network's gateway, from clients and upstreams.
//!
//! The harness and its checks: `vswitch::fuzzing::dns`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vswitch::fuzzing::dns(data));
