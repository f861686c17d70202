//! The network configuration on stdin and the `CNI_*` environment, parsed and checked
//! once: everything after this works on typed values.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{err, Code, Result};

/// The CNI versions this plugin speaks; results are shaped for the config's.
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The version of errors printed before a config could be read.
pub const OWN_VERSION: &str = "1.0.0";

/// One published port asked for through the `portMappings` capability.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    #[serde(default = "tcp")]
    pub protocol: String,
    /// Only the uplink address can be published on; a specific host IP is refused
    /// unless it is empty or the wildcard.
    #[serde(default, rename = "hostIP")]
    pub host_ip: String,
}

fn tcp() -> String {
    "tcp".into()
}

/// What the runtime passes under `runtimeConfig` for the capabilities we declare.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// The `mac` capability: the container interface's MAC.
    #[serde(default)]
    pub mac: Option<String>,
}

/// The plugin's network configuration (one entry of a conflist, as the runtime hands it).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub bridge: Option<String>,
    #[serde(default)]
    pub vlan: Option<u16>,
    #[serde(default)]
    pub mtu: Option<u32>,
    /// A cluster overlay network's name (needs vswitchd in cluster mode): its bridge on
    /// this node and the cluster's addresses, instead of `bridge` and `ipam`.
    #[serde(default)]
    pub overlay: Option<String>,
    /// vswitchd's control socket.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    #[serde(default)]
    pub ipam: Option<Value>,
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    #[serde(default)]
    pub prev_result: Option<Value>,
    /// Everything else (`capabilities`, `dns`, `args`, …): kept, not interpreted.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Net {
    pub conf: NetConf,
    pub bridge: String,
    pub socket: PathBuf,
    /// The IPAM plugin's type (empty on an overlay).
    pub ipam_type: String,
}

/// Reads the version only, so that an error about the rest can be given in it.
pub fn version_of(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_string)
}

/// Parses and checks the network configuration.
pub fn parse(stdin: &[u8]) -> Result<Net> {
    let conf: NetConf = serde_json::from_slice(stdin).map_err(|e| {
        err(Code::Decode, "cannot decode the network configuration").with_details(e.to_string())
    })?;
    check_version(&conf.cni_version)?;
    if conf.kind != "vswitch" {
        return Err(err(
            Code::InvalidConfig,
            format!("\"type\" is {:?}, this plugin is \"vswitch\"", conf.kind),
        ));
    }
    if conf.name.is_empty() {
        return Err(err(Code::InvalidConfig, "the network has no \"name\""));
    }
    if let Some(o) = &conf.overlay {
        ctl::validate::bridge_name(o).map_err(|e| {
            err(
                Code::InvalidConfig,
                format!("\"overlay\" must be a cluster network's name: {e}"),
            )
        })?;
        // The cluster hands out the addresses: a second allocator would hand out the
        // same ones to other nodes' containers.
        if conf.ipam.is_some() {
            return Err(err(
                Code::InvalidConfig,
                "\"overlay\" and \"ipam\" exclude each other: an overlay's addresses come from the cluster",
            ));
        }
        // An overlay's tunnel carries untagged frames only, so an access port of a
        // VLAN could reach nothing beyond this node.
        if conf.vlan.is_some() {
            return Err(err(
                Code::InvalidConfig,
                "\"vlan\" cannot be used with \"overlay\" (an overlay carries untagged frames only)",
            ));
        }
    }
    let bridge = match (&conf.bridge, &conf.overlay) {
        (Some(b), _) => {
            ctl::validate::bridge_name(b)
                .map_err(|e| err(Code::InvalidConfig, format!("\"bridge\": {e}")))?;
            b.clone()
        }
        // vswitchd names an overlay's bridge after the overlay; ADD checks that.
        (None, Some(o)) => o.clone(),
        (None, None) => return Err(err(Code::InvalidConfig, "\"bridge\" is missing")),
    };
    if let Some(v) = conf.vlan {
        ctl::validate::vid(v).map_err(|e| err(Code::InvalidConfig, format!("\"vlan\": {e}")))?;
    }
    if let Some(m) = conf.mtu {
        ctl::validate::mtu(m).map_err(|e| err(Code::InvalidConfig, format!("\"mtu\": {e}")))?;
    }
    for p in &conf.runtime_config.port_mappings {
        check_mapping(p)?;
    }
    if let Some(m) = &conf.runtime_config.mac {
        ctl::validate::unicast_mac(m)
            .map_err(|e| err(Code::InvalidConfig, format!("runtimeConfig \"mac\": {e}")))?;
    }
    let ipam_type =
        match &conf.ipam {
            Some(Value::Object(m)) => match m.get("type") {
                Some(Value::String(t)) if is_plugin_name(t) => t.clone(),
                _ => {
                    return Err(err(
                        Code::InvalidConfig,
                        "\"ipam\" needs a \"type\" naming an IPAM plugin (e.g. \"host-local\")",
                    ))
                }
            },
            Some(_) => return Err(err(Code::InvalidConfig, "\"ipam\" must be an object")),
            None if conf.overlay.is_some() => String::new(),
            None => return Err(err(
                Code::InvalidConfig,
                "an \"ipam\" section is needed (e.g. {\"type\": \"host-local\", \"ranges\": …})",
            )),
        };
    let socket = conf
        .socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(ctl::DEFAULT_SOCK));
    Ok(Net {
        conf,
        bridge,
        socket,
        ipam_type,
    })
}

/// Refuses a version we cannot answer in.
pub fn check_version(v: &str) -> Result<()> {
    if SUPPORTED.contains(&v) {
        Ok(())
    } else {
        Err(err(
            Code::IncompatibleVersion,
            format!(
                "CNI version {v:?} is not supported (supported: {})",
                SUPPORTED.join(", ")
            ),
        ))
    }
}

fn check_mapping(p: &PortMapping) -> Result<()> {
    if p.protocol != "tcp" && p.protocol != "udp" {
        return Err(err(
            Code::InvalidConfig,
            format!(
                "portMappings: protocol {:?} is not supported (tcp or udp)",
                p.protocol
            ),
        ));
    }
    if p.host_port == 0 || p.container_port == 0 {
        return Err(err(
            Code::InvalidConfig,
            "portMappings: hostPort and containerPort must be 1-65535",
        ));
    }
    if !(p.host_ip.is_empty() || p.host_ip == "0.0.0.0") {
        return Err(err(
            Code::InvalidConfig,
            format!(
                "portMappings: hostIP {} cannot be chosen: ports are published on vswitchd's uplink address",
                p.host_ip
            ),
        ));
    }
    Ok(())
}

/// A plugin name that cannot walk out of `CNI_PATH`.
fn is_plugin_name(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && t != "."
        && t != ".."
}

/// The `CNI_*` environment of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub path: String,
}

/// Reads the variables `command` needs (spec: ADD and CHECK need all but `CNI_ARGS`;
/// DEL may come without `CNI_NETNS`; VERSION, STATUS and GC need none).
pub fn env(get: impl Fn(&str) -> Option<String>) -> Result<Env> {
    let command = get("CNI_COMMAND")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| err(Code::InvalidEnv, "CNI_COMMAND is not set"))?;
    let need = |name: &str, required: bool| -> Result<String> {
        match get(name).filter(|v| !v.is_empty()) {
            Some(v) => Ok(v),
            None if required => Err(err(
                Code::InvalidEnv,
                format!("{name} is not set (needed by {command})"),
            )),
            None => Ok(String::new()),
        }
    };
    let full = matches!(command.as_str(), "ADD" | "CHECK");
    let del = command == "DEL";
    let e = Env {
        container_id: need("CNI_CONTAINERID", full || del)?,
        netns: need("CNI_NETNS", full)?,
        ifname: need("CNI_IFNAME", full || del)?,
        path: need("CNI_PATH", full || del)?,
        command,
    };
    // Only the verbs that use them judge them: runtimes probe VERSION with
    // placeholders (libcni passes CNI_NETNS=dummy).
    if (full || del) && !e.ifname.is_empty() {
        ctl::validate::iface_name(&e.ifname)
            .map_err(|m| err(Code::InvalidEnv, format!("CNI_IFNAME: {m}")))?;
    }
    if (full || del) && !e.netns.is_empty() && !e.netns.starts_with('/') {
        return Err(err(
            Code::InvalidEnv,
            format!("CNI_NETNS {:?} is not a path", e.netns),
        ));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn conf(extra: &str) -> Vec<u8> {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"n","type":"vswitch","bridge":"br0",
               "ipam":{{"type":"host-local","subnet":"10.1.0.0/24"}}{extra}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn a_good_config_parses() {
        let n = parse(&conf(
            r#","vlan":10,"mtu":1400,"capabilities":{"portMappings":true}"#,
        ))
        .unwrap();
        assert_eq!(n.bridge, "br0");
        assert_eq!(n.conf.vlan, Some(10));
        assert_eq!(n.ipam_type, "host-local");
        assert_eq!(n.socket, PathBuf::from(ctl::DEFAULT_SOCK));
    }

    #[test]
    fn bad_configs_get_the_right_codes() {
        let code = |b: &[u8]| parse(b).unwrap_err().code;
        assert_eq!(code(b"{not json"), Code::Decode);
        assert_eq!(
            code(br#"{"cniVersion":"9.9.9","name":"n","type":"vswitch"}"#),
            Code::IncompatibleVersion
        );
        assert_eq!(code(&conf(r#","vlan":5000"#)), Code::InvalidConfig);
        assert_eq!(code(&conf(r#","mtu":50"#)), Code::InvalidConfig);
        assert_eq!(code(&conf(r#","overlay":"""#)), Code::InvalidConfig);
        assert_eq!(
            code(br#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","ipam":{"type":"host-local"}}"#),
            Code::InvalidConfig
        );
        assert_eq!(
            code(br#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","bridge":"b"}"#),
            Code::InvalidConfig
        );
        assert_eq!(
            code(br#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","bridge":"b","ipam":{"type":"../x"}}"#),
            Code::InvalidConfig
        );
        assert_eq!(
            code(&conf(
                r#","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"protocol":"sctp"}]}"#
            )),
            Code::InvalidConfig
        );
    }

    #[test]
    fn an_overlay_needs_no_bridge_and_takes_no_ipam() {
        let n =
            parse(br#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","overlay":"ov"}"#).unwrap();
        assert_eq!(n.bridge, "ov");
        assert_eq!(n.ipam_type, "");
        let n = parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","overlay":"ov","bridge":"ov","mtu":1400}"#,
        )
        .unwrap();
        assert_eq!((n.bridge.as_str(), n.conf.mtu), ("ov", Some(1400)));
        let e = parse(&conf(r#","overlay":"ov""#)).unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig);
        assert!(e.msg.contains("\"ipam\""), "{e}");
        let e = parse(
            br#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","overlay":"ov","vlan":10}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig);
        assert!(e.msg.contains("\"vlan\""), "{e}");
        let e = parse(br#"{"cniVersion":"1.0.0","name":"n","type":"vswitch","overlay":"a/b"}"#)
            .unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig);
    }

    #[test]
    fn env_needs_what_the_command_needs() {
        let vars = |v: &'static [(&'static str, &'static str)]| {
            move |k: &str| v.iter().find(|(n, _)| *n == k).map(|(_, x)| x.to_string())
        };
        assert_eq!(env(vars(&[])).unwrap_err().code, Code::InvalidEnv);
        assert!(env(vars(&[("CNI_COMMAND", "VERSION")])).is_ok());
        assert!(env(vars(&[("CNI_COMMAND", "VERSION"), ("CNI_NETNS", "dummy")])).is_ok());
        let e = env(vars(&[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c")])).unwrap_err();
        assert!(e.msg.contains("CNI_NETNS"), "{e}");
        let del = env(vars(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/usr/lib/cni"),
        ]))
        .unwrap();
        assert_eq!(del.netns, "");
    }
}
