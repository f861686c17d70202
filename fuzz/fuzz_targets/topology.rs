//! A topology file through the topologies crate's YAML reader and resolver
//! (`vstopo::plan::parse`), and a plan it accepts through `vstopo show --steps`
//! (every build step as a command line).
//!
//! Checks: a refused file gets at least one error, each naming the file and a line
//! inside it (or none, line 0), on one line, in line order: what `FILE:LINE: message`
//! promises an editor or a person; an accepted file resolves the same way twice.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = "fuzz.yaml";
    // The last line a location may name. YAML breaks lines at LF, CRLF and a lone CR,
    // and reports an error at the end of input on the line after a final break.
    let b = text.as_bytes();
    let breaks = b
        .iter()
        .enumerate()
        .filter(|&(i, &c)| c == b'\n' || (c == b'\r' && b.get(i + 1) != Some(&b'\n')))
        .count();
    let last = breaks as u64 + 1;
    match vstopo::plan::parse(text, file, "fuzz") {
        Ok(plan) => {
            let shown = vstopo::render::show(&plan, true);
            assert!(shown.starts_with("topology "), "show output: {shown:?}");
            let again = vstopo::plan::parse(text, file, "fuzz");
            assert!(
                again.is_ok_and(|p| vstopo::render::show(&p, true) == shown),
                "the same file resolved differently twice"
            );
        }
        Err(vstopo::plan::FileErrors(errs)) => {
            assert!(!errs.is_empty(), "refused without an error");
            for e in &errs {
                assert_eq!(e.file, file);
                assert!(
                    e.line <= last,
                    "error at line {} of a file of {last} lines: {e}",
                    e.line
                );
                assert!(
                    !e.msg.trim().is_empty(),
                    "empty error message at line {}",
                    e.line
                );
                assert!(!e.to_string().contains('\n'), "multi-line error: {e:?}");
            }
            assert!(
                errs.windows(2).all(|w| w[0].line <= w[1].line),
                "errors out of line order"
            );
        }
    }
});
