//! Support for the agent service tests: a network namespace made for the test (and removed
//! with it), a pod directory that maps names to the test's containers, and the real
//! `AgentService` served with tonic on 127.0.0.1.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use skiff_node_agent::runtime::Runtime;
use skiff_node_agent::service::{AgentService, ContainerRef, PodDirectory, PodRef};
use skiff_proto::agent::agent_client::AgentClient;
use tonic::transport::Channel;

/// A network namespace bound at a file in the test's directory, with `lo` up. Unmounted
/// and removed on drop.
pub struct TestNetns {
    pub path: PathBuf,
}

impl TestNetns {
    pub fn new(dir: &Path) -> TestNetns {
        let path = dir.join("netns");
        File::create(&path).expect("netns file");
        let target = path.clone();
        std::thread::spawn(move || -> Result<(), String> {
            // SAFETY: plain syscalls on this thread only, which ends afterwards.
            unsafe {
                if libc::unshare(libc::CLONE_NEWNET) != 0 {
                    return Err(format!("unshare: {}", std::io::Error::last_os_error()));
                }
            }
            loopback_up()?;
            let src = std::ffi::CString::new("/proc/thread-self/ns/net").unwrap();
            let dst = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: bind mount between two valid C strings.
            let r = unsafe {
                libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            };
            if r != 0 {
                return Err(format!("bind mount: {}", std::io::Error::last_os_error()));
            }
            Ok(())
        })
        .join()
        .expect("netns thread")
        .expect("network namespace");
        TestNetns { path }
    }
}

/// `ip link set lo up` through SIOCSIFFLAGS, in the calling thread's namespace.
fn loopback_up() -> Result<(), String> {
    // SAFETY: a socket for the ioctl, closed below; ifreq is plain data.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if s < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut r = libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(s, libc::SIOCSIFFLAGS, &req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(s);
        if r != 0 {
            return Err(format!("bringing lo up: {err}"));
        }
    }
    Ok(())
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let p = std::ffi::CString::new(self.path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: unmount of a path we mounted.
        unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The test's pods: one pod `default/p1` (uid `u1`) whose containers are registered by name.
#[derive(Default)]
pub struct TestPods {
    pub containers: Mutex<HashMap<String, ContainerRef>>,
    pub netns: Mutex<Option<PathBuf>>,
}

pub const NAMESPACE: &str = "default";
pub const POD: &str = "p1";
pub const POD_UID: &str = "u1";

impl TestPods {
    pub fn set(&self, name: &str, c: ContainerRef) {
        self.containers.lock().unwrap().insert(name.to_string(), c);
    }
}

impl PodDirectory for TestPods {
    fn container(
        &self,
        namespace: &str,
        pod: &str,
        pod_uid: &str,
        container: &str,
    ) -> Option<ContainerRef> {
        if namespace != NAMESPACE || pod != POD || !(pod_uid.is_empty() || pod_uid == POD_UID) {
            return None;
        }
        self.containers.lock().unwrap().get(container).cloned()
    }

    fn pod_netns(&self, namespace: &str, pod: &str, pod_uid: &str) -> Option<PathBuf> {
        if namespace != NAMESPACE || pod != POD || !(pod_uid.is_empty() || pod_uid == POD_UID) {
            return None;
        }
        self.netns.lock().unwrap().clone()
    }

    fn pods(&self) -> Vec<PodRef> {
        Vec::new()
    }
}

/// The real service on 127.0.0.1:<any>, stopped when the returned sender is dropped.
pub async fn serve(
    pods: Arc<TestPods>,
    runtime: Arc<Runtime>,
) -> (AgentClient<Channel>, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let service = AgentService::new(pods, runtime);
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(skiff_proto::agent::agent_server::AgentServer::new(service))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stop_rx.await;
                },
            )
            .await;
    });
    let client = AgentClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    (client, stop_tx)
}
