use super::*;

use hickory_proto::op::Query;

fn net(domain: Option<&str>) -> NetDns {
    let e = |name: &str, a: [u8; 4]| Entry::new(name.into(), Ipv4Addr::from(a), None);
    NetDns {
        bridge: 1,
        subnet: Ipv4Net::new(Ipv4Addr::new(172, 18, 0, 0), 24).unwrap(),
        domain: domain.map(str::to_string),
        upstreams: vec![
            Ipv4Addr::new(198, 51, 100, 1),
            Ipv4Addr::new(198, 51, 100, 9),
        ],
        records: vec![
            e("web", [172, 18, 0, 2]),
            e("www", [172, 18, 0, 2]),
            e("db", [172, 18, 0, 3]),
        ],
    }
}

fn ask(name: &str, ty: RecordType, id: u16) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), ty));
    m.to_vec().unwrap()
}

fn resolver(domain: Option<&str>) -> Resolver {
    let mut r = Resolver::new();
    r.configure(vec![net(domain)]);
    r
}

fn answer(o: Outcome) -> Message {
    match o {
        Outcome::Answer(b) => Message::from_vec(&b).unwrap(),
        o => panic!("not an answer: {o:?}"),
    }
}

const C: Client = Client::Udp(Ipv4Addr::new(172, 18, 0, 2), 40000);

#[test]
fn local_names_addresses_and_nxdomain() {
    let mut r = resolver(Some("lab.test"));
    let m = answer(r.query(1, C, &ask("WEB.", RecordType::A, 7), 0));
    assert_eq!(m.id(), 7);
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(m.answers().len(), 1);
    assert_eq!(
        m.answers()[0].data(),
        &RData::A(A(Ipv4Addr::new(172, 18, 0, 2)))
    );
    let m = answer(r.query(1, C, &ask("db.lab.test.", RecordType::A, 8), 0));
    assert_eq!(m.answers().len(), 1);
    let m = answer(r.query(1, C, &ask("nope.lab.test.", RecordType::A, 9), 0));
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    // A known name has no AAAA: no data, not forwarded.
    let m = answer(r.query(1, C, &ask("web.", RecordType::AAAA, 9), 0));
    assert_eq!(
        (m.response_code(), m.answers().len()),
        (ResponseCode::NoError, 0)
    );
    // PTR: both names of .2, fully qualified.
    let m = answer(r.query(
        1,
        C,
        &ask("2.0.18.172.in-addr.arpa.", RecordType::PTR, 10),
        0,
    ));
    let mut names: Vec<String> = m.answers().iter().map(|a| a.data().to_string()).collect();
    names.sort();
    assert_eq!(names, ["web.lab.test.", "www.lab.test."]);
    let m = answer(r.query(
        1,
        C,
        &ask("9.0.18.172.in-addr.arpa.", RecordType::PTR, 11),
        0,
    ));
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
    // Another network's bridge has no names: refused.
    let m = answer(r.query(2, C, &ask("web.", RecordType::A, 12), 0));
    assert_eq!(m.response_code(), ResponseCode::Refused);
}

#[test]
fn others_are_forwarded_answered_and_time_out() {
    let mut r = resolver(None);
    let q = ask("example.org.", RecordType::A, 0x1234);
    let Outcome::Forward(u) = r.query(1, C, &q, 0) else {
        panic!("not forwarded")
    };
    assert_eq!(u.upstream, Ipv4Addr::new(198, 51, 100, 1));
    assert!(u.sport >= SPORT_MIN);
    let up_id = u16::from_be_bytes([u.query[0], u.query[1]]);
    assert_eq!(&u.query[2..], &q[2..]);
    // A wrong ID or source is not taken.
    let mut resp = Message::from_vec(&u.query).unwrap();
    resp.set_message_type(MessageType::Response);
    let mut bad = resp.clone();
    bad.set_id(up_id.wrapping_add(1));
    let from = Ipv4Addr::new(198, 51, 100, 1);
    assert!(r
        .upstream_answer(from, u.sport, &bad.to_vec().unwrap())
        .is_none());
    let ok = resp.to_vec().unwrap();
    assert!(r
        .upstream_answer(Ipv4Addr::new(1, 2, 3, 4), u.sport, &ok)
        .is_none());
    let rep = r.upstream_answer(from, u.sport, &ok).unwrap();
    assert_eq!(rep.client, C);
    assert_eq!(Message::from_vec(&rep.bytes).unwrap().id(), 0x1234);
    assert_eq!(r.pending(), 0);
    // Unanswered: the second upstream after a second, SERVFAIL after the timeout.
    let Outcome::Forward(u) = r.query(1, C, &q, 0) else {
        panic!("not forwarded")
    };
    let (mut resend, mut fail) = (Vec::new(), Vec::new());
    r.expire(TRY_MS, &mut resend, &mut fail);
    assert_eq!(resend.len(), 1);
    assert_eq!(resend[0].upstream, Ipv4Addr::new(198, 51, 100, 9));
    assert_eq!(resend[0].sport, u.sport);
    assert!(fail.is_empty());
    r.expire(TIMEOUT_MS, &mut resend, &mut fail);
    assert_eq!(fail.len(), 1);
    let m = Message::from_vec(&fail[0].bytes).unwrap();
    assert_eq!(
        (m.id(), m.response_code()),
        (0x1234, ResponseCode::ServFail)
    );
    assert_eq!(r.pending(), 0);
}

#[test]
fn malformed_and_responses_are_refused_and_the_table_is_bounded() {
    let mut r = resolver(None);
    assert_eq!(r.query(1, C, &[], 0), Outcome::Malformed);
    assert_eq!(r.query(1, C, &[1, 2, 3], 0), Outcome::Malformed);
    // A name whose compression pointer points at itself.
    let mut looped = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(r.query(1, C, &looped, 0), Outcome::Malformed);
    let mut resp = Message::from_vec(&ask("a.", RecordType::A, 1)).unwrap();
    resp.set_message_type(MessageType::Response);
    assert_eq!(
        r.query(1, C, &resp.to_vec().unwrap(), 0),
        Outcome::Malformed
    );
    for i in 0..PENDING_MAX {
        let q = ask(&format!("n{i}.example."), RecordType::A, i as u16);
        assert!(matches!(r.query(1, C, &q, 0), Outcome::Forward(_)));
    }
    let m = answer(r.query(1, C, &ask("x.example.", RecordType::A, 1), 0));
    assert_eq!(m.response_code(), ResponseCode::ServFail);
}

#[test]
fn no_upstream_is_servfail_at_once() {
    let mut n = net(None);
    n.upstreams.clear();
    let mut r = Resolver::new();
    r.configure(vec![n]);
    let m = answer(r.query(1, C, &ask("example.org.", RecordType::A, 3), 0));
    assert_eq!(m.response_code(), ResponseCode::ServFail);
}

/// The upstream's answer to `u`'s query, with `n` A records and TC set as told.
fn upstream_reply(u: &Upstream, n: u8, tc: bool) -> Vec<u8> {
    let mut m = Message::from_vec(&u.query).unwrap();
    m.set_message_type(MessageType::Response).set_truncated(tc);
    let name = m.queries()[0].name().clone();
    if !tc {
        m.add_answers((0..n).map(|i| {
            Record::from_rdata(name.clone(), 60, RData::A(A(Ipv4Addr::new(10, 0, 0, i))))
        }));
    }
    m.to_vec().unwrap()
}

#[test]
fn a_truncated_answer_for_a_tcp_client_is_asked_again_over_tcp() {
    let mut r = resolver(None);
    let tcp = Client::Tcp(7);
    let q = ask("big.example.", RecordType::A, 0x4321);
    let Outcome::Forward(u) = r.query(1, tcp, &q, 0) else {
        panic!("not forwarded")
    };
    let from = Ipv4Addr::new(198, 51, 100, 1);
    // Truncated over UDP: the same upstream is asked again over TCP, the query as the
    // client sent it with the upstream's ID, from the same local port.
    let tc = upstream_reply(&u, 0, true);
    let Some(Answered::AskTcp(again)) = r.upstream_answer_at(from, u.sport, &tc, 500) else {
        panic!("not asked again over TCP")
    };
    assert_eq!(
        (again.bridge, again.upstream, again.sport, &again.query),
        (1, from, u.sport, &u.query)
    );
    assert!(r.waits_tcp(u.sport) && r.waits_for(tcp));
    // A late UDP answer is not taken any more, nor a wrong ID over TCP.
    assert!(r.upstream_answer_at(from, u.sport, &tc, 600).is_none());
    let mut bad = Message::from_vec(&upstream_reply(&u, 40, false)).unwrap();
    bad.set_id(bad.id().wrapping_add(1));
    assert!(r.tcp_answer(u.sport, &bad.to_vec().unwrap()).is_none());
    // Not asked of the next upstream meanwhile; the whole answer goes to the client.
    let (mut resend, mut fail) = (Vec::new(), Vec::new());
    r.expire(TRY_MS + 100, &mut resend, &mut fail);
    assert!(resend.is_empty() && fail.is_empty());
    let whole = upstream_reply(&u, 40, false);
    assert!(whole.len() > 512);
    let rep = r.tcp_answer(u.sport, &whole).unwrap();
    assert_eq!(rep.client, tcp);
    let m = Message::from_vec(&rep.bytes).unwrap();
    assert_eq!(
        (m.id(), m.truncated(), m.answers().len()),
        (0x4321, false, 40)
    );
    assert_eq!(r.pending(), 0);

    // Over TCP too it ends in SERVFAIL: at the timeout from the new question, or at once
    // when the connection fails.
    let Outcome::Forward(u) = r.query(1, tcp, &q, 0) else {
        panic!("not forwarded")
    };
    let tc = upstream_reply(&u, 0, true);
    assert!(matches!(
        r.upstream_answer_at(from, u.sport, &tc, 1500),
        Some(Answered::AskTcp(_))
    ));
    r.expire(TIMEOUT_MS, &mut resend, &mut fail);
    assert!(
        fail.is_empty(),
        "the timeout starts again with the TCP question"
    );
    r.expire(1500 + TIMEOUT_MS, &mut resend, &mut fail);
    let m = Message::from_vec(&fail.pop().unwrap().bytes).unwrap();
    assert_eq!(
        (m.id(), m.response_code()),
        (0x4321, ResponseCode::ServFail)
    );
    assert!(!r.waits_tcp(u.sport));
    let Outcome::Forward(u) = r.query(1, tcp, &q, 0) else {
        panic!("not forwarded")
    };
    assert!(r.tcp_failed(u.sport).is_none(), "not asked over TCP");
    let tc = upstream_reply(&u, 0, true);
    r.upstream_answer_at(from, u.sport, &tc, 1);
    let m = Message::from_vec(&r.tcp_failed(u.sport).unwrap().bytes).unwrap();
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    assert_eq!(r.pending(), 0);
}

#[test]
fn a_truncated_answer_for_a_udp_client_is_passed_on() {
    let mut r = resolver(None);
    let q = ask("big.example.", RecordType::A, 0x55);
    let Outcome::Forward(u) = r.query(1, C, &q, 0) else {
        panic!("not forwarded")
    };
    let tc = upstream_reply(&u, 0, true);
    let from = Ipv4Addr::new(198, 51, 100, 1);
    let Some(Answered::Reply(rep)) = r.upstream_answer_at(from, u.sport, &tc, 1) else {
        panic!("not passed on")
    };
    let m = Message::from_vec(&rep.bytes).unwrap();
    assert_eq!((m.id(), m.truncated()), (0x55, true));
    // The answer-only entry point never asks again, whoever the client.
    let Outcome::Forward(u) = r.query(1, Client::Tcp(3), &q, 0) else {
        panic!("not forwarded")
    };
    let tc = upstream_reply(&u, 0, true);
    assert!(r.upstream_answer(from, u.sport, &tc).is_some());
}
