//! Delegation to the IPAM plugin named in the config's `ipam` section, as the spec's
//! "delegated plugin" protocol says: the same environment (with `CNI_COMMAND` set) and
//! the same configuration on stdin; its result or its error object comes back.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::conf::Env;
use crate::error::{err, CniError, Code, Result};

/// The IPv4 address an IPAM plugin gave: `A.B.C.D/N` and the gateway, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
}

impl Lease {
    /// `A.B.C.D/N`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.addr, self.prefix)
    }
    /// The subnet the address is in, `A.B.C.D/N` without host bits.
    pub fn subnet(&self) -> String {
        let net = u32::from(self.addr) & ctl::validate::mask(self.prefix);
        format!("{}/{}", Ipv4Addr::from(net), self.prefix)
    }
}

/// Finds `plugin` in the colon-separated `CNI_PATH`.
fn find(plugin: &str, cni_path: &str) -> Result<PathBuf> {
    cni_path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            err(
                Code::InvalidConfig,
                format!("IPAM plugin {plugin:?} not found in CNI_PATH {cni_path:?}"),
            )
        })
}

/// Runs the IPAM plugin for `command` with `stdin`; its stdout when it succeeds.
pub fn exec(plugin: &str, command: &str, env: &Env, stdin: &[u8]) -> Result<Vec<u8>> {
    let bin = find(plugin, &env.path)?;
    let mut child = Command::new(&bin)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(Code::Io, format!("cannot run {}: {e}", bin.display())))?;
    if let Some(mut i) = child.stdin.take() {
        // A plugin that exits without reading is judged by its exit status below.
        let _ = i.write_all(stdin);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err(Code::Io, format!("{} failed: {e}", bin.display())))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    // A failing plugin prints its own error object: pass its code and message on.
    let v: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    let code = v
        .as_ref()
        .and_then(|v| v.get("code"))
        .and_then(Value::as_u64);
    let msg = v
        .as_ref()
        .and_then(|v| v.get("msg"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let e = String::from_utf8_lossy(&out.stderr);
            format!("{} ({})", e.trim(), out.status)
        });
    let code = delegated_code(code);
    Err(CniError::new(code, format!("IPAM plugin {plugin}: {msg}")))
}

/// The code of a failing IPAM plugin's error object, for ours: the spec's well-known
/// ones as such, any other as the plugin gave it (its author documents it), none (or 0)
/// an I/O error.
fn delegated_code(code: Option<u64>) -> Code {
    match code {
        Some(1) => Code::IncompatibleVersion,
        Some(2) => Code::UnsupportedField,
        Some(3) => Code::UnknownContainer,
        Some(4) => Code::InvalidEnv,
        Some(6) => Code::Decode,
        Some(7) => Code::InvalidConfig,
        Some(11) => Code::TryAgainLater,
        Some(50) => Code::NotAvailable,
        Some(n) => match u32::try_from(n) {
            Ok(n) if n != 0 => Code::Delegated(n),
            _ => Code::Io,
        },
        None => Code::Io,
    }
}

/// The first IPv4 address of an IPAM result, with the result itself.
pub fn lease(result: &[u8]) -> Result<(Lease, Value)> {
    let v: Value = serde_json::from_slice(result).map_err(|e| {
        err(Code::Decode, "cannot decode the IPAM plugin's result").with_details(e.to_string())
    })?;
    let l = first_v4(&v).ok_or_else(|| {
        err(
            Code::InvalidConfig,
            "the IPAM plugin gave no IPv4 address (vswitch networks are IPv4)",
        )
    })?;
    Ok((l, v))
}

/// The first IPv4 entry of a result's `ips` (also of a `prevResult`).
pub fn first_v4(result: &Value) -> Option<Lease> {
    result.get("ips")?.as_array()?.iter().find_map(|ip| {
        let (a, p) = ip.get("address")?.as_str()?.split_once('/')?;
        let addr: Ipv4Addr = a.parse().ok()?;
        let prefix: u8 = p.parse().ok().filter(|p| (1..=32).contains(p))?;
        let gateway = ip
            .get("gateway")
            .and_then(Value::as_str)
            .and_then(|g| g.parse().ok());
        Some(Lease {
            addr,
            prefix,
            gateway,
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_ipam_plugins_code_is_passed_on() {
        assert_eq!(delegated_code(Some(7)), Code::InvalidConfig);
        assert_eq!(delegated_code(Some(999)).number(), 999);
        assert_eq!(delegated_code(Some(5)).number(), 5);
        assert_eq!(delegated_code(Some(0)), Code::Io);
        assert_eq!(delegated_code(Some(u64::MAX)), Code::Io);
        assert_eq!(delegated_code(None), Code::Io);
    }

    #[test]
    fn reads_host_local_results_of_both_shapes() {
        let (l, _) = lease(br#"{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.5/24","gateway":"10.1.0.1"}],"dns":{}}"#).unwrap();
        assert_eq!(l.cidr(), "10.1.0.5/24");
        assert_eq!(l.subnet(), "10.1.0.0/24");
        assert_eq!(l.gateway, Some(Ipv4Addr::new(10, 1, 0, 1)));
        let (l, _) = lease(br#"{"cniVersion":"0.4.0","ips":[{"version":"6","address":"fd00::5/64"},{"version":"4","address":"10.2.0.9/16"}]}"#).unwrap();
        assert_eq!((l.cidr(), l.gateway), ("10.2.0.9/16".into(), None));
        assert_eq!(
            lease(br#"{"ips":[]}"#).unwrap_err().code,
            Code::InvalidConfig
        );
    }
}
