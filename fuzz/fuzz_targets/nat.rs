//! IPv4 packets through nat::Nat (conntrack, masquerade, published ports, checksum fix-up) in both directions.
//!
//! The harness and its checks: `vswitch::fuzzing::nat`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vswitch::fuzzing::nat(data));
