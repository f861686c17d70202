//! Ethernet/802.1Q/QinQ frames through a six-port bridge and its gateway, by the real pipeline (classify, guard, learn, decide, egress, tag push/pop) the workers call.
//!
//! The harness and its checks: `vswitch::fuzzing::frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vswitch::fuzzing::frame(data));
