//! nat::rewrite / rewrite_error of one packet to a fuzzed tuple and back.
//!
//! The harness and its checks: `vswitch::fuzzing::nat_rewrite`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vswitch::fuzzing::nat_rewrite(data));
