//! Thin, safe wrappers over the Linux interfaces the ports need: AF_PACKET sockets with
//! a TPACKET_V3 ring, TAP devices, and interface lookups. Every `unsafe` block of the
//! crate lives here, each with the reason it is sound.

pub mod afpacket;
pub mod gso_tap;
pub mod heap;
pub mod iface;
pub mod limits;
pub mod netns;
pub mod rtnl;
pub mod sched;
pub mod tap;
pub mod tc;
pub mod udp;
pub mod xdp;

use std::io;

/// Runs `f` on a thread of its own in a new, empty network namespace (root only, as the
/// integration tests): nothing of the host's is touched, and commands it starts (`ip`,
/// `tc`) run in that namespace too.
#[cfg(test)]
pub(crate) fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare(2) with CLONE_NEWNET moves only this thread into a new network
        // namespace; no memory is involved.
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            r,
            0,
            "a network namespace of its own needs root: unshare: {}",
            io::Error::last_os_error()
        );
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Turns a libc return value into an `io::Result`.
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Sets an integer socket option.
pub(crate) fn setsockopt_int(
    fd: libc::c_int,
    level: libc::c_int,
    name: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `val` lives across the call and its size is passed exactly.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    cvt(r).map(|_| ())
}
