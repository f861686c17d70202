//! Counters: one cache-padded block per worker, written by that worker alone with plain
//! load+store (no atomic read-modify-write on the hot path) and summed on read.
//!
//! This module owns the switch's counter declarations (port drops, bridge events; the
//! gateway's, NAT's and VXLAN's are declared beside their code with the same
//! `metrics_decl::counters!`) and turns a `stats` reply into Prometheus text, walking
//! the declarations so every declared counter appears with its doc as help.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam::utils::CachePadded;

metrics_decl::counters! {
    /// Why a frame was dropped at a port. Declared once: the name is what `vsctl stats`
    /// prints and `--json` uses as key, the doc is the Prometheus help.
    #[derive(Debug)]
    pub enum Drop {
        /// Shorter than an Ethernet header.
        Runt => "runt",
        /// Larger than any buffer (or truncated by the RX ring).
        Oversize => "oversize",
        /// Multicast or all-zero source address.
        InvalidSrc => "invalid_src_mac",
        /// IEEE 802.1D link-local destination (STP, pause, LACP, LLDP): never forwarded.
        LinkLocal => "link_local",
        /// The destination port's TX queue was full.
        TxQueueFull => "tx_queue_full",
        /// The kernel refused the frame on transmit.
        TxError => "tx_error",
        /// No free buffer.
        NoBuffer => "no_buffer",
        /// Received while the port's bridge could not be found (being reconfigured).
        NoBridge => "no_bridge",
        /// Kernel ring drops reported by PACKET_STATISTICS.
        RxRing => "rx_ring",
        /// Frames left in the TX queue when the port went down or was removed.
        PortDown => "port_down",
        /// Untagged (or priority-tagged) frame on a VLAN port without a PVID.
        VlanUntagged => "vlan_untagged",
        /// Tagged frame in a VLAN the port is not a member of.
        VlanNotMember => "vlan_not_member",
        /// A frame with a second tag behind its outer one that would have left a trunk
        /// untagged (its native VLAN), exposing the inner tag as its VLAN to the peer: the
        /// double-tagging VLAN hop. Counted on the ingress port, once per trunk refused.
        VlanDoubleTag => "vlan_double_tag",
        /// A frame from the gateway's MAC arriving on another port of its bridge.
        GatewaySpoof => "gateway_spoof",
        /// An IPv4 frame (behind any outer tag, or inner to a tunnel) whose header is
        /// malformed: not version 4, IHL below 5 or past the packet, total length below
        /// the header or past the frame, or a wrong header checksum. Checked on bridges
        /// with `ip-checks=on` (the default).
        BadIpHeader => "bad_ip_header",
        /// An ARP frame shorter than an Ethernet/IPv4 ARP packet (28 bytes). Checked on
        /// bridges with `ip-checks=on` (the default).
        BadArp => "bad_arp",
        /// A frame from a port bound to its addresses (`set-port PORT allowed=`) that is
        /// not from them: another source MAC, an IPv4 source not its own (DHCP discovery
        /// from 0.0.0.0 excepted), ARP whose sender MAC or address is not its own.
        SpoofedSrc => "spoofed_src",
        /// Broadcast, multicast or unknown unicast beyond the port's storm limit
        /// (`set-port PORT storm=`).
        StormDropped => "storm_dropped",
    }
}

/// Number of drop reasons.
pub const DROP_REASONS: usize = Drop::COUNT;

/// One worker's counters of one port.
#[derive(Default)]
pub struct PortBlock {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub drops: [AtomicU64; DROP_REASONS],
}

/// Adds `n` to a counter that only the calling worker writes.
#[inline]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// A port's counters, one block per worker.
pub struct PortCounters {
    blocks: Box<[CachePadded<PortBlock>]>,
}

/// A port's counters summed over workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortTotals {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: BTreeMap<String, u64>,
}

impl PortCounters {
    /// Counters for `workers` workers (plus one block for the control thread).
    pub fn new(workers: usize) -> Self {
        PortCounters {
            blocks: (0..workers + 1)
                .map(|_| CachePadded::new(PortBlock::default()))
                .collect(),
        }
    }

    /// The block worker `w` writes.
    #[inline]
    pub fn block(&self, w: usize) -> &PortBlock {
        &self.blocks[w.min(self.blocks.len() - 1)]
    }

    /// Counts a dropped frame.
    #[inline]
    pub fn drop(&self, w: usize, why: Drop, n: u64) {
        bump(&self.block(w).drops[why as usize], n);
    }

    /// Sum over workers.
    pub fn totals(&self) -> PortTotals {
        let mut t = PortTotals::default();
        let mut drops = [0u64; DROP_REASONS];
        for b in self.blocks.iter() {
            t.rx_packets += b.rx_packets.load(Ordering::Relaxed);
            t.rx_bytes += b.rx_bytes.load(Ordering::Relaxed);
            t.tx_packets += b.tx_packets.load(Ordering::Relaxed);
            t.tx_bytes += b.tx_bytes.load(Ordering::Relaxed);
            for (d, c) in drops.iter_mut().zip(b.drops.iter()) {
                *d += c.load(Ordering::Relaxed);
            }
        }
        for (i, d) in drops.iter().enumerate() {
            if *d != 0 {
                t.drops.insert(Drop::NAMES[i].to_string(), *d);
            }
        }
        t
    }
}

metrics_decl::counters! {
    /// Bridge-level events. Declared once: name for `vsctl stats`, doc for Prometheus.
    #[derive(Debug)]
    pub enum BridgeEvent {
        /// A MAC learned on a port for the first time.
        Learned => "learned",
        /// A learned MAC seen on another port than the one it was learned on.
        Moved => "moved",
        /// A new MAC was not learned because the bridge is at its limit.
        MacLimit => "mac_limit_drops",
        /// A new MAC was not learned because the table needs compaction.
        TableFull => "fdb_table_full",
        /// Frames flooded (broadcast, multicast, unknown unicast).
        Flooded => "flooded",
        /// Frames whose destination was learned on the ingress port: filtered.
        Filtered => "filtered",
        /// Unicast frames whose destination port is not a member of their VLAN.
        VlanFiltered => "vlan_filtered",
        /// ARP requests for a cluster endpoint answered by the switch, not flooded.
        ArpSuppressed => "arp_suppressed",
        /// Floods that reached a tunnel port (replicated to its remotes over the underlay).
        TunnelFlooded => "tunnel_flooded",
    }
}

const BRIDGE_EVENTS: usize = BridgeEvent::COUNT;

/// A bridge's counters, one block per worker.
pub struct BridgeCounters {
    blocks: Box<[CachePadded<[AtomicU64; BRIDGE_EVENTS]>]>,
}

impl BridgeCounters {
    /// Counters for `workers` workers (plus one block for the control thread).
    pub fn new(workers: usize) -> Self {
        BridgeCounters {
            blocks: (0..workers + 1)
                .map(|_| CachePadded::new(Default::default()))
                .collect(),
        }
    }
    /// Counts `n` events for worker `w`.
    #[inline]
    pub fn add(&self, w: usize, e: BridgeEvent, n: u64) {
        bump(&self.blocks[w.min(self.blocks.len() - 1)][e as usize], n);
    }
    /// Sum over workers, by name.
    pub fn totals(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for (i, name) in BridgeEvent::NAMES.iter().enumerate() {
            let v: u64 = self
                .blocks
                .iter()
                .map(|b| b[i].load(Ordering::Relaxed))
                .sum();
            m.insert((*name).to_string(), v);
        }
        m
    }
}

/// Every counter in a `stats` reply as Prometheus text exposition, for `/metrics`.
///
/// Families come from the declarations (one per bridge event, one `drops_total` per
/// object with a `reason` label), so a counter added to a declaration appears here with
/// no further edit; a counter at zero (absent from the reply's maps) is exported as 0.
pub fn prometheus(
    bridges: &[ctl::BridgeStats],
    vteps: &[ctl::VtepStats],
    gateway: Option<&ctl::GatewayStats>,
) -> String {
    exposition(bridges, vteps, gateway).render()
}

/// The families of [`prometheus`], for a caller that adds its own before rendering.
pub fn exposition(
    bridges: &[ctl::BridgeStats],
    vteps: &[ctl::VtepStats],
    gateway: Option<&ctl::GatewayStats>,
) -> metrics_decl::Exposition {
    use crate::gateway::Ev;
    use metrics_decl::Counter;

    fn from<'a, C: Counter>(m: &'a BTreeMap<String, u64>) -> impl Iterator<Item = (C, u64)> + 'a {
        C::all()
            .iter()
            .map(|c| (*c, m.get(c.name()).copied().unwrap_or(0)))
    }

    let mut e = metrics_decl::Exposition::new();
    for b in bridges {
        let bl = [("bridge", b.name.as_str())];
        e.each::<BridgeEvent>("vswitch_bridge", &bl, from(&b.counters));
        for p in &b.ports {
            let l = [("bridge", b.name.as_str()), ("port", p.name.as_str())];
            for (name, help, v) in [
                (
                    "vswitch_port_rx_packets_total",
                    "Frames received.",
                    p.rx_packets,
                ),
                ("vswitch_port_rx_bytes_total", "Bytes received.", p.rx_bytes),
                (
                    "vswitch_port_tx_packets_total",
                    "Frames sent.",
                    p.tx_packets,
                ),
                ("vswitch_port_tx_bytes_total", "Bytes sent.", p.tx_bytes),
            ] {
                e.counter(name, help).sample(&l, v);
            }
            e.by_reason::<Drop>(
                "vswitch_port_drops_total",
                "Frames dropped at a port, by reason.",
                &l,
                from(&p.drops),
            );
        }
    }
    for v in vteps {
        let port = v.dstport.to_string();
        let l = [("local", v.local.as_str()), ("dstport", port.as_str())];
        e.counter(
            "vswitch_vtep_rx_datagrams_total",
            "VXLAN datagrams received.",
        )
        .sample(&l, v.rx_datagrams);
        e.counter("vswitch_vtep_rx_bytes_total", "VXLAN bytes received.")
            .sample(&l, v.rx_bytes);
        e.by_reason::<vxlan::decap::DropReason>(
            "vswitch_vtep_drops_total",
            "VXLAN datagrams dropped before a tunnel took them, by reason.",
            &l,
            from(&v.drops),
        );
    }
    if let Some(g) = gateway {
        e.each::<Ev>(
            "vswitch_gateway",
            &[],
            from::<Ev>(&g.counters).filter(|(ev, _)| !ev.is_drop()),
        );
        e.by_reason::<Ev>(
            "vswitch_gateway_drops_total",
            "Packets the gateway dropped, by reason.",
            &[],
            from::<Ev>(&g.drops).filter(|(ev, _)| ev.is_drop()),
        );
        e.by_reason::<nat::DropReason>(
            "vswitch_nat_drops_total",
            "Packets NAT dropped, by reason.",
            &[],
            from(&g.drops),
        );
        e.counter(
            "vswitch_conntrack_refused_total",
            "New connections refused because the conntrack table was full.",
        )
        .sample(&[], g.ct_refused);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_over_workers_and_names_drops() {
        let c = PortCounters::new(2);
        bump(&c.block(0).rx_packets, 3);
        bump(&c.block(1).rx_packets, 4);
        c.drop(1, Drop::TxQueueFull, 2);
        c.drop(99, Drop::Runt, 1);
        let t = c.totals();
        assert_eq!(t.rx_packets, 7);
        assert_eq!(t.drops.get("tx_queue_full"), Some(&2));
        assert_eq!(t.drops.get("runt"), Some(&1));
        assert_eq!(t.drops.len(), 2);
        let b = BridgeCounters::new(1);
        b.add(0, BridgeEvent::Flooded, 5);
        assert_eq!(b.totals()["flooded"], 5);
    }

    /// The names `vsctl stats`, `--json` and the integration tests know must not change.
    #[test]
    fn declarations_keep_the_old_names() {
        assert_eq!(
            Drop::NAMES,
            [
                "runt",
                "oversize",
                "invalid_src_mac",
                "link_local",
                "tx_queue_full",
                "tx_error",
                "no_buffer",
                "no_bridge",
                "rx_ring",
                "port_down",
                "vlan_untagged",
                "vlan_not_member",
                "vlan_double_tag",
                "gateway_spoof",
                "bad_ip_header",
                "bad_arp",
                "spoofed_src",
                "storm_dropped",
            ]
        );
        assert_eq!(DROP_REASONS, 18);
        assert_eq!(
            BridgeEvent::NAMES,
            [
                "learned",
                "moved",
                "mac_limit_drops",
                "fdb_table_full",
                "flooded",
                "filtered",
                "vlan_filtered",
                "arp_suppressed",
                "tunnel_flooded",
            ]
        );
        assert_eq!(
            crate::gateway::Ev::NAMES,
            [
                "routed",
                "arp_replied",
                "arp_requested",
                "echo_replied",
                "dns_answered",
                "dns_forwarded",
                "dns_servfail",
                "service_refused",
                "ignored",
                "bad_frame",
                "bad_ip",
                "arp_spoofed",
                "ttl_exceeded",
                "no_route",
                "neigh_unresolved",
                "neigh_queue_full",
                "local_unhandled",
                "no_buffer",
                "dns_malformed",
                "dns_unexpected",
            ]
        );
        assert_eq!(
            nat::DropReason::NAMES,
            [
                "malformed",
                "fragment",
                "unsupported",
                "invalid",
                "table_full",
                "no_mapping",
                "ports_exhausted",
                "isolated",
                "spoofed",
                "conflict",
                "no_backend",
            ]
        );
        assert_eq!(
            vxlan::decap::DropReason::NAMES,
            [
                "vxlan_truncated",
                "vxlan_bad_flags",
                "vxlan_unknown_vni",
                "vxlan_unknown_remote",
            ]
        );
    }

    /// Names unique and snake_case within each declaration, and across the ones that
    /// share a map in `stats` (gateway drops hold both gateway and NAT reasons).
    #[test]
    fn declarations_are_unique_snake_case_and_documented() {
        use crate::gateway::Ev;
        assert_eq!(metrics_decl::check::<Drop>(), Ok(()));
        assert_eq!(metrics_decl::check::<BridgeEvent>(), Ok(()));
        assert_eq!(metrics_decl::check::<Ev>(), Ok(()));
        assert_eq!(metrics_decl::check::<nat::DropReason>(), Ok(()));
        assert_eq!(metrics_decl::check::<vxlan::decap::DropReason>(), Ok(()));
        let gw_drops: Vec<&str> = Ev::ALL
            .iter()
            .filter(|e| e.is_drop())
            .map(|e| e.name())
            .chain(nat::DropReason::NAMES)
            .collect();
        let set: std::collections::BTreeSet<_> = gw_drops.iter().collect();
        assert_eq!(set.len(), gw_drops.len(), "{gw_drops:?}");
    }

    #[test]
    fn prometheus_text_from_declarations() {
        let c = PortCounters::new(1);
        c.drop(0, Drop::VlanDoubleTag, 3);
        bump(&c.block(0).rx_packets, 9);
        let t = c.totals();
        let b = BridgeCounters::new(1);
        b.add(0, BridgeEvent::MacLimit, 2);
        let bridges = [ctl::BridgeStats {
            name: "br0".into(),
            fdb_entries: 0,
            counters: b.totals(),
            ports: vec![ctl::PortStats {
                name: "p\"1".into(),
                rx_packets: t.rx_packets,
                rx_bytes: t.rx_bytes,
                tx_packets: t.tx_packets,
                tx_bytes: t.tx_bytes,
                drops: t.drops,
            }],
        }];
        let gw = ctl::GatewayStats {
            conntrack: 0,
            ct_limit: 0,
            ct_refused: 1,
            mappings: 0,
            counters: [("routed".to_string(), 4), ("neighbours".to_string(), 2)].into(),
            drops: [("no_route".to_string(), 5), ("no_mapping".to_string(), 6)].into(),
        };
        let vteps = [ctl::VtepStats {
            local: "0.0.0.0".into(),
            dstport: 4789,
            rx_datagrams: 8,
            rx_bytes: 800,
            drops: [("vxlan_unknown_vni".to_string(), 7)].into(),
            gso_tap: None,
        }];
        let text = prometheus(&bridges, &vteps, Some(&gw));
        assert_eq!(metrics_decl::validate(&text), Ok(()));
        let has = |l: &str| assert!(text.lines().any(|x| x == l), "{l} not in\n{text}");
        has("# TYPE vswitch_bridge_mac_limit_drops_total counter");
        has("# HELP vswitch_bridge_mac_limit_drops_total A new MAC was not learned because the bridge is at its limit.");
        has("vswitch_bridge_mac_limit_drops_total{bridge=\"br0\"} 2");
        has("vswitch_bridge_flooded_total{bridge=\"br0\"} 0");
        has("vswitch_port_rx_packets_total{bridge=\"br0\",port=\"p\\\"1\"} 9");
        has(
            "vswitch_port_drops_total{bridge=\"br0\",port=\"p\\\"1\",reason=\"vlan_double_tag\"} 3",
        );
        has("vswitch_port_drops_total{bridge=\"br0\",port=\"p\\\"1\",reason=\"runt\"} 0");
        has("vswitch_gateway_routed_total 4");
        has("vswitch_gateway_drops_total{reason=\"no_route\"} 5");
        has("vswitch_nat_drops_total{reason=\"no_mapping\"} 6");
        has("vswitch_conntrack_refused_total 1");
        has("vswitch_vtep_drops_total{local=\"0.0.0.0\",dstport=\"4789\",reason=\"vxlan_unknown_vni\"} 7");
        // Every declared name is exported, each family has one HELP and one TYPE.
        for n in Drop::NAMES {
            assert!(text.contains(&format!("reason=\"{n}\"")), "{n}");
        }
        let helps: Vec<&str> = text.lines().filter(|l| l.starts_with("# HELP ")).collect();
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let set: std::collections::BTreeSet<_> =
            helps.iter().map(|l| l.split(' ').nth(2)).collect();
        assert_eq!((set.len(), types), (helps.len(), helps.len()));
        assert!(
            !text.contains("neighbours"),
            "a gauge is not a declared counter"
        );
    }
}
