//! Containers' names and network aliases as DNS names of their endpoints.
//!
//! libnetwork's `Join` names no container, so the names come from the Docker Engine API
//! ([`crate::engine`]): each `network connect` event names a container, whose inspect
//! gives its name and, per network, the endpoint ID and the aliases (`--network-alias`,
//! and the short container ID Docker adds). The endpoint's port in `vswitchd` gets them
//! with `set-names`, and the gateway answers them; they go with the port when Docker
//! deletes the endpoint. When the watch starts (and after the Engine API was lost) every
//! running container is looked at once, so names survive a plugin restart.

use std::collections::BTreeMap;
use std::time::Duration;

use ctl::{BridgeInfo, Data, Request};
use serde_json::Value;

use crate::engine::Engine;
use crate::plugin::{Switch, K_ENDPOINT};

/// The most names one endpoint gets (as `vswitchd` allows).
pub const MAX_NAMES: usize = 32;
/// How long to wait before reaching the Engine API again after it was lost.
pub const RETRY: Duration = Duration::from_secs(1);
/// How long a quiet event stream is trusted before every container is looked at again.
pub const RESYNC: Duration = Duration::from_secs(5);
/// The events watched.
pub const FILTERS: &str = r#"{"type":["network"],"event":["connect"]}"#;

/// The DNS names of each of a container's endpoints, from its inspect JSON: endpoint ID
/// to its container name, aliases and DNS names (Docker 25 and later), lower-cased, in
/// that order, each once; names DNS cannot carry are left out.
pub fn endpoint_names(inspect: &Value) -> BTreeMap<String, Vec<String>> {
    let name = inspect
        .get("Name")
        .and_then(Value::as_str)
        .map(|n| n.trim_start_matches('/'));
    let mut out = BTreeMap::new();
    let Some(nets) = inspect
        .pointer("/NetworkSettings/Networks")
        .and_then(Value::as_object)
    else {
        return out;
    };
    for settings in nets.values() {
        let Some(eid) = settings.get("EndpointID").and_then(Value::as_str) else {
            continue;
        };
        if eid.is_empty() {
            continue;
        }
        let listed = |key: &str| -> Vec<String> {
            settings
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        };
        let mut names: Vec<String> = Vec::new();
        let all = name
            .map(str::to_string)
            .into_iter()
            .chain(listed("Aliases"))
            .chain(listed("DNSNames"));
        for n in all {
            let n = n.to_ascii_lowercase();
            if ctl::dns::name("name", &n).is_ok() && !names.contains(&n) {
                names.push(n);
            }
        }
        names.truncate(MAX_NAMES);
        out.insert(eid.to_string(), names);
    }
    out
}

/// Gives the ports of the container's endpoints (those this plugin made) the names
/// `inspect` lists; returns how many ports changed.
pub fn name_endpoints(sw: &impl Switch, inspect: &Value) -> Result<usize, String> {
    let want = endpoint_names(inspect);
    if want.is_empty() {
        return Ok(0);
    }
    let bridges: Vec<BridgeInfo> = match sw.call(&Request::Show)? {
        Data::Show { bridges, .. } => bridges,
        other => return Err(format!("vswitchd answered show with {other:?}")),
    };
    let mut changed = 0;
    for p in bridges.iter().flat_map(|b| &b.ports) {
        let Some(names) = p.external_ids.get(K_ENDPOINT).and_then(|e| want.get(e)) else {
            continue;
        };
        if &p.names == names {
            continue;
        }
        sw.call(&Request::SetNames {
            port: p.name.clone(),
            names: names.clone(),
        })?;
        changed += 1;
    }
    Ok(changed)
}

/// Inspects container `id` and names its endpoints.
async fn name_container(engine: &Engine, sw: &impl Switch, id: &str) -> Result<usize, String> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!("malformed container ID {id:?} in an event"));
    }
    let inspect = engine.get(&format!("/containers/{id}/json")).await?;
    name_endpoints(sw, &inspect)
}

/// Names the endpoints of every running container.
async fn name_all(engine: &Engine, sw: &impl Switch) -> Result<(), String> {
    let list = engine.get("/containers/json").await?;
    for c in list.as_array().into_iter().flatten() {
        if let Some(id) = c.get("Id").and_then(Value::as_str) {
            if let Err(e) = name_container(engine, sw, id).await {
                eprintln!("vswitch-docker: names of container {id}: {e}");
            }
        }
    }
    Ok(())
}

/// One watch: the stream opened, every container named, then each connect event's.
/// A stream quiet for [`RESYNC`] (or one that never answers, as an early request to a
/// dockerd still starting may) costs a look at every container, so a missed event
/// delays names by [`RESYNC`] at most.
async fn watch_once(engine: &Engine, sw: &impl Switch) -> Result<(), String> {
    let mut events = tokio::time::timeout(RESYNC, engine.events(FILTERS))
        .await
        .map_err(|_| format!("no Docker event stream in {RESYNC:?}"))??;
    name_all(engine, sw).await?;
    loop {
        let ev = match tokio::time::timeout(RESYNC, events.next()).await {
            Err(_) => {
                name_all(engine, sw).await?;
                continue;
            }
            Ok(ev) => ev?,
        };
        let Some(ev) = ev else {
            return Err("the Docker event stream ended".into());
        };
        let Some(id) = ev
            .pointer("/Actor/Attributes/container")
            .and_then(Value::as_str)
        else {
            continue;
        };
        if let Err(e) = name_container(engine, sw, id).await {
            eprintln!("vswitch-docker: names of container {id}: {e}");
        }
    }
}

/// Watches the Engine API forever (run it in its own thread): reconnects after each
/// loss, saying so once until it is back.
pub fn watch(engine: Engine, sw: impl Switch) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vswitch-docker: no container names: cannot start a runtime: {e}");
            return;
        }
    };
    rt.block_on(async {
        let mut said: Option<String> = None;
        loop {
            if let Err(e) = watch_once(&engine, &sw).await {
                if said.as_deref() != Some(e.as_str()) {
                    eprintln!("vswitch-docker: container names: {e} (trying again)");
                    said = Some(e);
                }
            }
            tokio::time::sleep(RETRY).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_of_each_endpoint_from_an_inspect() {
        let inspect = json!({
            "Id": "0123456789abcdef",
            "Name": "/Web-1",
            "NetworkSettings": {"Networks": {
                "front": {"EndpointID": "e1", "Aliases": ["db", "0123456789ab", "web-1", "bad name"]},
                "back": {"EndpointID": "e2", "Aliases": null, "DNSNames": ["web-1", "cache.internal"]},
                "gone": {"EndpointID": ""},
                "odd": {"Aliases": ["x"]}
            }}
        });
        let got = endpoint_names(&inspect);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got["e1"], ["web-1", "db", "0123456789ab"]);
        assert_eq!(got["e2"], ["web-1", "cache.internal"]);
        // No name and no networks: nothing; too many aliases: the first 32 names.
        assert!(endpoint_names(&json!({"Name": "/x"})).is_empty());
        let many: Vec<String> = (0..40).map(|i| format!("a{i}")).collect();
        let got = endpoint_names(&json!({"Name": "/x", "NetworkSettings": {"Networks": {
            "n": {"EndpointID": "e", "Aliases": many}}}}));
        assert_eq!(got["e"].len(), MAX_NAMES);
        assert_eq!(got["e"][0], "x");
    }
}
