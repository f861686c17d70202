#![allow(clippy::unwrap_used)]
//! `vsctl completion SHELL`: the scripts come from the parser's own definition, and the
//! bash one really completes verbs and flags when bash runs it.

use std::process::Command;

fn script(shell: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vsctl"))
        .args(["completion", shell])
        .output()
        .unwrap();
    assert!(out.status.success(), "{shell}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// What bash's completion offers for the words `line` with the cursor after the last.
fn bash_complete(line: &str) -> Vec<String> {
    let words: Vec<&str> = line.split(' ').collect();
    let prog = format!(
        "source <({bin} completion bash)\n\
         COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{line}'; COMP_POINT={point}\n\
         _vsctl vsctl '{cur}' '{prev}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        bin = env!("CARGO_BIN_EXE_vsctl"),
        words = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" "),
        cword = words.len() - 1,
        point = line.len(),
        cur = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    let out = Command::new("bash").args(["-c", &prog]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_verbs_and_flags() {
    let verbs = bash_complete("vsctl add-");
    for v in ["add-br", "add-port", "add-vlan", "add-tunnel", "add-net"] {
        assert!(verbs.iter().any(|w| w == v), "{v} not in {verbs:?}");
    }
    assert!(!verbs.iter().any(|w| w == "show"), "{verbs:?}");
    let flags = bash_complete("vsctl attach br0 c1 --");
    for f in ["--ip", "--gw", "--vlan", "--ifname"] {
        assert!(flags.iter().any(|w| w == f), "{f} not in {flags:?}");
    }
    let shells = bash_complete("vsctl completion ");
    for s in ["bash", "zsh", "fish"] {
        assert!(shells.iter().any(|w| w == s), "{s} not in {shells:?}");
    }
}

#[test]
fn zsh_and_fish_scripts_name_every_verb() {
    let zsh = script("zsh");
    assert!(zsh.starts_with("#compdef vsctl"), "{}", &zsh[..40]);
    let fish = script("fish");
    for verb in ["add-br", "del-port", "publish", "ct-show", "completion"] {
        assert!(zsh.contains(verb), "zsh lacks {verb}");
        assert!(
            fish.contains(&format!("-a \"{verb}\"")) || fish.contains(&format!("-a {verb}")),
            "fish lacks {verb}"
        );
    }
}

#[test]
fn an_unknown_shell_is_one_line_of_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_vsctl"))
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("vsctl: invalid value 'tcsh'"), "{err}");
}
