//! Bytes at an encrypted tunnel's listen port: WireGuard message classification, a
//! peer's open, and the inner IPv4/UDP header check, as the encrypted receive path.
//!
//! The harness and its checks: `vswitch::fuzzing::wg_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vswitch::fuzzing::wg_message(data));
