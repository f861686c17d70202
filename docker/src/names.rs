//! Containers' names and network aliases as DNS names of their endpoints.
//!
//! libnetwork's `Join` names no container, so the names come from the Docker Engine API
//! ([`crate::engine`]): each `network connect` event names a container, whose inspect
//! gives its name and, per network, the endpoint ID and the aliases (`--network-alias`,
//! and the short container ID Docker adds). The endpoint's port in `vswitchd` gets them
//! with `set-names`, and the gateway answers them; they go with the port when Docker
//! deletes the endpoint.
//!
//! Nothing may fall between two looks, or a name waits for the next rescan: Docker
//! answers an events request before it subscribes it, and lists a container as running
//! only once its start is over, well after it joined. So each stream starts from where
//! the last one left off (the first from the plugin's start; Docker replays the events
//! it holds), every running or starting container is looked at when a stream opens
//! (names survive a plugin restart), and a container whose endpoint is not a port yet
//! when its event is read is looked at again a few times.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ctl::{BridgeInfo, Data, Request};
use serde_json::Value;

use crate::engine::Engine;
use crate::plugin::{Switch, K_ENDPOINT};

/// The most names one endpoint gets (as `vswitchd` allows).
pub const MAX_NAMES: usize = 32;
/// How long to wait before reaching the Engine API again after it was lost.
pub const RETRY: Duration = Duration::from_secs(1);
/// How long a quiet event stream is trusted before every container is looked at again,
/// unless `--names-rescan` says otherwise.
pub const RESCAN: Duration = Duration::from_secs(5);
/// The events watched: a container joining a network, and a container renamed (Docker
/// tells no network driver of that).
pub const FILTERS: &str = r#"{"type":["network","container"],"event":["connect","rename"]}"#;

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

/// The endpoint ID of the container's endpoint on network `nid`, if inspect lists one.
pub fn endpoint_on(inspect: &Value, nid: &str) -> Option<String> {
    inspect
        .pointer("/NetworkSettings/Networks")
        .and_then(Value::as_object)?
        .values()
        .find(|s| s.get("NetworkID").and_then(Value::as_str) == Some(nid))?
        .get("EndpointID")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
        .map(str::to_string)
}

/// Gives the ports of the container's endpoints (those this plugin made) the names
/// `inspect` lists; returns the endpoint IDs that have a port.
pub fn name_endpoints(sw: &impl Switch, inspect: &Value) -> Result<BTreeSet<String>, String> {
    let want = endpoint_names(inspect);
    let mut found = BTreeSet::new();
    if want.is_empty() {
        return Ok(found);
    }
    let bridges: Vec<BridgeInfo> = match sw.call(&Request::Show)? {
        Data::Show { bridges, .. } => bridges,
        other => return Err(format!("vswitchd answered show with {other:?}")),
    };
    for p in bridges.iter().flat_map(|b| &b.ports) {
        let Some((eid, names)) = p
            .external_ids
            .get(K_ENDPOINT)
            .and_then(|e| want.get_key_value(e))
        else {
            continue;
        };
        found.insert(eid.clone());
        if &p.names == names {
            continue;
        }
        sw.call(&Request::SetNames {
            port: p.name.clone(),
            names: names.clone(),
        })?;
    }
    Ok(found)
}

fn check_container_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        let shown: String = id.chars().take(80).collect();
        return Err(format!("malformed container ID {shown:?}"));
    }
    Ok(())
}

/// Inspects container `id` and names its endpoints; true when it has an endpoint on
/// network `nid` (when given) whose port is in `vswitchd`, so that there is nothing
/// to look at again.
async fn name_container(
    engine: &Engine,
    sw: &impl Switch,
    id: &str,
    nid: Option<&str>,
) -> Result<bool, String> {
    check_container_id(id)?;
    let inspect = engine.get(&format!("/containers/{id}/json")).await?;
    let found = name_endpoints(sw, &inspect)?;
    Ok(match nid {
        None => true,
        Some(n) => endpoint_on(&inspect, n).is_some_and(|e| found.contains(&e)),
    })
}

/// The containers looked at when the stream opens and on each rescan: running ones and
/// those still starting (a container is listed as running only once its start is
/// over, long after it joined its networks).
const LISTED: &str = r#"{"status":["created","restarting","running"]}"#;

/// Names the endpoints of every running or starting container.
async fn name_all(engine: &Engine, sw: &impl Switch) -> Result<(), String> {
    let list = engine
        .get(&format!(
            "/containers/json?all=1&filters={}",
            crate::engine::query_escape(LISTED)
        ))
        .await?;
    for c in list.as_array().into_iter().flatten() {
        if let Some(id) = c.get("Id").and_then(Value::as_str) {
            if let Err(e) = name_container(engine, sw, id, None).await {
                eprintln!("vswitch-docker: names of container {id}: {e}");
            }
        }
    }
    Ok(())
}

/// A container whose `connect` event came before its endpoint was a port in
/// `vswitchd` or listed by inspect, to be looked at again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub container: String,
    pub network: String,
    /// Looks left.
    pub left: u32,
    pub at: Instant,
}

/// How often a pending container is looked at again, and how many times: long enough
/// for a `Join` still on its way, short enough that a container on a network of
/// another driver (it never gets a port here) costs little.
pub const AGAIN_EVERY: Duration = Duration::from_millis(250);
pub const AGAIN: u32 = 20;

/// The most containers pending at once (a burst of starts, each looked at again).
pub const MAX_PENDING: usize = 1024;

/// The container and network a `connect` event names, and whether the network is of
/// `driver` (Docker names the driver in the event).
pub fn connect_event(ev: &Value, driver: &str) -> Option<(String, String, bool)> {
    let c = ev.pointer("/Actor/Attributes/container")?.as_str()?;
    let n = ev.pointer("/Actor/ID")?.as_str()?;
    let ours = ev.pointer("/Actor/Attributes/type").and_then(Value::as_str) == Some(driver);
    Some((c.to_string(), n.to_string(), ours))
}

/// The container a `rename` event names.
pub fn rename_event(ev: &Value) -> Option<String> {
    let is = |key: &str, want: &str| ev.get(key).and_then(Value::as_str) == Some(want);
    if !(is("Type", "container") && is("Action", "rename")) {
        return None;
    }
    Some(ev.pointer("/Actor/ID")?.as_str()?.to_string())
}

/// Looks at a container a `connect` event named; keeps it pending (until
/// [`AGAIN`] looks are spent) when its endpoint on the network has no port yet.
async fn on_connect(engine: &Engine, sw: &impl Switch, mut p: Pending, pending: &mut Vec<Pending>) {
    match name_container(engine, sw, &p.container, Some(&p.network)).await {
        Ok(true) => {}
        Ok(false) if p.left > 0 => {
            p.left -= 1;
            p.at = Instant::now() + AGAIN_EVERY;
            pending.retain(|q| !(q.container == p.container && q.network == p.network));
            if pending.len() < MAX_PENDING {
                pending.push(p);
            }
        }
        Ok(false) => {}
        // Gone already (removed at once), or a bad ID: nothing to name.
        Err(e) => eprintln!("vswitch-docker: names of container {}: {e}", p.container),
    }
}

/// One watch: the stream opened from `since` (events Docker still holds from then
/// are sent first), every running or starting container named, then each connect
/// event's container, again a few times if its endpoint is not a port yet, and each
/// renamed container. A stream quiet for `rescan` costs a look at every container; one
/// that never answers (as an early request to a dockerd still starting may) is given
/// up after [`RESCAN`] at most. Returns why it ended; `since` is moved on as events are read.
async fn watch_once(
    engine: &Engine,
    sw: &impl Switch,
    driver: &str,
    rescan: Duration,
    since: &mut SystemTime,
) -> Result<(), String> {
    let open = rescan.min(RESCAN);
    // Asked before the request, so that nothing between the two is missed.
    let opened = SystemTime::now();
    let mut events = tokio::time::timeout(open, engine.events(FILTERS, Some(*since)))
        .await
        .map_err(|_| format!("no Docker event stream in {open:?}"))??;
    name_all(engine, sw).await?;
    // Every container that joined before `opened` was just looked at.
    mark(since, opened);
    let mut pending: Vec<Pending> = Vec::new();
    let mut quiet_since = Instant::now();
    loop {
        let next_again = pending.iter().map(|p| p.at).min();
        let wake = next_again.map_or(quiet_since + rescan, |t| t.min(quiet_since + rescan));
        let ev = tokio::select! {
            ev = events.next() => ev?,
            _ = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                if now >= quiet_since + rescan {
                    let at = SystemTime::now();
                    name_all(engine, sw).await?;
                    mark(since, at);
                    quiet_since = Instant::now();
                }
                let due: Vec<Pending> = {
                    let (due, later) = pending.drain(..).partition(|p| p.at <= now);
                    pending = later;
                    due
                };
                for p in due {
                    on_connect(engine, sw, p, &mut pending).await;
                }
                continue;
            }
        };
        quiet_since = Instant::now();
        let Some(ev) = ev else {
            return Err("the Docker event stream ended".into());
        };
        if let Some(id) = rename_event(&ev) {
            // Its endpoints get the new name (and lose the old one) now, not at a rescan.
            if let Err(e) = name_container(engine, sw, &id, None).await {
                eprintln!("vswitch-docker: names of renamed container {id}: {e}");
            }
        } else if let Some((container, network, ours)) = connect_event(&ev, driver) {
            // Another driver's network never gets a port here: one look is enough (the
            // container may be on one of ours too, whose own event is looked at again).
            let p = Pending {
                container,
                network,
                left: if ours { AGAIN } else { 0 },
                at: Instant::now(),
            };
            on_connect(engine, sw, p, &mut pending).await;
        } else {
            continue;
        }
        if let Some(t) = event_time(&ev) {
            mark(since, t);
        }
    }
}

/// Moves the start of the next stream on to `t` (less [`SLACK`]): everything before
/// `t` has been seen.
fn mark(since: &mut SystemTime, t: SystemTime) {
    let t = t.checked_sub(SLACK).unwrap_or(t);
    if t > *since {
        *since = t;
    }
}

/// When Docker stamped an event (`timeNano`).
pub fn event_time(ev: &Value) -> Option<SystemTime> {
    let ns = ev.get("timeNano").and_then(Value::as_u64)?;
    UNIX_EPOCH.checked_add(Duration::from_nanos(ns))
}

/// How far back a new stream starts before the last one was opened: Docker's clock
/// and ours are the same host's, but an event stamped just before a request must not
/// be lost to rounding.
pub const SLACK: Duration = Duration::from_secs(1);

/// Watches the Engine API forever (run it in its own thread): reconnects after each
/// loss, saying so once until it is back. Every stream starts where the last one left
/// off (the first at the plugin's start), so a container that joined while no stream
/// was open is named from its replayed event.
/// `driver` is the name Docker knows this plugin by.
pub fn watch(engine: Engine, sw: impl Switch, driver: &str, rescan: Duration) {
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
    let started = SystemTime::now();
    let mut since = started.checked_sub(SLACK).unwrap_or(started);
    rt.block_on(async {
        let mut said: Option<String> = None;
        loop {
            if let Err(e) = watch_once(&engine, &sw, driver, rescan, &mut since).await {
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

    #[test]
    fn connect_events_and_the_endpoint_they_mean() {
        let ev = json!({"Type": "network", "Action": "connect", "timeNano": 1_700_000_000_123_456_789u64,
            "Actor": {"ID": "net1", "Attributes": {"container": "c1", "name": "n", "type": "vswitch"}}});
        assert_eq!(
            connect_event(&ev, "vswitch"),
            Some(("c1".into(), "net1".into(), true))
        );
        assert_eq!(
            connect_event(&ev, "vswitch-x"),
            Some(("c1".into(), "net1".into(), false))
        );
        assert_eq!(
            connect_event(&json!({"Actor": {"ID": "net1"}}), "vswitch"),
            None
        );
        let t = event_time(&ev).unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap(),
            Duration::new(1_700_000_000, 123_456_789)
        );
        assert_eq!(event_time(&json!({"timeNano": "x"})), None);
        // A rename names the container; a connect is no rename, and a rename no connect.
        let rename = json!({"Type": "container", "Action": "rename",
            "Actor": {"ID": "c9", "Attributes": {"name": "new", "oldName": "/old"}}});
        assert_eq!(rename_event(&rename).as_deref(), Some("c9"));
        assert_eq!(rename_event(&ev), None);
        assert_eq!(connect_event(&rename, "vswitch"), None);
        assert_eq!(
            rename_event(&json!({"Type": "container", "Action": "rename"})),
            None
        );
        let inspect = json!({"NetworkSettings": {"Networks": {
            "a": {"NetworkID": "net1", "EndpointID": "e1"},
            "b": {"NetworkID": "net2", "EndpointID": ""}}}});
        assert_eq!(endpoint_on(&inspect, "net1").as_deref(), Some("e1"));
        assert_eq!(endpoint_on(&inspect, "net2"), None);
        assert_eq!(endpoint_on(&inspect, "net3"), None);
    }

    #[test]
    fn the_next_stream_starts_at_the_last_time_seen_less_the_slack() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1000);
        let mut since = t0;
        mark(&mut since, t0 + Duration::from_secs(10));
        assert_eq!(since, t0 + Duration::from_secs(9));
        // Never backwards.
        mark(&mut since, t0);
        assert_eq!(since, t0 + Duration::from_secs(9));
    }

    #[test]
    fn malformed_container_ids_are_refused() {
        assert!(check_container_id("0123abcDEF").is_ok());
        for bad in ["", "../x", "a b", &"a".repeat(129)] {
            assert!(check_container_id(bad).is_err(), "{bad}");
        }
    }
}
