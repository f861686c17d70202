//! The process's resource limits the daemon raises for itself.

use std::io;

use super::cvt;

/// Raises the soft limit on open descriptors to the hard limit and returns it. Every
/// afpacket port holds two sockets (three once its ring has grown), so the usual soft
/// limit of 1024 would refuse ports on a host of a few hundred containers; the hard
/// limit is what the administrator allows (ovs-vswitchd and Go programs raise it too).
pub fn raise_nofile() -> io::Result<u64> {
    let mut lim = nofile()?;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit; only this process's limit changes.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })?;
    }
    Ok(lim.rlim_cur)
}

/// The soft and hard limits on open descriptors.
fn nofile() -> io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    Ok(lim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_descriptor_limit_is_raised_to_the_hard_one() {
        // One below the hard limit first (lowering is always allowed), so that the raise
        // is seen whatever the limits this test starts with.
        let mut lim = nofile().unwrap();
        lim.rlim_cur = lim.rlim_max.saturating_sub(1);
        // SAFETY: `lim` is a valid rlimit; only this process's limit changes.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }).unwrap();
        let raised = raise_nofile().unwrap();
        let lim = nofile().unwrap();
        assert_eq!((lim.rlim_cur, raised), (lim.rlim_max, lim.rlim_max));
        assert_eq!(
            raise_nofile().unwrap(),
            raised,
            "a second call changes nothing"
        );
    }
}
