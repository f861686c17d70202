//! The traffic-control requests the VTEP's GSO TAP makes, over rtnetlink rather than by
//! running iproute2's `tc`: an ingress qdisc, `u32` filters whose `mirred` action
//! redirects packets with a given source MAC to a device's transmit queue, deleting one,
//! and reading them back to check they are still there and still point at a device.
//! netlink-packet-route builds and parses the messages; [`super::rtnl`] asks.

use std::io;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionGeneric, TcActionMirrorOption, TcActionOption,
    TcActionType, TcAttribute, TcFilterU32Option, TcHandle, TcMessage, TcMirror,
    TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::rtnl::{ack, dump};

/// The ingress qdisc's handle and the parent of its filters (`ffff:`).
const INGRESS: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0,
};
/// `TC_H_INGRESS`: where an ingress qdisc hangs.
const INGRESS_PARENT: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0xfff1,
};

/// One `mirred` redirect filter read back from a device's ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirect {
    /// The filter's priority (`tc … prio`), which names it.
    pub prio: u16,
    /// The device packets go to; 0 once that device is gone.
    pub to: u32,
}

/// Adds an ingress qdisc to device `ifindex`.
pub fn add_ingress(ifindex: u32) -> io::Result<()> {
    let mut m = message(ifindex);
    m.header.parent = INGRESS_PARENT;
    m.header.handle = INGRESS;
    m.attributes.push(TcAttribute::Kind("ingress".into()));
    ack(
        RouteNetlinkMessage::NewQueueDiscipline(m),
        NLM_F_CREATE | NLM_F_EXCL,
    )
    .map_err(|e| context(e, "adding an ingress qdisc"))
}

/// Whether device `ifindex` has an ingress qdisc. (The kernel answers no single
/// request about an ingress qdisc, and dumps every device's: only this device's are
/// parsed.)
pub fn has_ingress(ifindex: u32) -> io::Result<bool> {
    let found = dump(
        RouteNetlinkMessage::GetQueueDiscipline(message(ifindex)),
        |raw| of_device(raw, ifindex),
    )
    .map_err(|e| context(e, "listing qdiscs"))?;
    Ok(found.iter().any(|q| match q {
        RouteNetlinkMessage::NewQueueDiscipline(q) => {
            q.header.parent == INGRESS_PARENT
                && q.attributes
                    .iter()
                    .any(|a| matches!(a, TcAttribute::Kind(k) if k == "ingress"))
        }
        _ => false,
    }))
}

/// Whether a tc message (netlink header, then `struct tcmsg`, whose interface index
/// is at bytes 4..8) is about device `ifindex`.
fn of_device(raw: &[u8], ifindex: u32) -> bool {
    raw.get(20..24)
        .is_some_and(|i| i32::from_ne_bytes([i[0], i[1], i[2], i[3]]) == ifindex as i32)
}

/// Adds to device `ifindex`'s ingress, at priority `prio`, a filter that takes every
/// IPv4 packet whose Ethernet source is `mac` and redirects it to device `to`'s transmit
/// queue (`u32 match … at -8 … at -4 action mirred egress redirect`).
pub fn add_redirect(ifindex: u32, prio: u16, mac: [u8; 6], to: u32) -> io::Result<()> {
    let mut m = message(ifindex);
    m.header.parent = INGRESS;
    m.header.info = info(prio);
    m.attributes.push(TcAttribute::Kind("u32".into()));
    // u32 offsets count from the network header: the source MAC is the 8 to 2 bytes
    // before it (the EtherType is the last 2).
    let mut hi = TcU32Key::default();
    hi.mask = 0xffff_ffff;
    hi.val = u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]);
    hi.off = -8;
    let mut lo = TcU32Key::default();
    lo.mask = 0xffff_0000;
    lo.val = u32::from_be_bytes([mac[4], mac[5], 0, 0]);
    lo.off = -4;
    let mut sel = TcU32Selector::default();
    sel.flags = TcU32SelectorFlags::Terminal;
    sel.nkeys = 2;
    sel.keys = vec![hi, lo];
    let mut generic = TcActionGeneric::default();
    generic.action = TcActionType::Stolen;
    let mut parms = TcMirror::default();
    parms.generic = generic;
    parms.eaction = TcMirrorActionType::EgressRedir;
    parms.ifindex = to;
    let mut act = TcAction::default();
    act.tab = 1;
    act.attributes = vec![
        TcActionAttribute::Kind("mirred".into()),
        TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
            parms,
        ))]),
    ];
    m.attributes.push(TcAttribute::Options(vec![
        TcOption::U32(TcFilterU32Option::Selector(sel)),
        TcOption::U32(TcFilterU32Option::Action(vec![act])),
    ]));
    ack(
        RouteNetlinkMessage::NewTrafficFilter(m),
        NLM_F_CREATE | NLM_F_EXCL,
    )
    .map_err(|e| match e.raw_os_error() {
        // What the kernel says when it cannot load a classifier or action module.
        Some(libc::ENOENT) => io::Error::new(
            io::ErrorKind::Unsupported,
            "tc: adding a redirect filter: this kernel has no u32 classifier or mirred \
             action (cls_u32, act_mirred)",
        ),
        _ => context(e, "adding a redirect filter"),
    })
}

/// Deletes device `ifindex`'s ingress filters at priority `prio`; none there is fine.
pub fn del_filter(ifindex: u32, prio: u16) -> io::Result<()> {
    let mut m = message(ifindex);
    m.header.parent = INGRESS;
    m.header.info = info(prio);
    match ack(RouteNetlinkMessage::DelTrafficFilter(m), 0) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r.map_err(|e| context(e, "deleting a filter")),
    }
}

/// The `mirred` redirects among device `ifindex`'s ingress filters.
pub fn redirects(ifindex: u32) -> io::Result<Vec<Redirect>> {
    let mut m = message(ifindex);
    m.header.parent = INGRESS;
    let found = dump(RouteNetlinkMessage::GetTrafficFilter(m), |raw| {
        of_device(raw, ifindex)
    })
    .map_err(|e| context(e, "listing filters"))?;
    let mut out = Vec::new();
    for f in &found {
        let RouteNetlinkMessage::NewTrafficFilter(f) = f else {
            continue;
        };
        let prio = (f.header.info >> 16) as u16;
        for a in &f.attributes {
            let TcAttribute::Options(opts) = a else {
                continue;
            };
            for o in opts {
                let TcOption::U32(TcFilterU32Option::Action(acts)) = o else {
                    continue;
                };
                out.extend(
                    acts.iter()
                        .filter_map(mirred_target)
                        .map(|to| Redirect { prio, to }),
                );
            }
        }
    }
    Ok(out)
}

/// The device a `mirred` action sends to.
fn mirred_target(act: &TcAction) -> Option<u32> {
    act.attributes.iter().find_map(|a| match a {
        TcActionAttribute::Options(opts) => opts.iter().find_map(|o| match o {
            TcActionOption::Mirror(TcActionMirrorOption::Parms(p)) => Some(p.ifindex),
            _ => None,
        }),
        _ => None,
    })
}

/// A tc message about device `ifindex`.
fn message(ifindex: u32) -> TcMessage {
    TcMessage::with_index(ifindex as i32)
}

/// `tcm_info` of a filter: its priority, and the protocol it applies to (IPv4, in
/// network byte order as the kernel compares it).
fn info(prio: u16) -> u32 {
    (u32::from(prio) << 16) | u32::from((libc::ETH_P_IP as u16).to_be())
}

/// Names what failed in an error, keeping its kind and errno text.
fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("tc: {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_info_is_priority_and_ipv4_in_network_order() {
        // What `tc filter add … prio 3 protocol ip` puts in tcm_info on a little- or
        // big-endian host alike.
        let i = info(3);
        assert_eq!(i >> 16, 3);
        assert_eq!(u16::from_be(i as u16), libc::ETH_P_IP as u16);
    }

    #[test]
    fn only_the_devices_own_messages_are_kept() {
        let mut raw = vec![0u8; 36];
        raw[20..24].copy_from_slice(&7i32.to_ne_bytes());
        assert!(of_device(&raw, 7));
        assert!(!of_device(&raw, 8));
        assert!(!of_device(&raw[..22], 7));
    }

    #[test]
    fn a_redirect_filter_parses_back_to_its_target() {
        // Build the request as add_redirect does and read its action back.
        let mut parms = TcMirror::default();
        parms.ifindex = 42;
        let mut act = TcAction::default();
        act.attributes = vec![TcActionAttribute::Options(vec![TcActionOption::Mirror(
            TcActionMirrorOption::Parms(parms),
        )])];
        assert_eq!(mirred_target(&act), Some(42));
        assert_eq!(mirred_target(&TcAction::default()), None);
    }

    #[test]
    fn qdisc_and_redirect_filter_made_listed_and_deleted_as_tc_would() {
        crate::sys::in_new_netns(|| {
            let lo = crate::sys::iface::index("lo").unwrap();
            assert!(!has_ingress(lo).unwrap());
            add_ingress(lo).unwrap();
            assert!(has_ingress(lo).unwrap());
            let e = add_ingress(lo).unwrap_err();
            assert!(
                e.to_string().starts_with("tc: adding an ingress qdisc: "),
                "{e}"
            );

            let mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
            add_redirect(lo, 7, mac, lo).unwrap();
            assert_eq!(redirects(lo).unwrap(), vec![Redirect { prio: 7, to: lo }]);
            // iproute2 reads it back as the filter its own command line would make.
            let shown = std::process::Command::new("tc")
                .args(["filter", "show", "dev", "lo", "parent", "ffff:"])
                .output()
                .unwrap();
            let shown = String::from_utf8_lossy(&shown.stdout);
            for want in [
                "protocol ip pref 7 u32",
                "match 02112233/ffffffff at -8",
                "match 44550000/ffff0000 at -4",
                "mirred (Egress Redirect to device lo) stolen",
            ] {
                assert!(shown.contains(want), "no {want:?} in:\n{shown}");
            }

            del_filter(lo, 7).unwrap();
            assert_eq!(redirects(lo).unwrap(), vec![]);
            del_filter(lo, 7).unwrap();

            // Deleted, the device's ingress holds the "noop" qdisc: not an ingress one.
            let del = std::process::Command::new("tc")
                .args(["qdisc", "del", "dev", "lo", "ingress"])
                .status()
                .unwrap();
            assert!(del.success());
            assert!(!has_ingress(lo).unwrap());
            add_ingress(lo).unwrap();
            assert!(has_ingress(lo).unwrap());
        });
    }
}
