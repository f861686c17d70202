//! The `dns` target: the fuzzer's bytes as DNS messages to a network's gateway, from a
//! client (UDP and TCP) and as an upstream's answer to a query in flight. Whatever the
//! bytes, the resolver must not panic, must answer with a message that parses and
//! carries the query's ID, and must keep its table of queries in flight bounded.

use std::net::Ipv4Addr;

use hickory_proto::op::Message;
use nat::nat::Ipv4Net;

use crate::gateway::dns::{Client, Entry, NetDns, Outcome, Resolver, PENDING_MAX};

const UPSTREAM: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

fn resolver() -> Resolver {
    let mut r = Resolver::new();
    let subnet = Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 24)
        .unwrap_or_else(|| unreachable!("a /24 is a subnet"));
    r.configure(vec![NetDns {
        bridge: 0,
        subnet,
        domain: Some("lab.test".into()),
        upstreams: vec![UPSTREAM],
        records: vec![Entry::new("web".into(), Ipv4Addr::new(10, 0, 0, 2), None)],
    }]);
    r
}

/// Runs one input: the first byte picks the client's transport, the rest is the query;
/// a forwarded query is then answered with the same bytes (ID made right) as if the
/// upstream had sent them.
pub fn dns(data: &[u8]) {
    let Some((&ctl, msg)) = data.split_first() else {
        return;
    };
    let mut r = resolver();
    let client = if ctl & 1 == 0 {
        Client::Udp(Ipv4Addr::new(10, 0, 0, 3), 40000)
    } else {
        Client::Tcp(1)
    };
    match r.query(0, client, msg, 0) {
        Outcome::Malformed => assert_eq!(r.pending(), 0),
        Outcome::Answer(a) => {
            let m = Message::from_vec(&a).unwrap_or_else(|e| panic!("answer does not parse: {e}"));
            assert_eq!(
                Some(m.id()),
                msg.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]))
            );
        }
        Outcome::Forward(u) => {
            assert_eq!(u.query.get(2..), msg.get(2..));
            let mut answer = msg.to_vec();
            if answer.len() >= 3 {
                answer[..2].copy_from_slice(&u.query[..2]);
                answer[2] |= 0x80;
            }
            if let Some(rep) = r.upstream_answer(UPSTREAM, u.sport, &answer) {
                assert_eq!(rep.client, client);
                assert_eq!(rep.bytes.get(..2), msg.get(..2));
            }
        }
    }
    let (mut resend, mut fail) = (Vec::new(), Vec::new());
    r.expire(u64::MAX / 2, &mut resend, &mut fail);
    assert_eq!(r.pending(), 0);
    assert!(r.pending() <= PENDING_MAX);
}
