//! The bodies of libnetwork's remote network driver protocol (`NetworkDriver.*` calls),
//! as Docker 20.10+ sends them. Parsing is lenient about fields it does not use (Docker
//! adds fields over time) and strict about the ones it does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The option key under which `docker network create -o K=V` options arrive.
pub const GENERIC: &str = "com.docker.network.generic";
/// The endpoint option listing published ports (`-p`).
pub const PORTMAP: &str = "com.docker.network.portmap";
/// The MTU option (`-o com.docker.network.driver.mtu=N`).
pub const MTU: &str = "com.docker.network.driver.mtu";

/// One IPAM pool of a network, as Docker's IPAM assigned it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamData {
    pub address_space: String,
    /// `A.B.C.D/N`.
    pub pool: String,
    /// `A.B.C.D/N` (the gateway address with the pool's prefix length).
    pub gateway: String,
}

/// `NetworkDriver.CreateNetwork`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CreateNetwork {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "Options")]
    pub options: BTreeMap<String, Value>,
    #[serde(rename = "IPv4Data")]
    pub ipv4_data: Option<Vec<IpamData>>,
    #[serde(rename = "IPv6Data")]
    pub ipv6_data: Option<Vec<IpamData>>,
}

/// `NetworkDriver.DeleteNetwork`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DeleteNetwork {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

/// The interface Docker proposes for an endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointInterface {
    /// `A.B.C.D/N`.
    pub address: String,
    #[serde(rename = "AddressIPv6")]
    pub address_ipv6: String,
    pub mac_address: String,
}

/// `NetworkDriver.CreateEndpoint`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CreateEndpoint {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "Options")]
    pub options: BTreeMap<String, Value>,
    #[serde(rename = "Interface")]
    pub interface: Option<EndpointInterface>,
}

/// `DeleteEndpoint`, `Join`, `Leave`, `ProgramExternalConnectivity`,
/// `RevokeExternalConnectivity`, `EndpointOperInfo`: a network, an endpoint, options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EndpointCall {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "Options")]
    pub options: BTreeMap<String, Value>,
}

/// One `-p` binding of `com.docker.network.portmap` (libnetwork's `types.PortBinding`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    /// IANA protocol number: 6 TCP, 17 UDP, 132 SCTP.
    pub proto: u8,
    /// The container port.
    pub port: u16,
    pub host_port: u16,
    pub host_port_end: u16,
    #[serde(rename = "HostIP")]
    pub host_ip: Option<String>,
}

/// `NetworkDriver.CreateEndpoint`'s answer: only what Docker did not give.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CreateEndpointResponse {
    #[serde(rename = "Interface", skip_serializing_if = "Option::is_none")]
    pub interface: Option<InterfaceOut>,
}

/// The interface fields a driver may fill in.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InterfaceOut {
    #[serde(rename = "MacAddress", skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
}

/// The interface name libnetwork moves into the sandbox.
#[derive(Debug, Clone, Serialize)]
pub struct InterfaceName {
    #[serde(rename = "SrcName")]
    pub src_name: String,
    #[serde(rename = "DstPrefix")]
    pub dst_prefix: String,
}

/// `NetworkDriver.Join`'s answer.
#[derive(Debug, Clone, Serialize)]
pub struct JoinResponse {
    #[serde(rename = "InterfaceName")]
    pub interface_name: InterfaceName,
    #[serde(rename = "Gateway", skip_serializing_if = "String::is_empty")]
    pub gateway: String,
}

/// A generic option value as a string: `-o` options are strings, but a number or a bool
/// sent by an API client is taken as its text.
pub fn option_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The `-o` options of a network (or endpoint): `Options["com.docker.network.generic"]`.
pub fn generic_options(
    options: &BTreeMap<String, Value>,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    match options.get(GENERIC) {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let t = option_text(v)
                    .ok_or_else(|| format!("option {k} must be a string, not {v}"))?;
                out.insert(k.clone(), t);
            }
        }
        Some(other) => return Err(format!("{GENERIC} must be an object, not {other}")),
    }
    Ok(out)
}

/// The `-p` bindings of an endpoint (empty when there are none).
pub fn port_map(options: &BTreeMap<String, Value>) -> Result<Vec<PortBinding>, String> {
    match options.get(PORTMAP) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => {
            serde_json::from_value(v.clone()).map_err(|e| format!("malformed {PORTMAP}: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_network_as_docker_sends_it() {
        let body = r#"{"NetworkID":"4e2a1f0c9d8b7a6f5e4d3c2b1a09f8e7d6c5b4a3928170615f4e3d2c1b0a9f8e",
            "Options":{"com.docker.network.enable_ipv6":false,
                       "com.docker.network.generic":{"vswitch.vlan":"10","x":7}},
            "IPv4Data":[{"AddressSpace":"LocalDefault","Pool":"172.30.0.0/24",
                         "Gateway":"172.30.0.1/24","AuxAddresses":null}],
            "IPv6Data":[]}"#;
        let r: CreateNetwork = serde_json::from_str(body).unwrap();
        assert_eq!(r.ipv4_data.as_ref().unwrap()[0].pool, "172.30.0.0/24");
        assert_eq!(r.ipv4_data.as_ref().unwrap()[0].gateway, "172.30.0.1/24");
        let g = generic_options(&r.options).unwrap();
        assert_eq!(g["vswitch.vlan"], "10");
        assert_eq!(g["x"], "7");
    }

    #[test]
    fn port_map_as_docker_sends_it() {
        let body = r#"{"NetworkID":"n","EndpointID":"e","Options":{
            "com.docker.network.endpoint.exposedports":[{"Proto":6,"Port":80}],
            "com.docker.network.portmap":[{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":8080,"HostPortEnd":8080}]}}"#;
        let r: EndpointCall = serde_json::from_str(body).unwrap();
        let pm = port_map(&r.options).unwrap();
        assert_eq!(pm.len(), 1);
        assert_eq!((pm[0].proto, pm[0].port, pm[0].host_port), (6, 80, 8080));
        let bad: EndpointCall =
            serde_json::from_str(r#"{"Options":{"com.docker.network.portmap":[{"Proto":"x"}]}}"#)
                .unwrap();
        assert!(port_map(&bad.options).is_err());
    }

    #[test]
    fn responses_carry_only_what_is_set() {
        let r = CreateEndpointResponse::default();
        assert_eq!(serde_json::to_string(&r).unwrap(), "{}");
        let r = CreateEndpointResponse {
            interface: Some(InterfaceOut {
                mac_address: "02:00:00:00:00:01".into(),
            }),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"Interface":{"MacAddress":"02:00:00:00:00:01"}}"#
        );
    }
}
