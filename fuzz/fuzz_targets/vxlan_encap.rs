//! A frame and its virtio-net header through Offload::from_virtio and encap_segments (checksum completion, TSO/USO).
//!
//! The harness and its checks: `vswitch::fuzzing::vxlan_encap`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vswitch::fuzzing::vxlan_encap(data));
