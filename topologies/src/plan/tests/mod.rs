//! The planner's tests, one file per module they test. Here: the small file most of them
//! edit, and the assertions they share on what a file resolves to or which errors it has.

#![allow(clippy::unwrap_used)]

use super::{parse, Plan};

mod checks;
mod cluster;
mod gateways;
mod hosts;
mod links;
mod tunnels;

/// Two hosts on one switch: every line number the tests assert is a line of this text.
const BASE: &str = "\
switches:
  - name: sw1
    bridges: [{name: br0}]
hosts:
  - name: h1
    interfaces: [{name: eth0, ip: 10.0.0.1/24}]
  - name: h2
    interfaces: [{name: eth0, ip: 10.0.0.2/24}]
links:
  - endpoints: [h1:eth0, sw1:br0]
  - endpoints: [h2, sw1]
";

/// The plan of `y`, which must resolve.
fn resolved(y: &str) -> Plan {
    parse(y, "t.yaml", "t").unwrap()
}

/// The errors of `y` as printed (`t.yaml:LINE: message`); none when it resolves.
fn errs(y: &str) -> Vec<String> {
    match parse(y, "t.yaml", "t") {
        Ok(_) => vec![],
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

/// Asserts that one error of `y` starts with `want` (its file, line and message).
#[track_caller]
fn assert_err_starts(y: &str, want: &str) {
    let e = errs(y);
    assert!(
        e.iter().any(|e| e.starts_with(want)),
        "want {want:?}: {e:?}"
    );
}

/// Asserts that one error of `y` contains `want`.
#[track_caller]
fn assert_err_contains(y: &str, want: &str) {
    let e = errs(y);
    assert!(e.iter().any(|e| e.contains(want)), "want {want:?}: {e:?}");
}

/// Asserts, for each `(from, to, want)`, that `base` with its first `from` made `to` has
/// an error containing `want`; `from` must be in `base`, so that no case tests nothing.
#[track_caller]
fn assert_edits_err(base: &str, cases: &[(&str, &str, &str)]) {
    for (from, to, want) in cases {
        assert!(base.contains(from), "{from}");
        let e = errs(&base.replacen(from, to, 1));
        assert!(
            e.iter().any(|e| e.contains(want)),
            "{to}: want {want:?}: {e:?}"
        );
    }
}
