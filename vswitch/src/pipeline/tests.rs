//! The stages on a small bridge without sockets: learning and filtering (what
//! `forward.rs` tested before it became the learn and decide stages), VLAN egress, the
//! owned-buffer path, the gateway's guard.

use std::sync::atomic::Ordering;

use super::*;
use crate::counters::BridgeCounters;
use crate::dataplane::{BridgeRt, GatewayGuard};
use crate::fdb::PortId;
use crate::wire::MacAddr;

const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

/// A 60-byte IPv4 frame whose header passes `ip-checks` (total length 46, checksum right).
fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[
        0x45, 0, 0, 46, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    f.resize(60, 0);
    fix_ip_checksum(&mut f[14..]);
    f
}

/// Writes the right header checksum into the IPv4 header at the start of `ip`.
fn fix_ip_checksum(ip: &mut [u8]) {
    let hl = usize::from(ip[0] & 0x0f) * 4;
    ip[10..12].copy_from_slice(&[0, 0]);
    let c = !wire::checksum::fold(wire::checksum::sum(&ip[..hl], 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

fn tagged(dst: [u8; 6], src: [u8; 6], tci: u16) -> Vec<u8> {
    let mut f = frame(dst, src);
    f.splice(12..12, [0x81, 0x00, (tci >> 8) as u8, tci as u8]);
    f
}

/// Collects what the pipeline sends: (port, remote, bytes after the vnet header, moved).
#[derive(Default)]
struct Collect(Vec<(PortId, u16, Vec<u8>, bool)>);

impl Sink for Collect {
    fn deliver(&mut self, dst: &Arc<PortRt>, remote: u16, buf: Buf, from: Origin<'_>) {
        let moved = matches!(from, Origin::Moved(_));
        self.0
            .push((dst.id, remote, buf.bytes()[vnet::LEN..].to_vec(), moved));
    }
}

/// A bridge of ports 1..=n (VLAN tables as given), all up, with an optional gateway guard.
struct Bed {
    snap: Snapshot,
    pool: Pool,
    now: u32,
}

impl Bed {
    fn new(vlans: &[Option<VlanTable>], limit: usize, aging: u32) -> Bed {
        let mut snap = Snapshot::default();
        let rt = Arc::new(BridgeRt::new(0, "br", aging, limit as u32, 1));
        let mut ports = Vec::new();
        for (i, v) in vlans.iter().enumerate() {
            let p = Arc::new(PortRt::new(
                i as PortId + 1,
                "p",
                ctl::PortKind::Afpacket,
                0,
                0,
                1,
            ));
            p.up.store(true, Ordering::Relaxed);
            snap.put_port(p.clone(), v.clone());
            ports.push(p);
        }
        snap.put_bridge(BridgeView {
            rt,
            ports,
            guard: None,
            ip_checks: true,
            services: None,
        });
        Bed {
            snap,
            pool: Pool::new(64, 4),
            now: 1,
        }
    }

    fn plain(n: usize) -> Bed {
        Bed::new(&vec![None; n], 100, 300)
    }

    fn port(&self, id: PortId) -> &PortRt {
        self.snap.port(id).unwrap()
    }

    fn counters(&self) -> &BridgeCounters {
        &self.snap.bridge(0).unwrap().rt.counters
    }

    /// Runs `f` in at port `port` (remote 0); returns the verdict and what was sent.
    fn send(&self, port: PortId, f: &[u8]) -> (Verdict, Collect) {
        let ing = Ingress::new(&self.snap, &self.pool, self.port(port), port, self.now, 0).unwrap();
        let mut c = Collect::default();
        let v = ing.frame(
            Frame::split(&[&[0u8; vnet::LEN][..], f].concat(), None),
            &mut c,
        );
        (v, c)
    }

    fn verdict(&self, port: PortId, f: &[u8]) -> Verdict {
        self.send(port, f).0
    }
}

#[test]
fn unknown_floods_then_known_forwards() {
    let bed = Bed::plain(3);
    assert_eq!(bed.verdict(1, &frame(B, A)), Verdict::Flood);
    assert_eq!(bed.verdict(2, &frame(A, B)), Verdict::Forward(1));
    assert_eq!(bed.verdict(1, &frame(B, A)), Verdict::Forward(2));
    // B moves to port 3; A's frames follow it.
    assert_eq!(bed.verdict(3, &frame(A, B)), Verdict::Forward(1));
    assert_eq!(bed.verdict(1, &frame(B, A)), Verdict::Forward(3));
    // Never back out of the ingress port.
    assert_eq!(bed.verdict(3, &frame(B, A)), Verdict::Filtered);
    let t = bed.counters().totals();
    assert_eq!(t["learned"], 2);
    assert!(t["moved"] >= 2);
}

#[test]
fn broadcast_multicast_and_bad_frames() {
    let bed = Bed::plain(2);
    assert_eq!(bed.verdict(1, &frame([0xff; 6], A)), Verdict::Flood);
    assert_eq!(
        bed.verdict(1, &frame([0x01, 0, 0x5e, 0, 0, 1], A)),
        Verdict::Flood
    );
    assert_eq!(
        bed.verdict(1, &frame([0x01, 0x80, 0xc2, 0, 0, 0], A)),
        Verdict::Drop(Drop::LinkLocal)
    );
    assert_eq!(
        bed.verdict(1, &frame(B, [0xff; 6])),
        Verdict::Drop(Drop::InvalidSrc)
    );
    assert_eq!(
        bed.verdict(1, &frame(B, [0; 6])),
        Verdict::Drop(Drop::InvalidSrc)
    );
    assert_eq!(bed.verdict(1, &[0u8; 13]), Verdict::Drop(Drop::Runt));
    let t = bed.port(1).counters.totals();
    assert_eq!(t.rx_packets, 6);
    assert_eq!(t.drops["runt"], 1);
    assert_eq!(t.drops["invalid_src_mac"], 2);
}

#[test]
fn past_the_limit_new_macs_flood_and_old_ones_work() {
    let bed = Bed::new(&[None, None], 1, 300);
    bed.verdict(1, &frame(B, A));
    bed.verdict(2, &frame(A, B));
    assert_eq!(bed.counters().totals()["mac_limit_drops"], 1);
    assert_eq!(
        bed.verdict(1, &frame(B, A)),
        Verdict::Flood,
        "B was never learned"
    );
    assert_eq!(
        bed.verdict(2, &frame(A, B)),
        Verdict::Forward(1),
        "A still works"
    );
    let fdb = bed.snap.bridge(0).unwrap().rt.fdb.load();
    assert_eq!(fdb.lookup(0, MacAddr(A), 1, 300), Some(1));
}

#[test]
fn aged_entries_flood() {
    let mut bed = Bed::new(&[None, None], 100, 10);
    bed.verdict(1, &frame(B, A));
    bed.now = 20;
    assert_eq!(bed.verdict(2, &frame(A, B)), Verdict::Flood);
}

#[test]
fn flood_copies_to_every_other_port_that_is_up() {
    let bed = Bed::plain(4);
    bed.port(4).up.store(false, Ordering::Relaxed);
    let f = frame([0xff; 6], A);
    let (_, c) = bed.send(2, &f);
    let to: Vec<PortId> = c.0.iter().map(|d| d.0).collect();
    assert_eq!(to, vec![1, 3]);
    assert!(c.0.iter().all(|d| d.2 == f && d.1 == 0 && !d.3));
}

fn vl(untagged: &[u16], tagged: &[u16], pvid: Option<u16>) -> Option<VlanTable> {
    VlanTable::new(&ctl::PortVlans {
        pvid,
        untagged: untagged.to_vec(),
        tagged: tagged.to_vec(),
    })
}

#[test]
fn access_to_trunk_pushes_the_tag_and_back_pops_it() {
    // 1: access VLAN 10; 2: trunk 10, 20; 3: access VLAN 20.
    let bed = Bed::new(
        &[
            vl(&[10], &[], Some(10)),
            vl(&[], &[10, 20], None),
            vl(&[20], &[], Some(20)),
        ],
        100,
        300,
    );
    let f = frame([0xff; 6], A);
    let (_, c) = bed.send(1, &f);
    assert_eq!(c.0.len(), 1, "VLAN 10 leaves by the trunk alone");
    assert_eq!((c.0[0].0, &c.0[0].2), (2, &tagged([0xff; 6], A, 10)));
    let (_, c) = bed.send(2, &tagged([0xff; 6], B, 0x6014));
    assert_eq!(c.0.len(), 1);
    assert_eq!((c.0[0].0, &c.0[0].2), (3, &frame([0xff; 6], B)));
    assert_eq!(
        bed.verdict(1, &tagged([0xff; 6], A, 20)),
        Verdict::Drop(Drop::VlanNotMember)
    );
}

#[test]
fn double_tagged_frames_never_leave_a_trunk_untagged_and_count_once() {
    // 1: unaware; 2: trunk with native VLAN 1 and 10 tagged.
    let bed = Bed::new(&[None, vl(&[1], &[10], Some(1))], 100, 300);
    let mut f = tagged(B, A, 1);
    f.splice(16..16, [0x81, 0x00, 0x00, 0x0a]);
    // B is known behind the trunk: the forwarding path refuses it.
    bed.verdict(2, &frame(A, B));
    let (v, c) = bed.send(1, &f);
    assert_eq!(v, Verdict::Forward(2));
    assert!(c.0.is_empty());
    assert_eq!(bed.port(1).counters.totals().drops["vlan_double_tag"], 1);
    assert_eq!(bed.counters().totals()["vlan_filtered"], 1);
}

#[test]
fn a_large_owned_frame_forwarded_unchanged_leaves_in_its_own_buffer() {
    let bed = Bed::plain(2);
    bed.verdict(2, &frame(A, B));
    let mut big = frame(B, A);
    big.resize(4000, 0x55);
    let mut slot = bed.pool.get(vnet::LEN + big.len());
    assert!(slot.as_mut().unwrap().fill(&[&[0u8; vnet::LEN], &big]));
    let ing = Ingress::new(&bed.snap, &bed.pool, bed.port(1), 1, 1, 0).unwrap();
    let mut c = Collect::default();
    assert_eq!(
        ing.frame_owned(&mut slot, None, &mut c),
        Verdict::Forward(2)
    );
    assert!(slot.is_none(), "the buffer went on");
    assert_eq!((c.0[0].0, &c.0[0].2, c.0[0].3), (2, &big, true));
    // A small one is copied, and its buffer stays with the caller.
    let small = frame(B, A);
    let mut slot = bed.pool.get(vnet::LEN + small.len());
    assert!(slot.as_mut().unwrap().fill(&[&[0u8; vnet::LEN], &small]));
    let mut c = Collect::default();
    ing.frame_owned(&mut slot, None, &mut c);
    assert!(slot.is_some());
    assert_eq!((&c.0[0].2, c.0[0].3), (&small, false));
}

#[test]
fn the_guard_keeps_the_gateways_mac_and_address_to_its_port() {
    let mut bed = Bed::plain(2);
    let gw = Arc::new(PortRt::new(3, "gw", ctl::PortKind::Gateway, 0, 0, 1));
    gw.up.store(true, Ordering::Relaxed);
    bed.snap.put_port(gw.clone(), None);
    let gmac = [2, 0x76, 0, 0, 0, 1];
    if let Some(Some(b)) = bed.snap.bridges.get_mut(0) {
        b.ports.push(gw);
        b.guard = Some(GatewayGuard {
            mac: MacAddr(gmac),
            ip: [172, 18, 0, 1],
        });
    }
    assert_eq!(
        bed.verdict(1, &frame([0xff; 6], gmac)),
        Verdict::Drop(Drop::GatewaySpoof)
    );
    // ARP claiming the gateway's address: to the gateway alone.
    let mut arp = frame([0xff; 6], A);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    arp[14 + 14..14 + 18].copy_from_slice(&[172, 18, 0, 1]);
    let (v, c) = bed.send(1, &arp);
    assert_eq!(v, Verdict::Forward(3));
    assert_eq!(c.0.iter().map(|d| d.0).collect::<Vec<_>>(), vec![3]);
    // The gateway port itself may use both.
    assert_eq!(bed.verdict(3, &frame([0xff; 6], gmac)), Verdict::Flood);
}

/// The malformed kinds `ip-checks` refuses, as (what, frame, reason), from `src` to `dst`.
fn malformed(dst: [u8; 6], src: [u8; 6]) -> Vec<(&'static str, Vec<u8>, Drop)> {
    let good = frame(dst, src);
    let with = |f: &dyn Fn(&mut Vec<u8>), fix: bool| {
        let mut g = good.clone();
        f(&mut g);
        if fix && g.len() >= 34 {
            fix_ip_checksum(&mut g[14..]);
        }
        g
    };
    let mut arp = good.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    arp.truncate(14 + 27);
    vec![
        ("runt ipv4", good[..14].to_vec(), Drop::BadIpHeader),
        ("cut short", good[..30].to_vec(), Drop::BadIpHeader),
        ("ihl 4", with(&|g| g[14] = 0x44, false), Drop::BadIpHeader),
        ("ihl 15", with(&|g| g[14] = 0x4f, false), Drop::BadIpHeader),
        (
            "total past frame",
            with(&|g| g[16..18].copy_from_slice(&[0, 200]), true),
            Drop::BadIpHeader,
        ),
        (
            "total below header",
            with(&|g| g[16..18].copy_from_slice(&[0, 19]), true),
            Drop::BadIpHeader,
        ),
        (
            "bad checksum",
            with(&|g| g[24] ^= 0x5a, false),
            Drop::BadIpHeader,
        ),
        (
            "version 6",
            with(&|g| g[14] = 0x65, true),
            Drop::BadIpHeader,
        ),
        ("short arp", arp, Drop::BadArp),
    ]
}

#[test]
fn ip_checks_drop_malformed_ipv4_and_arp_with_their_reason_and_learn_nothing() {
    let bed = Bed::plain(2);
    let kinds = malformed([0xff; 6], A);
    for (what, f, why) in &kinds {
        assert_eq!(bed.verdict(1, f), Verdict::Drop(*why), "{what}");
    }
    assert_eq!(bed.snap.bridge(0).unwrap().rt.fdb.load().len(), 0);
    let d = bed.port(1).counters.totals().drops;
    assert_eq!((d["bad_ip_header"], d["bad_arp"]), (8, 1));
    // Well-formed IPv4 (padding past its total length too), a full ARP packet and other
    // EtherTypes pass.
    assert_eq!(bed.verdict(1, &frame([0xff; 6], A)), Verdict::Flood);
    let mut arp = frame([0xff; 6], A);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    arp.truncate(14 + 28);
    assert_eq!(bed.verdict(1, &arp), Verdict::Flood);
    let mut other = kinds[0].1.clone();
    other[12..14].copy_from_slice(&[0x88, 0xb5]);
    assert_eq!(bed.verdict(1, &other), Verdict::Flood);
}

#[test]
fn ip_checks_look_behind_the_tag_and_off_forwards_everything() {
    // 1: trunk of VLAN 10; 2: access VLAN 10.
    let mut bed = Bed::new(&[vl(&[], &[10], None), vl(&[10], &[], Some(10))], 100, 300);
    for (what, f, why) in malformed([0xff; 6], A) {
        let mut t = f;
        t.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
        assert_eq!(bed.verdict(1, &t), Verdict::Drop(why), "tagged {what}");
        // The same frame with its tag taken off by the kernel.
        let (_, rest) = t.split_at(16);
        let mut stripped = t[..12].to_vec();
        stripped.extend_from_slice(rest);
        let ing = Ingress::new(&bed.snap, &bed.pool, bed.port(1), 1, bed.now, 0).unwrap();
        let v = ing.frame(
            Frame {
                vnet: &[0u8; vnet::LEN],
                bytes: &stripped,
                aux: Some((0x8100, 10)),
                truncated: false,
            },
            &mut Collect::default(),
        );
        assert_eq!(v, Verdict::Drop(why), "offloaded tag {what}");
    }
    if let Some(Some(b)) = bed.snap.bridges.get_mut(0) {
        b.ip_checks = false;
    }
    for (what, f, _) in malformed([0xff; 6], A) {
        let mut t = f;
        t.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
        let (v, c) = bed.send(1, &t);
        assert_eq!((v, c.0.len()), (Verdict::Flood, 1), "ip-checks off: {what}");
    }
}

#[test]
fn ip_checks_leave_the_gateways_own_frames_alone() {
    let mut bed = Bed::plain(2);
    let gw = Arc::new(PortRt::new(3, "gw", ctl::PortKind::Gateway, 0, 0, 1));
    gw.up.store(true, Ordering::Relaxed);
    bed.snap.put_port(gw.clone(), None);
    if let Some(Some(b)) = bed.snap.bridges.get_mut(0) {
        b.ports.push(gw);
    }
    let (_, bad, _) = &malformed([0xff; 6], [2, 0x76, 0, 0, 0, 1])[6];
    assert_eq!(bed.verdict(3, bad), Verdict::Flood);
    assert_eq!(bed.verdict(1, bad), Verdict::Drop(Drop::BadIpHeader));
}

/// An ARP request from `sha`/`spa` for `tpa`, broadcast.
fn arp_request(sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = [0xff; 6].to_vec();
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    f.resize(60, 0);
    f
}

#[test]
fn arp_for_a_cluster_endpoint_is_answered_not_flooded() {
    const E: [u8; 6] = [2, 0x42, 10, 0, 0, 9];
    let bed = Bed::plain(3);
    let rt = &bed.snap.bridge(0).unwrap().rt;
    // No table: an ordinary bridge floods.
    let req = arp_request(A, [10, 0, 0, 2], [10, 0, 0, 9]);
    assert_eq!(bed.verdict(1, &req), Verdict::Flood);
    rt.suppress.store(Some(Arc::new(suppress::ArpTable::new([(
        std::net::Ipv4Addr::new(10, 0, 0, 9),
        MacAddr(E),
    )]))));
    let (v, sent) = bed.send(1, &req);
    assert_eq!(v, Verdict::Answer(MacAddr(E)));
    assert_eq!(sent.0.len(), 1, "one reply, nothing flooded");
    let (port, _, bytes, _) = &sent.0[0];
    assert_eq!(*port, 1, "the reply goes back out of the ingress port");
    assert_eq!(bytes.len(), suppress::REPLY_LEN);
    assert_eq!((&bytes[0..6], &bytes[6..12]), (&A[..], &E[..]));
    let arp = wire::ArpRepr::parse(&wire::ArpPacket::new_checked(&bytes[14..]).unwrap()).unwrap();
    assert_eq!(
        (arp.op, arp.sha, arp.spa, arp.tha, arp.tpa),
        (
            wire::arp::OP_REPLY,
            MacAddr(E),
            [10, 0, 0, 9].into(),
            MacAddr(A),
            [10, 0, 0, 2].into()
        )
    );
    assert_eq!(bed.counters().totals()["arp_suppressed"], 1);
    // Not answered: an address not in the table, the owner's own probe, a gratuitous
    // ARP, and a tagged request.
    assert_eq!(
        bed.verdict(1, &arp_request(A, [10, 0, 0, 2], [10, 0, 0, 8])),
        Verdict::Flood
    );
    assert_eq!(
        bed.verdict(2, &arp_request(E, [0, 0, 0, 0], [10, 0, 0, 9])),
        Verdict::Flood
    );
    assert_eq!(
        bed.verdict(2, &arp_request(E, [10, 0, 0, 9], [10, 0, 0, 9])),
        Verdict::Flood
    );
    let mut t = arp_request(A, [10, 0, 0, 2], [10, 0, 0, 9]);
    t.splice(12..12, [0x81, 0x00, 0, 5]);
    assert_ne!(bed.verdict(1, &t), Verdict::Answer(MacAddr(E)));
    assert_eq!(bed.counters().totals()["arp_suppressed"], 1);
}

#[test]
fn a_bound_port_sends_from_its_own_addresses_only_and_its_tag_is_looked_behind() {
    // 1: bound to A and 10.0.0.1, a trunk of VLAN 10; 2: plain.
    let mut bed = Bed::new(&[vl(&[], &[10], None), None], 100, 300);
    bed.snap.put_binding(
        1,
        Some(crate::portsec::Binding {
            mac: MacAddr(A),
            ips: vec![[10, 0, 0, 1]].into(),
        }),
    );
    let own = tagged([0xff; 6], A, 10);
    assert_eq!(bed.verdict(1, &own), Verdict::Flood);
    let mut other_ip = own.clone();
    other_ip[18 + 12..18 + 16].copy_from_slice(&[10, 0, 0, 9]);
    fix_ip_checksum(&mut other_ip[18..]);
    assert_eq!(bed.verdict(1, &other_ip), Verdict::Drop(Drop::SpoofedSrc));
    assert_eq!(
        bed.verdict(1, &tagged([0xff; 6], B, 10)),
        Verdict::Drop(Drop::SpoofedSrc)
    );
    // Nothing was learned from the spoofed frames: B is unknown.
    assert_eq!(bed.snap.bridge(0).unwrap().rt.fdb.load().len(), 1);
    assert_eq!(bed.port(1).counters.totals().drops["spoofed_src"], 2);
    // The unbound port may send from anything.
    assert_eq!(bed.verdict(2, &frame([0xff; 6], B)), Verdict::Flood);
}

#[test]
fn storm_control_drops_flooded_frames_past_the_limit_and_never_known_unicast() {
    let bed = Bed::plain(2);
    bed.port(1).storm.set_rate(100);
    // B known on port 2.
    assert_eq!(bed.verdict(2, &frame([0xff; 6], B)), Verdict::Flood);
    // One batch (one instant): the burst (32 at 100 pps) floods, the rest is dropped.
    let ing = Ingress::new(&bed.snap, &bed.pool, bed.port(1), 1, bed.now, 0).unwrap();
    let mut c = Collect::default();
    let bc = [&[0u8; vnet::LEN][..], &frame([0xff; 6], A)].concat();
    let uni = [&[0u8; vnet::LEN][..], &frame(B, A)].concat();
    let verdicts: Vec<Verdict> = (0..100)
        .map(|_| ing.frame(Frame::split(&bc, None), &mut c))
        .collect();
    let flooded = verdicts.iter().filter(|v| **v == Verdict::Flood).count();
    assert_eq!(flooded, 32);
    assert!(verdicts[32..]
        .iter()
        .all(|v| *v == Verdict::Drop(Drop::StormDropped)));
    for _ in 0..100 {
        assert!(matches!(
            ing.frame(Frame::split(&uni, None), &mut c),
            Verdict::Forward(_)
        ));
    }
    assert_eq!(bed.port(1).counters.totals().drops["storm_dropped"], 68);
    // Port 2 has no limit.
    bed.port(2).storm.set_rate(0);
    for _ in 0..100 {
        assert_eq!(bed.verdict(2, &frame([0xff; 6], B)), Verdict::Flood);
    }
}
