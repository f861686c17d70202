//! JSON-lines control requests parsed as the server does and handled by a real Controller.
//!
//! The harness and its checks: `vswitch::fuzzing::control`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vswitch::fuzzing::control(data));
