//! IPv4 packets through the service path: VIP selection and DNAT (nat::lb in nat::Nat) with health flipping, and the bridge's divert test for backends' replies.
//!
//! The harness and its checks: `vswitch::fuzzing::services`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vswitch::fuzzing::services(data));
