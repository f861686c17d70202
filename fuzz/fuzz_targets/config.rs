//! A config file through Store::load (parse, validate) and back through Store::save.
//!
//! The harness and its checks: `vswitch::fuzzing::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vswitch::fuzzing::config(data));
