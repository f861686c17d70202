use super::*;

/// A TCP/UDP/ICMP packet from `src` to `dst` with right checksums.
fn packet(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20 + l4.len()];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..].copy_from_slice(l4);
    assert!(ipv4_fix(&mut p));
    p
}

fn udp(sp: u16, dp: u16) -> Vec<u8> {
    let mut u = vec![0u8; 12];
    u[0..2].copy_from_slice(&sp.to_be_bytes());
    u[2..4].copy_from_slice(&dp.to_be_bytes());
    u[4..6].copy_from_slice(&12u16.to_be_bytes());
    u[6] = 1; // non-zero: a checksum is present
    u[8..].copy_from_slice(b"ping");
    u
}

fn eth(dst: MacAddr, src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.0.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[test]
fn records_round_trip() {
    let e = encode_records(&[(1, b"ab"), (2, b""), (3, b"xyz")]);
    let r: Vec<(u8, &[u8])> = records(&e).collect();
    assert_eq!(r, vec![(1, &b"ab"[..]), (2, &b""[..]), (3, &b"xyz"[..])]);
    // A length past the end takes what is there.
    let r: Vec<(u8, &[u8])> = records(&[9, 0, 10, 1, 2]).collect();
    assert_eq!(r, vec![(9, &[1u8, 2][..])]);
}

#[test]
fn fresh_checksums_agree_with_nat_and_etherparse() {
    let p = packet(
        Ipv4Addr::new(172, 18, 0, 2),
        Ipv4Addr::new(203, 0, 113, 7),
        17,
        &udp(40000, 53),
    );
    let v = etherparse::SlicedPacket::from_ip(&p).unwrap();
    let Some(etherparse::TransportSlice::Udp(u)) = v.transport else {
        panic!("not UDP");
    };
    let src = [172, 18, 0, 2];
    let dst = [203, 0, 113, 7];
    assert_eq!(
        u.to_header()
            .calc_checksum_ipv4_raw(src, dst, u.payload())
            .unwrap(),
        u16::from_be_bytes([p[26], p[27]])
    );
    assert!(nat::packet::Ipv4Packet::new_checked(&p[..])
        .unwrap()
        .verify_checksum());
    assert_eq!(ipv4_good(&p), vec![26, 10]);
}

#[test]
fn harnesses_accept_ordinary_traffic() {
    let c1 = Ipv4Addr::new(172, 18, 0, 2);
    let far = Ipv4Addr::new(203, 0, 113, 7);
    let out = packet(c1, far, 17, &udp(40000, 53));
    let recs = encode_records(&[(0, &out), (nat_ctl::FIX, &out)]);
    nat(&recs);
    let mut t = vec![0u8, 198, 51, 100, 2, 203, 0, 113, 7, 0x80, 0, 0, 53];
    t.extend_from_slice(&out);
    nat_rewrite(&t);
    // A container ARPs for its gateway, then sends a datagram out.
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 2];
    arp.extend_from_slice(&c1.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&GW0.octets());
    let c1_mac = [2, 0, 0, 0, 0, 2];
    let a = eth(MacAddr([0xff; 6]), c1_mac, ARP, &arp);
    let d = eth(GW0_MAC, c1_mac, IPV4, &out);
    // The uplink's next hop answers, so nothing is left waiting for it.
    let wan_mac = [2, 0, 0, 0, 0, 0x99];
    let mut rep = vec![0, 1, 8, 0, 6, 4, 0, 2];
    rep.extend_from_slice(&wan_mac);
    rep.extend_from_slice(&WAN_GW.octets());
    rep.extend_from_slice(&UPLINK_MAC.0);
    rep.extend_from_slice(&UPLINK.octets());
    let r = eth(UPLINK_MAC, wan_mac, ARP, &rep);
    gateway(&encode_records(&[(0, &a), (gw_ctl::FIX, &d), (2, &r)]));
    frame(&encode_records(&[
        (1, &a),
        (0, &r),
        (1 | bridge_ctl::FIX, &d),
        (
            bridge_ctl::FIX,
            &eth(UPLINK_MAC, [2, 0, 0, 0, 0, 0x99], IPV4, &out),
        ),
    ]));
}

#[test]
fn vxlan_harnesses_accept_a_datagram() {
    let c1 = Ipv4Addr::new(10, 1, 0, 2);
    let mut tcp = vec![0u8; 20];
    tcp[12] = 5 << 4;
    tcp[13] = 0x18;
    tcp.extend_from_slice(&[7u8; 3000]);
    let ip = packet(c1, Ipv4Addr::new(10, 1, 0, 3), 6, &tcp);
    let f = eth(MacAddr([2, 0, 0, 0, 0, 3]), [2, 0, 0, 0, 0, 2], IPV4, &ip);
    let mut d = vec![0u8, 0];
    d.extend_from_slice(&vxlan::header::encode(100));
    d.extend_from_slice(&f);
    vxlan_decap(&d);
    let mut e = vxlan::offload::Offload {
        gso: vxlan::offload::Gso::TcpV4,
        gso_size: 1448,
        hdr_len: 54,
        needs_csum: true,
        csum_start: 34,
        csum_offset: 16,
        ..vxlan::offload::Offload::NONE
    }
    .to_virtio()
    .to_vec();
    e.push(0);
    let mut ff = f.clone();
    let p = ipv4_partial(&ff[ETH..]).unwrap();
    put16(&mut ff, ETH + p.at, p.want);
    e.extend_from_slice(&ff);
    vxlan_encap(&e);
}

#[test]
fn control_and_config_harnesses_run() {
    // The harnesses keep their scratch directory for the life of a fuzzing process; a
    // test process must not leave its own behind (on /dev/shm, where it outlives us).
    struct Scratch;
    impl Drop for Scratch {
        fn drop(&mut self) {
            for tag in ["control", "config"] {
                let _ = std::fs::remove_dir_all(super::control::scratch(tag));
            }
        }
    }
    let _cleanup = Scratch;
    control(
        b"{\"op\":\"add-br\",\"bridge\":\"br0\"}\n\
          {\"op\":\"add-net\",\"bridge\":\"br0\",\"subnet\":\"172.18.0.0/24\",\"gateway\":\"172.18.0.1\"}\n\
          {\"op\":\"add-br\",\"bridge\":\"br0\"}\n\
          {\"op\":\"show\"}\n",
    );
    config(b"{\"version\":1,\"bridges\":[{\"name\":\"br0\",\"ports\":[]}]}");
}

#[test]
fn dns_harness_takes_queries_garbage_and_loops() {
    let q = |name: &[u8], ty: u8| {
        let mut m = vec![0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(name);
        m.extend_from_slice(&[0, ty, 0, 1]);
        m
    };
    for tcp in [0u8, 1] {
        for msg in [
            q(b"\x03web\x00", 1),
            q(b"\x07example\x03org\x00", 1),
            q(b"\x04nope\x03lab\x04test\x00", 1),
            q(b"\x012\x010\x010\x0210\x07in-addr\x04arpa\x00", 12),
            vec![
                0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1,
            ],
            vec![0xff; 3],
            Vec::new(),
        ] {
            let mut data = vec![tcp];
            data.extend_from_slice(&msg);
            dns(&data);
        }
    }
}

#[test]
fn services_harness_accepts_vip_traffic() {
    let cl = Ipv4Addr::new(172, 18, 0, 50);
    let q = packet(cl, svc::VIP, 17, &udp(40000, 53));
    let a = packet(Ipv4Addr::new(172, 18, 0, 3), cl, 17, &udp(8080, 40000));
    let any = packet(cl, svc::VIP_ANY, 17, &udp(40001, 5353));
    services(&encode_records(&[
        (0, &q),
        (0, &q),
        (svc_ctl::FIX, &a),
        (svc_ctl::HEALTH, &q),
        (svc_ctl::MAP | svc_ctl::PORTS | svc_ctl::FIX, &q),
        (0, &any),
        (svc_ctl::EXPIRE | (3 << svc_ctl::STEP_SHIFT), &q),
    ]));
    services(&[1, 0, 3, 1, 2, 3]);
}
