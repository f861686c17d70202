//! VXLAN datagrams through VtepTable::classify and offload_for_inner, as the VTEP receive path.
//!
//! The harness and its checks: `vswitch::fuzzing::vxlan_decap`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vswitch::fuzzing::vxlan_decap(data));
