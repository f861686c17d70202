//! Running other programs: every command with a timeout, every wait interruptible by
//! SIGINT, SIGTERM or SIGHUP (so a Ctrl-C during a build or a check still ends in a full
//! teardown), and the signal bookkeeping itself. The workspace's test lab ([`testlab`])
//! does all of it, for vstopo and the integration tests alike; this module names the
//! parts vstopo uses. Nothing here knows about topologies.

pub use testlab::bg::{tail, Bg, Output};
pub use testlab::proc::{
    cmdline, missing_tools, try_run, try_run_always, try_run_with, which, Opts, Out, RunError,
};
pub use testlab::stop::{catch_signals, kill, signal_name, sleep, stop_signal, Deadline};
