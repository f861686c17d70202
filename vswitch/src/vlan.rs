//! 802.1Q on a port: which VLANs it is a member of, which egress untagged, its PVID, and
//! how an arriving frame is classified. The model is the Linux bridge's `bridge vlan`;
//! a port with no VLAN configured is VLAN-unaware and carries every frame as it is, as
//! an Open vSwitch port with neither `tag` nor `trunks` does.

use ctl::PortVlans;

use crate::counters::Drop;
use crate::pool::Buf;
use crate::wire::ethernet::{is_tag_type, HEADER_LEN};
use crate::wire::vlan::{Tag, TAG_AT, TAG_LEN};
use crate::wire::{vnet, EthernetFrame, VnetHdr};

/// Tag protocol identifier of 802.1Q.
pub use crate::wire::vlan::TPID_8021Q;

/// A port's VLAN membership as bitsets, for constant-time checks per frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanTable {
    member: [u64; 64],
    untagged: [u64; 64],
    pvid: u16,
    /// Carries at least one VLAN tagged: a peer classifies what it sends by its tags.
    trunk: bool,
}

#[inline]
fn bit(set: &[u64; 64], vid: u16) -> bool {
    let v = usize::from(vid & crate::wire::vlan::VID_MASK);
    set[v / 64] & (1 << (v % 64)) != 0
}

fn set_bit(set: &mut [u64; 64], vid: u16) {
    let v = usize::from(vid & crate::wire::vlan::VID_MASK);
    set[v / 64] |= 1 << (v % 64);
}

/// Where a received frame belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    /// The VLAN it is switched in (0: untagged traffic of VLAN-unaware ports).
    pub vid: u16,
    /// PCP and DEI bits to keep when the frame leaves tagged (upper 4 bits of a TCI).
    pub prio: u16,
    /// The TPID it arrived with, reused when it leaves tagged (0x8100 if it had none).
    pub tpid: u16,
}

impl Class {
    /// The tag the frame carries when it leaves a tagged member.
    #[inline]
    pub fn tag(&self) -> (u16, u16) {
        (self.tpid, self.prio | self.vid)
    }
}

impl VlanTable {
    /// The table for `v`; `None` when the port has no VLAN (it is VLAN-unaware).
    pub fn new(v: &PortVlans) -> Option<VlanTable> {
        if v.is_empty() {
            return None;
        }
        let mut t = VlanTable {
            member: [0; 64],
            untagged: [0; 64],
            pvid: v.pvid.unwrap_or(0),
            trunk: !v.tagged.is_empty(),
        };
        for &vid in &v.untagged {
            set_bit(&mut t.member, vid);
            set_bit(&mut t.untagged, vid);
        }
        for &vid in &v.tagged {
            set_bit(&mut t.member, vid);
        }
        Some(t)
    }

    /// The table of a port that carries only the untagged traffic of VLAN-unaware ports
    /// (VLAN 0), untagged: a tunnel without `--vlan`. Tagged frames neither enter nor
    /// leave it.
    pub fn untagged_only() -> VlanTable {
        let mut t = VlanTable {
            member: [0; 64],
            untagged: [0; 64],
            pvid: 0,
            trunk: false,
        };
        set_bit(&mut t.member, 0);
        set_bit(&mut t.untagged, 0);
        t
    }

    /// True if the port is a member of `vid`.
    #[inline]
    pub fn is_member(&self, vid: u16) -> bool {
        bit(&self.member, vid)
    }

    /// True if the port carries some VLAN tagged, so that a tag left in a frame sent
    /// untagged would be read by the peer as the frame's VLAN.
    #[inline]
    pub fn is_trunk(&self) -> bool {
        self.trunk
    }

    /// True if frames of `vid` leave this port untagged.
    #[inline]
    pub fn is_untagged(&self, vid: u16) -> bool {
        bit(&self.untagged, vid)
    }
}

/// Classifies a frame arriving on a port with VLAN table `table` (`None`: unaware), given
/// its outer tag (TPID, TCI) if it has one.
#[inline]
pub fn classify(table: Option<&VlanTable>, tag: Option<(u16, u16)>) -> Result<Class, Drop> {
    let (tpid, tci) = tag.unwrap_or((TPID_8021Q, 0));
    let vid = tci & crate::wire::vlan::VID_MASK;
    let prio = tci & crate::wire::vlan::PRIO_MASK;
    match table {
        None => Ok(Class { vid, prio, tpid }),
        Some(t) if vid == 0 => {
            // Untagged or priority-tagged: the PVID, keeping the priority (or VLAN 0
            // itself on a port that is a member of it).
            if t.pvid == 0 {
                if t.is_member(0) {
                    Ok(Class { vid, prio, tpid })
                } else {
                    Err(Drop::VlanUntagged)
                }
            } else {
                Ok(Class {
                    vid: t.pvid,
                    prio,
                    tpid,
                })
            }
        }
        Some(t) if t.is_member(vid) => Ok(Class { vid, prio, tpid }),
        Some(_) => Err(Drop::VlanNotMember),
    }
}

/// A received frame's outer tag as the forwarding step needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    /// The outer tag (TPID, TCI), in the frame or taken off by the kernel.
    pub tag: Option<(u16, u16)>,
    /// The tag is still in the frame's bytes (at offset 12).
    pub in_frame: bool,
    /// The EtherType that follows the outer tag (or the frame's own, untagged).
    pub next_type: u16,
    /// Where what follows the outer tag starts in the frame's bytes.
    pub next_at: usize,
}

impl Outer {
    /// Another tag sits behind the outer one.
    #[inline]
    pub fn inner_tag(&self) -> bool {
        self.tag.is_some() && is_tag_type(self.next_type)
    }
}

/// The outer tag of `eth`, or `aux`, the tag the receive path took off it.
#[inline]
pub fn outer(eth: &EthernetFrame<&[u8]>, aux: Option<(u16, u16)>) -> Outer {
    match aux {
        Some(t) => Outer {
            tag: Some(t),
            in_frame: false,
            next_type: eth.ethertype(),
            next_at: HEADER_LEN,
        },
        None if eth.is_tagged() => Outer {
            tag: Some((eth.ethertype(), eth.tci())),
            in_frame: true,
            next_type: eth.inner_ethertype(),
            next_at: eth.header_len(),
        },
        None => Outer {
            tag: None,
            in_frame: false,
            next_type: eth.ethertype(),
            next_at: HEADER_LEN,
        },
    }
}

/// How a frame of class `c` leaves a port with table `table`: `None` if it may not
/// (not a member), else whether it is tagged.
#[inline]
pub fn egress(table: Option<&VlanTable>, c: &Class) -> Option<bool> {
    match table {
        // Unaware ports trunk every VLAN; VLAN 0 is their native (untagged) one.
        None => Some(c.vid != 0),
        Some(t) if t.is_member(c.vid) => Some(!t.is_untagged(c.vid)),
        Some(_) => None,
    }
}

/// Writes `vnet` + `frame` into `buf`, dropping the frame's outer tag if `tag_in_frame`
/// and putting `out_tag` (TPID, TCI) in its place if given: a tag pop, push, rewrite or
/// a plain copy in one pass, with the virtio-net offsets moved to match. False if the
/// result does not fit or the frame is too short for its tag.
#[inline]
pub fn write_frame(
    buf: &mut Buf,
    vnet_hdr: &[u8],
    frame: &[u8],
    tag_in_frame: bool,
    out_tag: Option<(u16, u16)>,
) -> bool {
    let in_len: usize = if tag_in_frame { TAG_LEN } else { 0 };
    if frame.len() < TAG_AT + in_len {
        return false;
    }
    let (head, rest) = (&frame[..TAG_AT], &frame[TAG_AT + in_len..]);
    let filled = match out_tag {
        Some(t) => buf.fill(&[vnet_hdr, head, &Tag::from(t).to_bytes(), rest]),
        None => buf.fill(&[vnet_hdr, head, rest]),
    };
    let out_len: usize = if out_tag.is_some() { TAG_LEN } else { 0 };
    if filled && out_len != in_len {
        if let Some(mut h) = VnetHdr::new_checked(&mut buf.bytes_mut()[..vnet::LEN]) {
            h.shift_offsets(out_len as i16 - in_len as i16);
        }
    }
    filled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(untagged: &[u16], tagged: &[u16], pvid: Option<u16>) -> VlanTable {
        VlanTable::new(&PortVlans {
            pvid,
            untagged: untagged.to_vec(),
            tagged: tagged.to_vec(),
        })
        .unwrap()
    }

    #[test]
    fn unaware_ports_carry_frames_as_they_are() {
        assert_eq!(classify(None, None).unwrap().vid, 0);
        let c = classify(None, Some((0x8100, 0xa00a))).unwrap();
        assert_eq!((c.vid, c.prio), (10, 0xa000));
        assert_eq!(egress(None, &c), Some(true));
        assert_eq!(egress(None, &classify(None, None).unwrap()), Some(false));
        assert!(VlanTable::new(&PortVlans::default()).is_none());
    }

    #[test]
    fn access_port() {
        let t = table(&[10], &[], Some(10));
        let c = classify(Some(&t), None).unwrap();
        assert_eq!(c.vid, 10);
        assert_eq!(egress(Some(&t), &c), Some(false));
        // Priority-tagged: PVID, keeping PCP.
        let c = classify(Some(&t), Some((0x8100, 0x6000))).unwrap();
        assert_eq!((c.vid, c.prio), (10, 0x6000));
        assert_eq!(c.tag(), (0x8100, 0x600a));
        // Tagged in another VLAN (VLAN hopping attempt): dropped.
        assert_eq!(
            classify(Some(&t), Some((0x8100, 20))),
            Err(Drop::VlanNotMember)
        );
        let c20 = Class {
            vid: 20,
            prio: 0,
            tpid: 0x8100,
        };
        assert_eq!(egress(Some(&t), &c20), None);
    }

    #[test]
    fn outer_tag_in_the_frame_or_taken_off_by_the_kernel() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x81, 0x00, 0x20, 0x0a, 0x81, 0x00, 0x00, 0x14, 0x08, 0x06]);
        f.resize(64, 0);
        let o = outer(&EthernetFrame::new_checked(&f[..]).unwrap(), None);
        assert_eq!((o.tag, o.in_frame), (Some((0x8100, 0x200a)), true));
        assert_eq!((o.next_type, o.next_at, o.inner_tag()), (0x8100, 18, true));
        // The kernel took the outer tag off: what is left starts with the inner one.
        let o = outer(
            &EthernetFrame::new_checked(&f[..]).unwrap(),
            Some((0x8100, 5)),
        );
        assert_eq!((o.in_frame, o.next_type, o.next_at), (false, 0x8100, 14));
        assert!(o.inner_tag());
        // Untagged ARP: no tag, nothing inner, the payload at 14.
        let mut u = vec![0u8; 12];
        u.extend_from_slice(&[0x08, 0x06]);
        u.resize(60, 0);
        let o = outer(&EthernetFrame::new_checked(&u[..]).unwrap(), None);
        assert_eq!(
            (o.tag, o.next_type, o.next_at, o.inner_tag()),
            (None, 0x0806, 14, false)
        );
    }

    #[test]
    fn only_ports_with_tagged_vlans_are_trunks() {
        assert!(!table(&[10], &[], Some(10)).is_trunk());
        assert!(table(&[10], &[20], Some(10)).is_trunk());
        assert!(table(&[], &[10, 20], None).is_trunk());
        assert!(!VlanTable::untagged_only().is_trunk());
    }

    #[test]
    fn push_and_pop_move_bytes_and_offsets() {
        let pool = crate::pool::Pool::new(4, 1);
        let mut b = pool.get(100).unwrap();
        let vh = [vnet::F_NEEDS_CSUM, 0, 0, 0, 0, 0, 34, 0, 16, 0];
        let mut fr: Vec<u8> = (0u8..60).collect();
        fr[12] = 0x08;
        fr[13] = 0x00;
        assert!(write_frame(&mut b, &vh, &fr, false, Some((0x8100, 0xa00a))));
        let out = b.bytes().to_vec();
        assert_eq!(out.len(), vnet::LEN + 64);
        assert_eq!(
            &out[vnet::LEN + 12..vnet::LEN + 16],
            &[0x81, 0x00, 0xa0, 0x0a]
        );
        assert_eq!(&out[vnet::LEN + 16..], &fr[12..]);
        assert_eq!(out[6], 38, "csum_start moved by the pushed tag");
        // And back: pop.
        let mut c = pool.get(100).unwrap();
        assert!(write_frame(
            &mut c,
            &out[..vnet::LEN],
            &out[vnet::LEN..],
            true,
            None
        ));
        assert_eq!(&c.bytes()[vnet::LEN..], &fr[..]);
        assert_eq!(c.bytes()[6], 34);
        assert!(!write_frame(&mut c, &vh, &fr[..14], true, None));
    }

    #[test]
    fn trunk_port() {
        let t = table(&[], &[10, 20], None);
        assert_eq!(classify(Some(&t), None), Err(Drop::VlanUntagged));
        let c = classify(Some(&t), Some((0x8100, 20))).unwrap();
        assert_eq!(egress(Some(&t), &c), Some(true));
        assert_eq!(
            classify(Some(&t), Some((0x8100, 30))),
            Err(Drop::VlanNotMember)
        );
        // QinQ: switched on the outer tag, TPID kept.
        let c = classify(Some(&t), Some((0x88a8, 10))).unwrap();
        assert_eq!(c.tag(), (0x88a8, 10));
    }

    #[test]
    fn untagged_only_takes_and_gives_vlan_0_alone() {
        let t = VlanTable::untagged_only();
        assert_eq!(classify(Some(&t), None).map(|c| c.vid), Ok(0));
        assert_eq!(
            classify(Some(&t), Some((TPID_8021Q, 0x2000))).map(|c| c.vid),
            Ok(0)
        );
        assert_eq!(
            classify(Some(&t), Some((TPID_8021Q, 10))),
            Err(Drop::VlanNotMember)
        );
        let c = |vid| Class {
            vid,
            prio: 0,
            tpid: TPID_8021Q,
        };
        assert_eq!(egress(Some(&t), &c(0)), Some(false));
        assert_eq!(egress(Some(&t), &c(10)), None);
    }
}
