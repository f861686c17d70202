//! A UDP_GRO run of VXLAN datagrams through gro::merge_tcp.
//!
//! The harness and its checks: `vswitch::fuzzing::vxlan_gro`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vswitch::fuzzing::vxlan_gro(data));
