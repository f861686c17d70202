//! Benchmarks live in `benches/` (criterion, `cargo bench -p vswitch-benches`) and
//! `run.sh` (the side-by-side run against the Linux bridge and Open vSwitch). This
//! library is empty; it exists so the package has a target besides its benches.
