//! Counters: one cache-padded block per worker, written by that worker alone with plain
//! load+store (no atomic read-modify-write on the hot path) and summed on read.

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
}
