//! Checks: their references resolved, their options checked, their defaults.

use super::{assert_err_contains, assert_err_starts, resolved, BASE};
use crate::plan::CheckKind;

#[test]
fn checks_are_resolved_and_checked() {
    let y = format!(
        "{BASE}checks:\n  - pingall: {{}}\n  - ping: {{from: h1, to: h9}}\n  - fdb: {{switch: sw1, mac: h1, port: nope}}\n  - tcp: {{from: h1, to: 10.9.9.9, port: 80}}\n"
    );
    assert_err_starts(&y, "t.yaml:14: `h9` is neither");
    assert_err_starts(&y, "t.yaml:15: bridge sw1:br0 has no port `nope`");
    assert_err_starts(&y, "t.yaml:16: no host owns 10.9.9.9");
    let p = resolved(&format!(
        "{BASE}checks:\n  - pingall:\n      expect: {{h1: [h2]}}\n"
    ));
    match &p.checks[0].kind {
        CheckKind::Pingall { pairs, .. } => {
            assert_eq!(pairs.len(), 2);
            assert!(pairs.iter().any(|x| x.from == "h1" && x.reachable));
            assert!(pairs.iter().any(|x| x.from == "h2" && !x.reachable));
        }
        k => panic!("{k:?}"),
    }
}

#[test]
fn a_name_beside_a_check_kind_gets_a_hint() {
    assert_err_contains(
        &format!("{BASE}checks:\n  - ping: {{from: h1, to: h2}}\n    name: x\n"),
        "exactly one key",
    );
}
