//! What the networks ask of the kernel directly: running in another namespace, sysctls, the
//! nftables generation (netlink) and tap descriptors.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::command::io;
use super::{NetError, Result, valid_ifname};

/// `_IOW('T', 202, int)`: attach this /dev/net/tun descriptor to an interface.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// Runs `f` in network namespace `ns` (`None`: this process's own) on a short-lived thread:
/// a descriptor opened there, or a `/proc/sys/net` file written there, belongs to that namespace.
fn in_netns<T: Send + 'static>(
    ns: Option<&str>,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let ns_path = ns.map(|n| Path::new("/run/netns").join(n));
    std::thread::spawn(move || {
        if let Some(path) = ns_path {
            let ns = std::fs::File::open(&path)?;
            // SAFETY: setns on an open namespace file; only this short-lived thread changes namespace.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        f()
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the thread panicked")))
}

/// Writes `/proc/sys/<key>` in namespace `ns` (no dependency on procps' `sysctl`).
pub(super) fn set_sysctls(ns: Option<&str>, values: &[(&'static str, &'static str)]) -> Result<()> {
    for &(key, value) in values {
        let path = format!("/proc/sys/{key}");
        in_netns(ns, {
            let path = path.clone();
            move || std::fs::write(&path, value)
        })
        .map_err(io(format!("writing {value} to {path} in {}", ns.unwrap_or("the host namespace"))))?;
    }
    Ok(())
}

/// The nftables generation of namespace `ns` (`None`: this process's own): a number the kernel
/// bumps on every committed transaction, read with one `NFT_MSG_GETGEN` netlink request.
pub fn generation(ns: Option<&str>) -> Result<u32> {
    in_netns(ns, get_generation).map_err(io(format!("reading the nftables generation in {}", ns.unwrap_or("the host"))))
}

fn get_generation() -> std::io::Result<u32> {
    const NFNL_SUBSYS_NFTABLES: u16 = 10;
    const NFT_MSG_GETGEN: u16 = 16;
    const NFTA_GEN_ID: u16 = 1;
    // SAFETY: socket(2) with constant arguments; the descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_NETFILTER) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor socket(2) just returned, owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // nlmsghdr (16 bytes) + nfgenmsg (family AF_UNSPEC, version 0, resource id 0).
    let mut req = [0u8; 20];
    req[0..4].copy_from_slice(&20u32.to_ne_bytes());
    req[4..6].copy_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN).to_ne_bytes());
    req[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    // SAFETY: sends `req`, a valid buffer of its length, to the kernel (the default address).
    if unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut buf = [0u8; 512];
    // SAFETY: receives into `buf`, a valid buffer of its length.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let msg = &buf[..n as usize];
    let bad = || std::io::Error::other("a malformed NFT_MSG_GETGEN answer");
    let len = u32::from_ne_bytes(msg.get(0..4).ok_or_else(bad)?.try_into().unwrap()) as usize;
    let kind = u16::from_ne_bytes(msg.get(4..6).ok_or_else(bad)?.try_into().unwrap());
    if kind == libc::NLMSG_ERROR as u16 {
        let code = i32::from_ne_bytes(msg.get(16..20).ok_or_else(bad)?.try_into().unwrap());
        return Err(std::io::Error::from_raw_os_error(-code));
    }
    let mut at = 20; // nlmsghdr + nfgenmsg
    let end = len.min(msg.len());
    while at + 4 <= end {
        let alen = u16::from_ne_bytes(msg[at..at + 2].try_into().unwrap()) as usize;
        let atype = u16::from_ne_bytes(msg[at + 2..at + 4].try_into().unwrap()) & 0x3fff;
        if alen < 4 || at + alen > end {
            break;
        }
        if atype == NFTA_GEN_ID && alen >= 8 {
            return Ok(u32::from_be_bytes(msg[at + 4..at + 8].try_into().unwrap()));
        }
        at += (alen + 3) & !3;
    }
    Err(bad())
}

pub(super) fn open_tap_in(netns: &str, tap: &str) -> Result<OwnedFd> {
    if !valid_ifname(tap) {
        return Err(NetError::Invalid(format!("tap {tap:?} is not an interface name")));
    }
    let name = tap.to_string();
    let context = format!("opening tap {tap} in {netns}");
    let opened = in_netns(Some(netns), move || -> std::io::Result<OwnedFd> {
        // TUNSETIFF would create a new, unbridged tap under a name that does not exist.
        let cname = std::ffi::CString::new(name.clone()).map_err(std::io::Error::other)?;
        // SAFETY: a NUL-terminated name.
        if unsafe { libc::if_nametoindex(cname.as_ptr()) } == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such interface"));
        }
        let tun = std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun")?;
        // SAFETY: an all-zero ifreq is valid; the name fits (checked above) and stays NUL-terminated.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes an ifreq, which `ifr` is.
        if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF as _, &mut ifr) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from(tun))
    });
    opened.map_err(io(context))
}
