//! `vswitch-cni`: the runtime runs it with `CNI_COMMAND` and friends in the environment
//! and the network configuration on stdin; the result (or the CNI error object) goes to
//! stdout, and the exit status is 0 only on success.

use std::io::{Read, Write};
use std::process::ExitCode;

use vswitch_cni::{conf, error, plugin};

fn main() -> ExitCode {
    let env = conf::env(|k| std::env::var(k).ok());
    let mut stdin = Vec::new();
    // VERSION may come with nothing on stdin; every other verb needs the config.
    let needs_stdin = env.as_ref().is_ok_and(|e| e.command != "VERSION");
    let read = if needs_stdin {
        std::io::stdin().read_to_end(&mut stdin).map(|_| ())
    } else {
        Ok(())
    };
    let version = conf::version_of(&stdin)
        .filter(|v| conf::SUPPORTED.contains(&v.as_str()))
        .unwrap_or_else(|| conf::OWN_VERSION.to_string());
    let result = env.and_then(|e| {
        read.map_err(|r| error::err(error::Code::Io, format!("cannot read stdin: {r}")))?;
        plugin::run(&e, &stdin)
    });
    let mut out = std::io::stdout();
    match result {
        Ok(Some(s)) => {
            let _ = writeln!(out, "{s}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(out, "{}", e.to_json(&version));
            // Also on stderr, for whoever runs the plugin by hand.
            eprintln!("vswitch-cni: {e}");
            ExitCode::FAILURE
        }
    }
}
