//! Counters of a namespace's `/proc/net/snmp` (per namespace: the kernel keeps one set
//! for each), e.g. `Udp: RcvbufErrors`, the datagrams dropped because a receiving socket's
//! buffer was full. A loaded machine that leaves a receiver no CPU overflows its buffer;
//! telling those losses apart from losses on the way keeps loss checks honest.

use crate::netns::try_exec;
use crate::proc::RunError;
use crate::SHORT;

/// The counter `name` of protocol `proto` (`Udp`, `Tcp`, `Ip`, …) in a `/proc/net/snmp`
/// text: the first `PROTO:` line names the counters, the second holds their values.
pub fn counter(snmp: &str, proto: &str, name: &str) -> Option<u64> {
    let tag = format!("{proto}:");
    let mut lines = snmp
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(tag.as_str()));
    let names = lines.next()?;
    let values = lines.next()?;
    let at = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// `Udp: RcvbufErrors` of a `/proc/net/snmp` text.
pub fn udp_rcvbuf_errors(snmp: &str) -> Option<u64> {
    counter(snmp, "Udp", "RcvbufErrors")
}

/// The `/proc/net/snmp` of namespace `ns`.
pub fn read(ns: &str) -> Result<String, RunError> {
    Ok(try_exec(ns, &["cat", "/proc/net/snmp"], SHORT)?
        .must()?
        .stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_buffer_overflows_are_read_from_snmp() {
        let snmp = "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors\n\
                    Udp: 50807 0 925 1 925 0 0\n\
                    UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors\n\
                    UdpLite: 0 0 0 0 7 0 0\n";
        assert_eq!(udp_rcvbuf_errors(snmp), Some(925));
        assert_eq!(counter(snmp, "UdpLite", "RcvbufErrors"), Some(7));
        assert_eq!(counter(snmp, "Udp", "InDatagrams"), Some(50807));
        assert_eq!(udp_rcvbuf_errors("Udp: InDatagrams\nUdp: 3\n"), None);
        assert_eq!(udp_rcvbuf_errors(""), None);
    }
}
