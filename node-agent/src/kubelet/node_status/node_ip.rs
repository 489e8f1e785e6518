//! The node's default InternalIP: the source address the kernel picks for traffic to the API
//! server, which is the address the API server can reach the node's agent at (upstream's
//! kubelet picks the default route's address; towards the API server is the same on a one-route
//! host and right on a multi-homed one).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::Path;

/// The fallback when the API server cannot be resolved or routed to.
pub const FALLBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// The source address towards the API server named by `kubeconfig`'s current context, or
/// [`FALLBACK`]. Blocking: it reads the file and may resolve a host name.
pub fn towards_api_server(kubeconfig: &Path) -> IpAddr {
    let Some(server) = server_url(kubeconfig) else {
        return FALLBACK;
    };
    host_port(&server)
        .and_then(|hp| hp.to_socket_addrs().ok())
        .and_then(|mut addrs| addrs.next())
        .and_then(source_ip)
        .unwrap_or(FALLBACK)
}

/// The `server` of the current context's cluster.
fn server_url(kubeconfig: &Path) -> Option<String> {
    let config = kube::config::Kubeconfig::read_from(kubeconfig).ok()?;
    let current = config.current_context.as_deref()?;
    let context = config
        .contexts
        .iter()
        .find(|c| c.name == current)?
        .context
        .as_ref()?;
    config
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)?
        .cluster
        .as_ref()?
        .server
        .clone()
}

/// `host:port` of an `https://host[:port][/path]` URL (port 443 when absent).
fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    if authority.is_empty() {
        return None;
    }
    let has_port = match authority.rsplit_once(':') {
        Some((host, port)) => !host.ends_with(':') && port.parse::<u16>().is_ok(),
        None => false,
    };
    Some(if has_port && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:443")
    })
}

/// The local address a datagram to `to` would leave from: connecting a UDP socket routes it
/// without sending anything.
fn source_ip(to: SocketAddr) -> Option<IpAddr> {
    let bind: SocketAddr = match to {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(to).ok()?;
    Some(socket.local_addr().ok()?.ip()).filter(|ip| !ip.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_to_host_and_port() {
        let hp = |u: &str| host_port(u);
        assert_eq!(hp("https://127.0.0.5:6443"), Some("127.0.0.5:6443".into()));
        assert_eq!(hp("https://api.example/x"), Some("api.example:443".into()));
        assert_eq!(hp("https://[::1]:6443/"), Some("[::1]:6443".into()));
        assert_eq!(hp("https://[::1]"), Some("[::1]:443".into()));
        assert_eq!(hp("https://"), None);
    }

    fn kubeconfig(dir: &Path, server: &str) -> std::path::PathBuf {
        let conf = dir.join(format!("conf-{}", server.len()));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n\
             users:\n- name: u\n  user: {{}}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n\
             current-context: x\n"
        );
        std::fs::write(&conf, text).unwrap_or_else(|e| panic!("write: {e}"));
        conf
    }

    #[test]
    fn the_source_is_what_the_kernel_routes_from() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        // 127.0.0.0/8 is routed from 127.0.0.1 ("local ... src 127.0.0.1").
        let v4 = kubeconfig(dir.path(), "https://127.0.0.77:6443");
        assert_eq!(towards_api_server(&v4), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(towards_api_server(&dir.path().join("missing")), FALLBACK);
        // Only a real route gives an address other than the fallback.
        if UdpSocket::bind("[::1]:0").is_ok() {
            let v6 = kubeconfig(dir.path(), "https://[::1]:6443");
            assert_eq!(
                towards_api_server(&v6),
                "::1".parse::<IpAddr>().ok().unwrap_or(FALLBACK)
            );
        } else {
            eprintln!(
                "SKIPPED part of the_source_is_what_the_kernel_routes_from: no IPv6 loopback"
            );
        }
    }
}
