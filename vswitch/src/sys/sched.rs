//! The scheduling priority of the calling thread.

use std::io;

use super::cvt;

/// Sets the calling thread's niceness (-20 highest … 19 lowest); the rest of the process
/// keeps its own. Raising it needs CAP_SYS_NICE (or an RLIMIT_NICE that allows it).
pub fn set_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    // SAFETY: a plain syscall on this thread's own id; no memory is passed. On Linux,
    // PRIO_PROCESS with a thread id changes that thread alone.
    cvt(unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) }).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This thread's niceness.
    fn thread_nice() -> io::Result<i32> {
        // SAFETY: gettid has no preconditions and cannot fail.
        let tid = unsafe { libc::gettid() };
        // getpriority may legitimately return -1, so errno is cleared first and read after.
        // SAFETY: errno is this thread's; writing it is how getpriority's error is told apart.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: a plain syscall on this thread's own id.
        let r = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
        let e = io::Error::last_os_error();
        if r == -1 && e.raw_os_error() != Some(0) {
            return Err(e);
        }
        Ok(r)
    }

    #[test]
    fn lowering_a_threads_priority_leaves_the_others_alone() {
        let before = thread_nice().expect("read");
        let inside = std::thread::spawn(move || {
            let target = (before + 3).min(19);
            set_thread_nice(target).expect("lowering needs no privilege");
            (target, thread_nice().expect("read"))
        })
        .join()
        .expect("thread");
        assert_eq!(
            inside.0, inside.1,
            "the thread got the niceness it asked for"
        );
        assert_eq!(
            thread_nice().expect("read"),
            before,
            "the caller kept its own"
        );
    }
}
