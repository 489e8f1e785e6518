//! A pod's sandbox: the network, IPC and UTS namespaces its containers share, held open by bind
//! mounts onto files (no pause process), plus the `/etc/hosts` and `/etc/resolv.conf` the
//! agent writes for it.
//!
//! The namespaces are made on a dedicated thread that unshares them, sets the hostname, brings
//! up loopback and bind-mounts `/proc/thread-self/ns/*`; the agent itself never changes
//! namespace and never forks for this.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// `statfs` magic of nsfs, the filesystem namespace files live on.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Why a sandbox could not be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A system call failed.
    #[error("pod sandbox: {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SandboxError {
    let path = path.to_path_buf();
    move |source| SandboxError::Io { op, path, source }
}

/// The namespace files of one pod (`<run>/pods/<uid>/ns/{net,ipc,uts}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    dir: PathBuf,
}

/// The namespaces a sandbox holds, in the order they are made.
const KINDS: [(&str, libc::c_int); 3] = [
    ("net", libc::CLONE_NEWNET),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
];

impl Sandbox {
    /// The sandbox under `dir` (which [`Sandbox::ensure`] creates).
    pub fn at(dir: PathBuf) -> Sandbox {
        Sandbox { dir }
    }

    /// The directory holding the namespace files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The network namespace file.
    pub fn net(&self) -> PathBuf {
        self.dir.join("net")
    }

    /// The IPC namespace file.
    pub fn ipc(&self) -> PathBuf {
        self.dir.join("ipc")
    }

    /// The UTS namespace file.
    pub fn uts(&self) -> PathBuf {
        self.dir.join("uts")
    }

    /// Whether every namespace is bound (an agent restart finds them so and reuses them).
    pub fn exists(&self) -> bool {
        KINDS.iter().all(|(name, _)| is_nsfs(&self.dir.join(name)))
    }

    /// Makes the namespaces unless they already exist, with `hostname` set in the UTS one and
    /// loopback up in the network one.
    pub fn ensure(&self, hostname: &str) -> Result<(), SandboxError> {
        if self.exists() {
            return Ok(());
        }
        // A part-made sandbox (a crash half-way) is made again from scratch.
        self.remove()?;
        fs::create_dir_all(&self.dir).map_err(io_err("create", &self.dir))?;
        for (name, _) in KINDS {
            let file = self.dir.join(name);
            fs::File::create(&file).map_err(io_err("create", &file))?;
        }
        let dir = self.dir.clone();
        let hostname = hostname.to_string();
        let made = std::thread::Builder::new()
            .name("sandbox".into())
            .spawn(move || make_namespaces(&dir, &hostname))
            .map_err(io_err("spawn thread for", &self.dir))?
            .join()
            .unwrap_or_else(|_| {
                Err(SandboxError::Io {
                    op: "make namespaces in",
                    path: self.dir.clone(),
                    source: io::Error::other("thread panicked"),
                })
            });
        if made.is_err() {
            let _ = self.remove();
        }
        made
    }

    /// Unmounts and removes the namespace files; the namespaces go once no process is in
    /// them. Removing a sandbox that is not there is not an error.
    pub fn remove(&self) -> Result<(), SandboxError> {
        for (name, _) in KINDS {
            let file = self.dir.join(name);
            if is_nsfs(&file) {
                umount2(&file, MntFlags::MNT_DETACH)
                    .map_err(|e| io_err("unmount", &file)(io::Error::from(e)))?;
            }
        }
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &self.dir)(e)),
            _ => Ok(()),
        }
    }
}

/// Runs on its own thread: unshare, configure, bind the namespaces to files.
fn make_namespaces(dir: &Path, hostname: &str) -> Result<(), SandboxError> {
    let flags = KINDS.iter().fold(0, |f, (_, k)| f | k);
    // SAFETY: unshare affects only this thread's namespaces (no CLONE_FS/CLONE_FILES).
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(io_err("unshare namespaces for", dir)(
            io::Error::last_os_error(),
        ));
    }
    nix::unistd::sethostname(hostname)
        .map_err(|e| io_err("set hostname in", dir)(io::Error::from(e)))?;
    loopback_up().map_err(io_err("bring up loopback in", dir))?;
    for (name, _) in KINDS {
        let source = PathBuf::from(format!("/proc/thread-self/ns/{name}"));
        let target = dir.join(name);
        mount(
            Some(&source),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| io_err("bind", &target)(io::Error::from(e)))?;
    }
    Ok(())
}

/// `ip link set lo up` in the calling thread's network namespace.
fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and is not owned elsewhere.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn is_nsfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type().0 == NSFS_MAGIC)
        .unwrap_or(false)
}

/// `/etc/hosts` for a pod, as the kubelet writes it: localhost entries, the pod's own address
/// under its hostname (when it has one), then `hostAliases`.
pub fn hosts_file(
    hostname: &str,
    fqdn: Option<&str>,
    pod_ip: Option<&str>,
    aliases: &[(String, Vec<String>)],
) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    if let Some(ip) = pod_ip {
        match fqdn {
            Some(f) => s.push_str(&format!("{ip}\t{f}\t{hostname}\n")),
            None => s.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    if !aliases.is_empty() {
        s.push_str("\n# Entries added by HostAliases.\n");
        for (ip, names) in aliases {
            s.push_str(&format!("{ip}\t{}\n", names.join("\t")));
        }
    }
    s
}

/// What a pod's `/etc/resolv.conf` says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsSettings {
    /// `nameserver` lines.
    pub nameservers: Vec<String>,
    /// The `search` list.
    pub searches: Vec<String>,
    /// `options`.
    pub options: Vec<String>,
}

impl DnsSettings {
    /// Parses a resolv.conf (the host's, for `dnsPolicy: Default`).
    pub fn parse(text: &str) -> DnsSettings {
        let mut d = DnsSettings::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => d.nameservers.extend(words.next().map(String::from)),
                Some("search") | Some("domain") => {
                    d.searches = words.map(String::from).collect();
                }
                Some("options") => d.options.extend(words.map(String::from)),
                _ => {}
            }
        }
        d
    }

    /// The host's resolvers, skipping systemd-resolved's stub (unreachable from a pod's
    /// network namespace) in favour of the upstreams it lists.
    pub fn host() -> DnsSettings {
        let read = |p: &str| fs::read_to_string(p).ok().map(|t| DnsSettings::parse(&t));
        let mut d = read("/etc/resolv.conf").unwrap_or_default();
        if d.nameservers.iter().any(|n| n.starts_with("127.0.0.53")) {
            if let Some(real) = read("/run/systemd/resolve/resolv.conf") {
                d = real;
            }
        }
        d.nameservers.retain(|n| !n.starts_with("127."));
        d
    }

    /// The resolv.conf text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if !self.searches.is_empty() {
            s.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for n in &self.nameservers {
            s.push_str(&format!("nameserver {n}\n"));
        }
        if !self.options.is_empty() {
            s.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_has_localhost_pod_entry_and_aliases() {
        let text = hosts_file(
            "web-0",
            None,
            Some("10.0.0.5"),
            &[("1.2.3.4".into(), vec!["foo".into(), "bar".into()])],
        );
        assert!(text.contains("127.0.0.1\tlocalhost\n"));
        assert!(text.contains("10.0.0.5\tweb-0\n"));
        assert!(text.contains("1.2.3.4\tfoo\tbar\n"));
        // Without an address the pod's own name has no line.
        assert!(!hosts_file("web-1", None, None, &[]).contains("web-1"));
    }

    #[test]
    fn resolv_conf_round_trips_and_skips_loopback_resolvers() {
        let d = DnsSettings::parse("search a.b c\nnameserver 10.0.0.1\noptions ndots:5\n");
        assert_eq!(d.nameservers, vec!["10.0.0.1"]);
        assert_eq!(d.searches, vec!["a.b", "c"]);
        assert_eq!(
            d.render(),
            "search a.b c\nnameserver 10.0.0.1\noptions ndots:5\n"
        );
    }

    #[test]
    fn sandbox_holds_namespaces_with_hostname() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED sandbox_holds_namespaces_with_hostname: needs root");
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let sb = Sandbox::at(tmp.path().join("ns"));
        sb.ensure("pod-a").expect("sandbox");
        assert!(sb.exists());
        // The UTS namespace carries the hostname: join it on a thread and read it back.
        let uts = fs::File::open(sb.uts()).expect("open uts");
        let name = std::thread::spawn(move || {
            // SAFETY: setns on this thread only.
            assert_eq!(
                unsafe { libc::setns(uts.as_raw_fd(), libc::CLONE_NEWUTS) },
                0
            );
            nix::unistd::gethostname().expect("hostname")
        })
        .join()
        .expect("thread");
        assert_eq!(name, "pod-a");
        // Idempotent, then removable.
        sb.ensure("pod-a").expect("again");
        sb.remove().expect("remove");
        assert!(!sb.exists());
        assert!(!tmp.path().join("ns").exists());
    }
}
