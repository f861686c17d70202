//! What a `/metrics` scrape reads from the controller: the same counters as `stats`
//! (so the two agree), the tunnels' per-remote counters, and the gateway's counters as
//! its routing worker last published them — never through a lock a worker takes.

use std::sync::atomic::Ordering;

use super::Controller;
use crate::metrics::{RemoteSample, Scrape};

impl Controller {
    /// Every counter `/metrics` exports, read now.
    pub fn scrape(&self) -> Scrape {
        let (bridges, vteps) = self.counters(None, None).unwrap_or_default();
        let gateway = self
            .gateway_stats_configured()
            .then(|| self.gateway.published.load_full())
            .flatten()
            .map(|g| (*g).clone());
        let mut remotes = Vec::new();
        for b in &self.cfg.bridges {
            for p in &b.ports {
                let Some(t) = &p.tunnel else { continue };
                for r in self.tunnel_info(p, t).remotes {
                    remotes.push(RemoteSample {
                        bridge: b.name.clone(),
                        port: p.name.clone(),
                        remote: r,
                    });
                }
            }
        }
        let busy_ns = self
            .shared
            .busy_ns
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        Scrape {
            bridges,
            vteps,
            gateway,
            remotes,
            busy_ns,
        }
    }
}
