//! Ethernet/802.1Q/QinQ frames through a six-port bridge (VLAN classify, learning, forward::decide, tag push/pop) and its gateway.
//!
//! The harness and its checks: `vswitch::fuzzing::frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vswitch::fuzzing::frame(data));
