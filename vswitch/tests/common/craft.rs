//! Bytes for crafted frames: hex for the injectors, parsed addresses, and the Internet
//! checksum the tests compute independently of the switch's own (`wire::checksum`), so
//! a bug there cannot hide in both.

use std::net::Ipv4Addr;
use std::path::Path;

/// `b` as lower-case hex, the injectors' input format.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The six bytes of a MAC address written `aa:bb:cc:dd:ee:ff`.
pub fn mac_bytes(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

/// The four bytes of a dotted IPv4 address.
pub fn ip4(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().unwrap().octets()
}

/// Internet checksum (RFC 1071), written out plainly.
pub fn csum(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        s += u32::from(w);
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Recomputes the IPv4 header checksum of `ip` (header length from its IHL, if sane).
pub fn fix_ip_csum(ip: &mut [u8]) {
    let hl = usize::from(ip[0] & 0x0f) * 4;
    if hl < 20 || hl > ip.len() {
        return;
    }
    ip[10] = 0;
    ip[11] = 0;
    let c = csum(&ip[..hl]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// The python3 the injector scripts run with (the system one, not a pyenv shim).
pub fn python3() -> String {
    if Path::new("/usr/bin/python3").is_file() {
        return "/usr/bin/python3".into();
    }
    super::which("python3")
        .map(|p| p.to_string_lossy().into_owned())
        .expect("python3 is missing — install it with scripts/deps.sh")
}

/// A UDP datagram from port 40000 to `dport` (UDP checksum 0, which IPv4 allows) in an
/// IPv4 packet with a correct header checksum.
pub fn ipv4_udp(src: [u8; 4], dst: [u8; 4], dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&40000u16.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&u16::try_from(8 + data.len()).unwrap().to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    let total = u16::try_from(20 + u.len()).unwrap();
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 17, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    fix_ip_csum(&mut h);
    h.extend_from_slice(&u);
    h
}
