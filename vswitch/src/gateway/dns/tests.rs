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
