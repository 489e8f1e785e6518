//! Descriptor plumbing for the exec helper and its caller: inheritable report pipes,
//! closing inherited strays, pidfd signals, and receiving the terminal's master.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// A copy of `fd` numbered 3 or above *without* close-on-exec, so a spawned child inherits
/// it at that number (std spawns with posix_spawn and closes nothing else).
pub(super) fn dup_inheritable(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD returns a new descriptor or -1.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Closes every descriptor above 2 except `keep`.
pub(super) fn close_fds_above_stdio_except(keep: RawFd) {
    let close_range = |first: u32, last: u32| {
        if first <= last {
            // SAFETY: close_range takes two numbers and flags; nothing here refers to the
            // descriptors it closes (this runs first thing in the helper).
            unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
        }
    };
    let keep = keep as u32;
    if keep > 3 {
        close_range(3, keep - 1);
    }
    close_range(keep + 1, u32::MAX);
}

/// Sends `signal` to the process behind a pidfd (never to a reused pid).
pub(super) fn pidfd_send_signal(fd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: pidfd_send_signal with a null siginfo and no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one descriptor passed with SCM_RIGHTS on a unix stream.
pub(super) fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    let mut buf = [0u8; 256];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<UnixAddr>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let mut received = None;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: SCM_RIGHTS just installed this descriptor in our table.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if received.is_none() {
                    received = Some(owned);
                }
            }
        }
    }
    received.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "the console socket carried no descriptor",
        )
    })
}
