//! Docker's remote IPAM driver (`IpamDriver.*` calls) backed by the cluster's
//! allocator: a pool is a cluster overlay (found by its subnet, `--subnet`, or by
//! `--ipam-opt vswitch.overlay=NAME`), an address is reserved through `vswitchd`'s
//! `IpamClaim` — the same etcd transaction as `vsctl attach` — so no two hosts ever hand
//! out one address. The gateway is the overlay's own and is never handed out. The
//! pool's ID is the overlay's name; nothing is kept here.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ctl::{Data, OverlayInfo, Request};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse, Links, Plugin, Switch};

/// The option naming the overlay of a pool (`--ipam-opt`), and of a network (`-o`).
pub const OPT_OVERLAY: &str = "vswitch.overlay";
/// The address spaces this driver reports; pools are overlays whatever the space.
pub const LOCAL_SPACE: &str = "vswitch";
pub const GLOBAL_SPACE: &str = "vswitch-global";
/// libnetwork's option marking the request for a network's gateway address.
const REQUEST_TYPE: &str = "RequestAddressType";
const GATEWAY_TYPE: &str = "com.docker.network.gateway";
/// Who holds the addresses this driver reserves (shown by `vsctl list-overlays`).
const OWNER: &str = "docker";

/// `IpamDriver.RequestPool`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RequestPool {
    pool: String,
    sub_pool: String,
    /// Docker sends `null` when there are none.
    options: Option<BTreeMap<String, Value>>,
    #[serde(rename = "V6")]
    v6: bool,
}

/// `IpamDriver.RequestAddress`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RequestAddress {
    #[serde(rename = "PoolID")]
    pool_id: String,
    address: String,
    /// Docker sends `null` when there are none.
    options: Option<BTreeMap<String, Value>>,
}

/// `IpamDriver.ReleaseAddress`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ReleaseAddress {
    #[serde(rename = "PoolID")]
    pool_id: String,
    address: String,
}

fn prefix_len(subnet: &str) -> Option<u8> {
    subnet.split_once('/').and_then(|(_, n)| n.parse().ok())
}

impl<S: Switch, L: Links> Plugin<S, L> {
    /// The cluster's overlays as this node sees them.
    pub(super) fn overlays(&self) -> Result<Vec<OverlayInfo>, String> {
        match self.sw.call(&Request::ListOverlays)? {
            Data::Overlays { overlays, .. } => Ok(overlays),
            other => Err(format!("vswitchd answered list-overlays with {other:?}")),
        }
    }

    fn overlay(&self, name: &str) -> Result<OverlayInfo, String> {
        self.overlays()?
            .into_iter()
            .find(|o| o.name == name)
            .ok_or_else(|| format!("overlay {name} is not known to the cluster"))
    }

    /// Answers an `IpamDriver.*` call, or None for another call.
    pub(super) fn dispatch_ipam(&self, call: &str, body: &[u8]) -> Option<Result<Value, String>> {
        Some(match call {
            "IpamDriver.GetCapabilities" => Ok(json!({
                "RequiresMACAddress": false,
                "RequiresRequestReplay": false
            })),
            "IpamDriver.GetDefaultAddressSpaces" => Ok(json!({
                "LocalDefaultAddressSpace": LOCAL_SPACE,
                "GlobalDefaultAddressSpace": GLOBAL_SPACE
            })),
            "IpamDriver.RequestPool" => self.request_pool(body),
            "IpamDriver.ReleasePool" => Ok(json!({})),
            "IpamDriver.RequestAddress" => self.request_address(body),
            "IpamDriver.ReleaseAddress" => self.release_address(body),
            _ => return None,
        })
    }

    fn request_pool(&self, body: &[u8]) -> Result<Value, String> {
        let r: RequestPool = parse(body)?;
        if r.v6 {
            return Err("IPv6 pools are not supported (create the network without --ipv6)".into());
        }
        if !r.sub_pool.is_empty() {
            return Err("--ip-range is not supported: the whole overlay is the pool".into());
        }
        let named = r
            .options
            .as_ref()
            .and_then(|o| o.get(OPT_OVERLAY))
            .and_then(crate::api::option_text);
        let overlays = self.overlays()?;
        let o = match (named.as_ref(), r.pool.as_str()) {
            (Some(name), pool) => {
                let o = overlays
                    .into_iter()
                    .find(|o| &o.name == name)
                    .ok_or_else(|| format!("overlay {name} is not known to the cluster"))?;
                if !pool.is_empty() && pool != o.subnet {
                    return Err(format!(
                        "--subnet {pool} is not overlay {name}'s subnet {}",
                        o.subnet
                    ));
                }
                o
            }
            (None, "") => {
                return Err(format!(
                    "give the overlay's subnet (--subnet) or --ipam-opt {OPT_OVERLAY}=NAME"
                ))
            }
            (None, pool) => overlays
                .into_iter()
                .find(|o| o.subnet == pool)
                .ok_or_else(|| format!("no overlay of the cluster has subnet {pool}"))?,
        };
        let len = prefix_len(&o.subnet).unwrap_or(32);
        Ok(json!({
            "PoolID": o.name,
            "Pool": o.subnet,
            "Data": { GATEWAY_TYPE: format!("{}/{len}", o.gateway) }
        }))
    }

    fn request_address(&self, body: &[u8]) -> Result<Value, String> {
        let r: RequestAddress = parse(body)?;
        let o = self.overlay(&r.pool_id)?;
        let len = prefix_len(&o.subnet).unwrap_or(32);
        let is_gw = r
            .options
            .as_ref()
            .and_then(|o| o.get(REQUEST_TYPE))
            .and_then(crate::api::option_text)
            .is_some_and(|t| t == GATEWAY_TYPE);
        let asked = match r.address.as_str() {
            "" => None,
            a => Some(
                a.split_once('/')
                    .map_or(a, |(ip, _)| ip)
                    .parse::<Ipv4Addr>()
                    .map_err(|_| format!("{a:?} is not an IPv4 address"))?,
            ),
        };
        if is_gw {
            // The overlay's gateway is recorded in the cluster and never handed out.
            let gw = o.gateway.clone();
            if asked.is_some_and(|a| a.to_string() != gw) {
                return Err(format!(
                    "overlay {}'s gateway is {gw}; create the network without --gateway",
                    o.name
                ));
            }
            return Ok(json!({ "Address": format!("{gw}/{len}"), "Data": {} }));
        }
        match self.sw.call(&Request::IpamClaim {
            overlay: o.name.clone(),
            ip: asked,
            owner: OWNER.into(),
        })? {
            Data::Attached { ip, .. } => Ok(json!({ "Address": ip, "Data": {} })),
            other => Err(format!("vswitchd answered ipam-claim with {other:?}")),
        }
    }

    fn release_address(&self, body: &[u8]) -> Result<Value, String> {
        let r: ReleaseAddress = parse(body)?;
        let ip: Ipv4Addr = r
            .address
            .split_once('/')
            .map_or(r.address.as_str(), |(ip, _)| ip)
            .parse()
            .map_err(|_| format!("{:?} is not an IPv4 address", r.address))?;
        let o = self.overlay(&r.pool_id)?;
        if o.gateway == ip.to_string() {
            return Ok(json!({}));
        }
        self.sw.call(&Request::IpamRelease {
            overlay: o.name,
            ip,
        })?;
        Ok(json!({}))
    }
}
