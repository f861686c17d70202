//! The claims that keep cluster services apart: one key per service name (names are
//! unique in the cluster: `publish … service:NAME` finds a service by name alone), per
//! VIP of an overlay and per published host port, each holding the key of the service
//! that owns it (`<overlay>/<name>`). A change of a service creates the claims its new
//! record needs and deletes those it gives up in the same transaction as the record, so
//! of two nodes that add the same name, VIP or port at once exactly one commits.
//!
//! Records stored before these keys existed have no claims: they still load, and a
//! change of one takes the claims it needs when they are free (deleting one removes
//! only claims that name it).

use std::net::Ipv4Addr;

use crate::{keys, PublishRecord, ServiceRecord};

/// One claim of a service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Claim {
    /// The service name, cluster-wide.
    Name(String),
    /// A VIP of an overlay.
    Vip { overlay: String, ip: Ipv4Addr },
    /// A host port every node publishes.
    Published(PublishRecord),
}

impl Claim {
    /// Its key.
    pub(crate) fn key(&self) -> String {
        match self {
            Claim::Name(n) => keys::service_name_claim(n),
            Claim::Vip { overlay, ip } => keys::vip_claim(overlay, *ip),
            Claim::Published(p) => keys::published_claim(p.proto.as_str(), p.host_port),
        }
    }

    /// Why a service cannot take it while `holder` (`<overlay>/<name>`) holds it: one
    /// line, in the words the checks before the store use.
    pub(crate) fn taken(&self, holder: &str) -> String {
        let (overlay, name) = holder.split_once('/').unwrap_or(("?", holder));
        match self {
            Claim::Name(n) => format!("overlay {overlay} already has a service {n}"),
            Claim::Vip { ip, .. } => format!("VIP {ip} is already service {name}'s"),
            Claim::Published(p) => format!(
                "{}/{} is already published to service {name}",
                p.proto.as_str(),
                p.host_port
            ),
        }
    }
}

/// The value of every claim of service `name` of `overlay`: who holds it.
pub(crate) fn holder(overlay: &str, name: &str) -> String {
    format!("{overlay}/{name}")
}

/// The claims `r` needs.
pub(crate) fn claims(r: &ServiceRecord) -> Vec<Claim> {
    let mut v = vec![
        Claim::Name(r.spec.name.clone()),
        Claim::Vip {
            overlay: r.overlay.clone(),
            ip: r.spec.vip,
        },
    ];
    v.extend(r.published.iter().copied().map(Claim::Published));
    v.sort();
    v.dedup();
    v
}

/// What a change from `prev` to `next` does to the claims.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// New ones: the transaction commits only if each is free, and creates it.
    pub take: Vec<Claim>,
    /// Kept ones: created if free (a record from before claims), left alone otherwise.
    pub keep: Vec<Claim>,
    /// Given up: deleted if they still name this service.
    pub give_up: Vec<Claim>,
}

/// The plan of a change from `prev` to `next` (none: created / deleted).
pub(crate) fn plan(prev: Option<&ServiceRecord>, next: Option<&ServiceRecord>) -> Plan {
    let before = prev.map(claims).unwrap_or_default();
    let after = next.map(claims).unwrap_or_default();
    Plan {
        take: after
            .iter()
            .filter(|c| !before.contains(c))
            .cloned()
            .collect(),
        keep: after
            .iter()
            .filter(|c| before.contains(c))
            .cloned()
            .collect(),
        give_up: before
            .iter()
            .filter(|c| !after.contains(c))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctl::L4Proto;

    fn rec(name: &str, vip: [u8; 4], published: &[(L4Proto, u16)]) -> ServiceRecord {
        let spec: ctl::service::ServiceSpec = serde_json::from_value(serde_json::json!({
            "name": name,
            "vip": Ipv4Addr::from(vip).to_string(),
            "backends": ["10.1.0.5"],
        }))
        .unwrap();
        ServiceRecord {
            overlay: "o1".into(),
            spec,
            published: published
                .iter()
                .map(|&(proto, host_port)| PublishRecord { proto, host_port })
                .collect(),
        }
    }

    #[test]
    fn a_new_service_takes_its_name_and_vip_and_a_deleted_one_gives_them_up() {
        let r = rec("web", [10, 1, 0, 100], &[]);
        let p = plan(None, Some(&r));
        assert_eq!(
            p.take,
            vec![
                Claim::Name("web".into()),
                Claim::Vip {
                    overlay: "o1".into(),
                    ip: [10, 1, 0, 100].into()
                }
            ]
        );
        assert!(p.keep.is_empty() && p.give_up.is_empty());
        let d = plan(Some(&r), None);
        assert_eq!(d.give_up, p.take);
        assert!(d.take.is_empty() && d.keep.is_empty());
    }

    #[test]
    fn publishing_takes_only_the_port_and_unpublishing_gives_only_it_up() {
        let a = rec("web", [10, 1, 0, 100], &[(L4Proto::Tcp, 80)]);
        let b = rec(
            "web",
            [10, 1, 0, 100],
            &[(L4Proto::Tcp, 80), (L4Proto::Udp, 80)],
        );
        let p = plan(Some(&a), Some(&b));
        let udp = Claim::Published(PublishRecord {
            proto: L4Proto::Udp,
            host_port: 80,
        });
        assert_eq!(p.take, vec![udp.clone()]);
        assert_eq!(p.keep.len(), 3);
        assert!(p.give_up.is_empty());
        let u = plan(Some(&b), Some(&a));
        assert_eq!(u.give_up, vec![udp]);
        assert!(u.take.is_empty());
    }

    #[test]
    fn claim_keys_sit_under_the_prefix_apart_from_the_records() {
        let r = rec("web", [10, 1, 0, 100], &[(L4Proto::Udp, 53)]);
        let k: Vec<String> = claims(&r).iter().map(Claim::key).collect();
        assert_eq!(
            k,
            vec![
                "/vswitch/v1/claims/service-names/web",
                "/vswitch/v1/claims/vips/o1/10.1.0.100",
                "/vswitch/v1/claims/published/udp/53",
            ]
        );
        for key in &k {
            assert!(!key.starts_with(keys::SERVICES), "{key}");
        }
        assert_eq!(
            Claim::Vip {
                overlay: "o1".into(),
                ip: [10, 1, 0, 100].into()
            }
            .taken("o1/db"),
            "VIP 10.1.0.100 is already service db's"
        );
    }
}
