//! Volume set-up against a map-backed object source and real directories; tmpfs and bind mounts
//! (memory emptyDir, secret, projected, subPath) need root and are skipped loudly without it.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMapProjection, ConfigMapVolumeSource, Container, DownwardAPIProjection,
    DownwardAPIVolumeFile, DownwardAPIVolumeSource, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HostPathVolumeSource, KeyToPath, ObjectFieldSelector, ObjectReference,
    PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, PersistentVolumeClaimVolumeSource,
    PersistentVolumeSpec, PodSpec, ProjectedVolumeSource, ResourceFieldSelector, SecretProjection,
    SecretVolumeSource, ServiceAccountTokenProjection, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;

use super::*;

/// The tests' objects, changeable between `prepare` calls.
type MapSource = StaticObjects;

/// Shorthands for the objects the tests need.
impl StaticObjects {
    fn put_config_map(&self, name: &str, data: &[(&str, &str)], binary: &[(&str, &[u8])]) {
        let cm = ConfigMap {
            metadata: meta(name),
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            binary_data: Some(
                binary
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        self.insert_config_map(cm);
    }

    fn put_secret(&self, name: &str, data: &[(&str, &[u8])]) {
        let s = Secret {
            metadata: meta(name),
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        self.insert_secret(s);
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some("default".to_string()),
        ..Default::default()
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skips a test that needs root, loudly.
macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("SKIPPED: this volume test mounts tmpfs or bind mounts and needs root");
            return;
        }
    };
}

/// A temporary pod directory whose volumes are torn down (mounts included) even when the test
/// fails.
struct PodDir {
    dir: tempfile::TempDir,
}

impl PodDir {
    fn new() -> Self {
        PodDir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PodDir {
    fn drop(&mut self) {
        if let Err(e) = teardown(self.dir.path()) {
            eprintln!("teardown in clean-up: {e}");
        }
        // Whatever teardown missed must not outlive the test.
        if let Ok(root) = fs::canonicalize(self.dir.path()) {
            for p in mount::mount_points_under(&root).unwrap_or_default() {
                let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

fn pod(volumes: Vec<Volume>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("uid-1".into()),
            labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                ..Default::default()
            }],
            volumes: Some(volumes),
            ..Default::default()
        }),
        status: None,
    }
}

fn vol(name: &str) -> Volume {
    Volume {
        name: name.into(),
        ..Default::default()
    }
}

fn container(mounts: Vec<VolumeMount>) -> Container {
    Container {
        name: "app".into(),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

fn vm(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..Default::default()
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0)
}

fn mount_options(p: &Path) -> Option<String> {
    let p = fs::canonicalize(p).ok()?;
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (Path::new(f.get(4)?) == p).then(|| l.to_string())
    })
}

fn config_map_volume(name: &str, cm: &str) -> Volume {
    Volume {
        config_map: Some(ConfigMapVolumeSource {
            name: cm.into(),
            ..Default::default()
        }),
        ..vol(name)
    }
}

#[tokio::test]
async fn empty_dir_on_disk_survives_prepare_and_is_removed_by_teardown() {
    let dir = PodDir::new();
    let v = Volume {
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..vol("scratch")
    };
    let p = pod(vec![v]);
    let src = MapSource::default();
    let vols = PodVolumes::prepare(&p, dir.path(), &src).await.unwrap();
    let path = vols.host_path("scratch").unwrap().to_path_buf();
    assert!(path.ends_with("volumes/kubernetes.io~empty-dir/scratch"));
    assert_eq!(mode(&path), 0o777);
    fs::write(path.join("data"), "kept").unwrap();

    // After an agent restart, prepare reuses the data.
    let again = PodVolumes::prepare(&p, dir.path(), &src).await.unwrap();
    assert_eq!(again.host_path("scratch"), Some(path.as_path()));
    assert_eq!(fs::read_to_string(path.join("data")).unwrap(), "kept");

    let mounts = again
        .mounts(&container(vec![vm("scratch", "tmp/s")]))
        .unwrap();
    assert_eq!(
        mounts,
        vec![BindMount {
            host_path: path.clone(),
            container_path: "/tmp/s".into(),
            read_only: false,
        }]
    );

    teardown(dir.path()).unwrap();
    assert!(!path.exists());
    assert!(!dir.path().join(VOLUMES_DIR).exists());
    // Idempotent, and a pod directory that is gone is fine.
    teardown(dir.path()).unwrap();
    teardown(&dir.path().join("never-existed")).unwrap();
}

#[tokio::test]
async fn memory_empty_dir_is_a_sized_tmpfs() {
    require_root!();
    let dir = PodDir::new();
    let v = Volume {
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: Some(Quantity("1Mi".into())),
        }),
        ..vol("mem")
    };
    let p = pod(vec![v]);
    let src = MapSource::default();
    let vols = PodVolumes::prepare(&p, dir.path(), &src).await.unwrap();
    let path = vols.host_path("mem").unwrap().to_path_buf();
    let line = mount_options(&path).expect("tmpfs mounted");
    assert!(line.contains(" - tmpfs "), "{line}");
    assert!(line.contains("size=1024k"), "{line}");
    fs::write(path.join("f"), "x").unwrap();

    // A second prepare does not stack another tmpfs or lose the file.
    PodVolumes::prepare(&p, dir.path(), &src).await.unwrap();
    let canon = fs::canonicalize(&path).unwrap();
    let count = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == canon.to_str())
        .count();
    assert_eq!(count, 1);
    assert_eq!(fs::read_to_string(path.join("f")).unwrap(), "x");

    teardown(dir.path()).unwrap();
    assert!(mount_options(&path).is_none() || !path.exists());
    assert!(!path.exists());
}

#[tokio::test]
async fn config_map_volume_projects_keys_and_updates_atomically() {
    let dir = PodDir::new();
    let src = MapSource::default();
    src.put_config_map(
        "cfg",
        &[("app.conf", "v1"), ("extra", "e")],
        &[("blob", &[0, 1, 2])],
    );
    let all = config_map_volume("all", "cfg");
    let picked = Volume {
        config_map: Some(ConfigMapVolumeSource {
            name: "cfg".into(),
            default_mode: Some(0o600),
            items: Some(vec![
                KeyToPath {
                    key: "app.conf".into(),
                    path: "conf/app.conf".into(),
                    mode: Some(0o440),
                },
                KeyToPath {
                    key: "blob".into(),
                    path: "b".into(),
                    mode: None,
                },
            ]),
            ..Default::default()
        }),
        ..vol("picked")
    };
    let p = pod(vec![all, picked]);
    let vols = PodVolumes::prepare(&p, dir.path(), &src).await.unwrap();
    let all = vols.host_path("all").unwrap().to_path_buf();
    let picked = vols.host_path("picked").unwrap().to_path_buf();
    assert!(all.ends_with("volumes/kubernetes.io~configmap/all"));

    assert_eq!(fs::read_to_string(all.join("app.conf")).unwrap(), "v1");
    assert_eq!(fs::read(all.join("blob")).unwrap(), vec![0, 1, 2]);
    assert_eq!(mode(&all.join("extra")), 0o644);
    assert_eq!(
        fs::read_link(all.join("app.conf")).unwrap(),
        Path::new("..data/app.conf")
    );
    assert_eq!(
        fs::read_to_string(picked.join("conf/app.conf")).unwrap(),
        "v1"
    );
    assert_eq!(mode(&picked.join("conf/app.conf")), 0o440);
    assert_eq!(mode(&picked.join("b")), 0o600);
    assert!(!picked.join("extra").exists());

    // Update: a new timestamped directory appears and `..data` swings to it.
    let before = fs::read_link(all.join("..data")).unwrap();
    src.put_config_map("cfg", &[("app.conf", "v2")], &[("blob", &[0, 1, 2])]);
    let vols = PodVolumes::prepare(&p, dir.path(), &src).await.unwrap();
    let after = fs::read_link(all.join("..data")).unwrap();
    assert_ne!(before, after);
    assert_eq!(fs::read_to_string(all.join("app.conf")).unwrap(), "v2");
    assert!(
        fs::symlink_metadata(all.join("extra")).is_err(),
        "removed key"
    );
    assert!(!all.join(&before).exists(), "old version removed");

    // Mounted read-only whatever the volumeMount says.
    let mounts = vols
        .mounts(&container(vec![vm("all", "/etc/app")]))
        .unwrap();
    assert!(mounts[0].read_only);

    // An unchanged object rewrites nothing.
    PodVolumes::prepare(&p, dir.path(), &src).await.unwrap();
    assert_eq!(fs::read_link(all.join("..data")).unwrap(), after);
}

#[tokio::test]
async fn missing_objects_and_keys_read_like_upstream() {
    let dir = PodDir::new();
    let src = MapSource::default();
    let p = pod(vec![config_map_volume("cfg", "missing")]);
    let err = PodVolumes::prepare(&p, dir.path(), &src).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"cfg\" : configmap \"missing\" not found"
    );
    assert!(err.is_missing_object());
    assert!(err.is_retryable());

    let secret = Volume {
        secret: Some(SecretVolumeSource {
            secret_name: Some("creds".into()),
            ..Default::default()
        }),
        ..vol("s")
    };
    let err = PodVolumes::prepare(&pod(vec![secret]), dir.path(), &src)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"s\" : secret \"creds\" not found"
    );

    // Optional and missing: an empty volume.
    let optional = Volume {
        config_map: Some(ConfigMapVolumeSource {
            name: "missing".into(),
            optional: Some(true),
            ..Default::default()
        }),
        ..vol("opt")
    };
    let vols = PodVolumes::prepare(&pod(vec![optional]), dir.path(), &src)
        .await
        .unwrap();
    let path = vols.host_path("opt").unwrap();
    assert!(path.join("..data").exists());

    // A missing key: an error unless optional.
    src.put_config_map("cfg", &[("a", "1")], &[]);
    let keyed = |optional| Volume {
        config_map: Some(ConfigMapVolumeSource {
            name: "cfg".into(),
            optional: Some(optional),
            items: Some(vec![
                KeyToPath {
                    key: "a".into(),
                    path: "a".into(),
                    mode: None,
                },
                KeyToPath {
                    key: "nope".into(),
                    path: "nope".into(),
                    mode: None,
                },
            ]),
            ..Default::default()
        }),
        ..vol("keys")
    };
    let err = PodVolumes::prepare(&pod(vec![keyed(false)]), dir.path(), &src)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"keys\" : configmap references non-existent config key: nope"
    );
    let vols = PodVolumes::prepare(&pod(vec![keyed(true)]), dir.path(), &src)
        .await
        .unwrap();
    let path = vols.host_path("keys").unwrap();
    assert_eq!(fs::read_to_string(path.join("a")).unwrap(), "1");
    assert!(!path.join("nope").exists());

    // A path escaping the volume is refused.
    let escape = Volume {
        config_map: Some(ConfigMapVolumeSource {
            name: "cfg".into(),
            items: Some(vec![KeyToPath {
                key: "a".into(),
                path: "../../etc/x".into(),
                mode: None,
            }]),
            ..Default::default()
        }),
        ..vol("esc")
    };
    let err = PodVolumes::prepare(&pod(vec![escape]), dir.path(), &src)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"esc\" : invalid path: must not contain '..': ../../etc/x"
    );
    assert!(!err.is_missing_object());
}

#[tokio::test]
async fn secret_volume_lives_on_tmpfs() {
    require_root!();
    let dir = PodDir::new();
    let src = MapSource::default();
    src.put_secret("creds", &[("password", b"hunter2"), ("key", &[0xff, 0])]);
    // A secret whose stringData was not folded into data by an API server.
    src.insert_secret(Secret {
        metadata: meta("plain"),
        string_data: Some(BTreeMap::from([("user".to_string(), "admin".to_string())])),
        ..Default::default()
    });
    let plain = Volume {
        secret: Some(SecretVolumeSource {
            secret_name: Some("plain".into()),
            ..Default::default()
        }),
        ..vol("plain")
    };
    let v = Volume {
        secret: Some(SecretVolumeSource {
            secret_name: Some("creds".into()),
            default_mode: Some(0o400),
            ..Default::default()
        }),
        ..vol("creds")
    };
    let vols = PodVolumes::prepare(&pod(vec![v, plain]), dir.path(), &src)
        .await
        .unwrap();
    let path = vols.host_path("creds").unwrap().to_path_buf();
    let plain = vols.host_path("plain").unwrap().to_path_buf();
    assert_eq!(fs::read_to_string(plain.join("user")).unwrap(), "admin");
    assert!(path.ends_with("volumes/kubernetes.io~secret/creds"));
    let line = mount_options(&path).expect("secret volume is a mount point");
    assert!(line.contains(" - tmpfs "), "{line}");
    assert_eq!(fs::read(path.join("password")).unwrap(), b"hunter2");
    assert_eq!(fs::read(path.join("key")).unwrap(), vec![0xff, 0]);
    assert_eq!(mode(&path.join("password")), 0o400);

    teardown(dir.path()).unwrap();
    assert!(mount_options(&path).is_none());
    assert!(!path.exists());
}

#[tokio::test]
async fn downward_api_volume_writes_fields_and_resources() {
    let dir = PodDir::new();
    let src = MapSource::default();
    src.set_allocatable(BTreeMap::from([(
        "memory".to_string(),
        Quantity("2Gi".into()),
    )]));
    let item = |path: &str, field: &str| DownwardAPIVolumeFile {
        path: path.into(),
        field_ref: Some(ObjectFieldSelector {
            field_path: field.into(),
            api_version: None,
        }),
        ..Default::default()
    };
    let mem = DownwardAPIVolumeFile {
        path: "mem_limit".into(),
        resource_field_ref: Some(ResourceFieldSelector {
            container_name: Some("app".into()),
            resource: "limits.memory".into(),
            divisor: Some(Quantity("1Mi".into())),
        }),
        mode: Some(0o400),
        ..Default::default()
    };
    let v = Volume {
        downward_api: Some(DownwardAPIVolumeSource {
            items: Some(vec![
                item("labels", "metadata.labels"),
                item("name", "metadata.name"),
                item("ns/namespace", "metadata.namespace"),
                mem,
            ]),
            default_mode: None,
        }),
        ..vol("info")
    };
    let mut p = pod(vec![v]);
    let vols = PodVolumes::prepare(&p, dir.path(), &src).await.unwrap();
    let path = vols.host_path("info").unwrap().to_path_buf();
    assert!(path.ends_with("volumes/kubernetes.io~downward-api/info"));
    assert_eq!(
        fs::read_to_string(path.join("labels")).unwrap(),
        "app=\"web\""
    );
    assert_eq!(fs::read_to_string(path.join("name")).unwrap(), "web");
    assert_eq!(
        fs::read_to_string(path.join("ns/namespace")).unwrap(),
        "default"
    );
    assert_eq!(fs::read_to_string(path.join("mem_limit")).unwrap(), "2048");
    assert_eq!(mode(&path.join("mem_limit")), 0o400);

    // Labels change: the next prepare refreshes the file.
    if let Some(l) = p.metadata.labels.as_mut() {
        l.insert("tier".into(), "front".into());
    }
    PodVolumes::prepare(&p, dir.path(), &src).await.unwrap();
    assert_eq!(
        fs::read_to_string(path.join("labels")).unwrap(),
        "app=\"web\"\ntier=\"front\""
    );

    // A bad field is reported as upstream's error.
    let bad = Volume {
        downward_api: Some(DownwardAPIVolumeSource {
            items: Some(vec![item("x", "spec.nope")]),
            default_mode: None,
        }),
        ..vol("bad")
    };
    let err = PodVolumes::prepare(&pod(vec![bad]), dir.path(), &src)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"bad\" : unsupported fieldPath: spec.nope"
    );
}

#[tokio::test]
async fn projected_volume_merges_sources_on_tmpfs() {
    require_root!();
    let dir = PodDir::new();
    let src = MapSource::default();
    src.put_config_map("ca", &[("ca.crt", "CERT")], &[]);
    src.put_secret("tok", &[("token", b"t0k")]);
    src.insert_token("default", "default", "jwt");
    let sources = vec![
        VolumeProjection {
            config_map: Some(ConfigMapProjection {
                name: "ca".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        VolumeProjection {
            secret: Some(SecretProjection {
                name: "tok".into(),
                items: Some(vec![KeyToPath {
                    key: "token".into(),
                    path: "auth/token".into(),
                    mode: Some(0o400),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
        VolumeProjection {
            downward_api: Some(DownwardAPIProjection {
                items: Some(vec![DownwardAPIVolumeFile {
                    path: "namespace".into(),
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.namespace".into(),
                        api_version: None,
                    }),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        },
        VolumeProjection {
            service_account_token: Some(ServiceAccountTokenProjection {
                path: "sa-token".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let v = Volume {
        projected: Some(ProjectedVolumeSource {
            sources: Some(sources),
            default_mode: Some(0o444),
        }),
        ..vol("kube-api-access")
    };
    let vols = PodVolumes::prepare(&pod(vec![v]), dir.path(), &src)
        .await
        .unwrap();
    let path = vols.host_path("kube-api-access").unwrap().to_path_buf();
    assert!(path.ends_with("volumes/kubernetes.io~projected/kube-api-access"));
    assert!(mount_options(&path).is_some_and(|l| l.contains(" - tmpfs ")));
    assert_eq!(fs::read_to_string(path.join("ca.crt")).unwrap(), "CERT");
    assert_eq!(mode(&path.join("ca.crt")), 0o444);
    assert_eq!(fs::read_to_string(path.join("auth/token")).unwrap(), "t0k");
    assert_eq!(mode(&path.join("auth/token")), 0o400);
    assert_eq!(
        fs::read_to_string(path.join("namespace")).unwrap(),
        "default"
    );
    assert_eq!(fs::read_to_string(path.join("sa-token")).unwrap(), "jwt");
    assert_eq!(mode(&path.join("sa-token")), 0o444);

    // Two missing sources: upstream's aggregate.
    let missing = Volume {
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "gone".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    secret: Some(SecretProjection {
                        name: "gone-too".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            default_mode: None,
        }),
        ..vol("m")
    };
    let err = PodVolumes::prepare(&pod(vec![missing]), dir.path(), &src)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"m\" : [configmap \"gone\" not found, secret \"gone-too\" not found]"
    );
    assert!(err.is_missing_object());
}

fn host_path_volume(name: &str, path: &Path, type_: &str) -> Volume {
    Volume {
        host_path: Some(HostPathVolumeSource {
            path: path.to_string_lossy().into_owned(),
            type_: Some(type_.into()),
        }),
        ..vol(name)
    }
}

#[tokio::test]
async fn host_path_types_are_checked_as_upstream() {
    let dir = PodDir::new();
    let host = tempfile::tempdir().unwrap();
    let file = host.path().join("file");
    fs::write(&file, "data").unwrap();
    let sock = host.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let src = MapSource::default();
    let check = |v: Volume| {
        let p = pod(vec![v]);
        let d = dir.path().to_path_buf();
        let src = &src;
        async move { PodVolumes::prepare(&p, &d, src).await }
    };

    let err = check(host_path_volume("h", &file, "Directory"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "MountVolume.SetUp failed for volume \"h\" : hostPath type check failed: {} is not a directory",
            file.display()
        )
    );
    let err = check(host_path_volume("h", host.path(), "File"))
        .await
        .unwrap_err();
    assert!(err.to_string().ends_with("is not a file"), "{err}");
    let err = check(host_path_volume("h", &file, "Socket"))
        .await
        .unwrap_err();
    assert!(err.to_string().ends_with("is not a socket file"), "{err}");
    let err = check(host_path_volume("h", &file, "CharDevice"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().ends_with("is not a character device"),
        "{err}"
    );
    let err = check(host_path_volume("h", Path::new("/dev/null"), "BlockDevice"))
        .await
        .unwrap_err();
    assert!(err.to_string().ends_with("is not a block device"), "{err}");
    let err = check(host_path_volume("h", &file, "Weird"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"h\" : Weird is an invalid volume type"
    );
    let err = check(host_path_volume(
        "h",
        &host.path().join("absent"),
        "Directory",
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().ends_with("is not a directory"), "{err}");

    for (path, t) in [
        (file.clone(), "File"),
        (file.clone(), ""),
        (sock.clone(), "Socket"),
        (PathBuf::from("/dev/null"), "CharDevice"),
        (host.path().to_path_buf(), "Directory"),
    ] {
        let vols = check(host_path_volume("h", &path, t)).await.unwrap();
        assert_eq!(vols.host_path("h"), Some(path.as_path()), "{t}");
    }

    let made_dir = host.path().join("a/b");
    check(host_path_volume("h", &made_dir, "DirectoryOrCreate"))
        .await
        .unwrap();
    assert!(made_dir.is_dir());
    let made_file = host.path().join("new-file");
    check(host_path_volume("h", &made_file, "FileOrCreate"))
        .await
        .unwrap();
    assert!(made_file.is_file());
    let err = check(host_path_volume(
        "h",
        &host.path().join("no/parent"),
        "FileOrCreate",
    ))
    .await
    .unwrap_err();
    assert!(!err.is_missing_object());

    // hostPath data is never touched by teardown.
    let vols = check(host_path_volume("h", host.path(), "Directory"))
        .await
        .unwrap();
    let mounts = vols.mounts(&container(vec![vm("h", "/host")])).unwrap();
    assert_eq!(mounts[0].host_path, host.path());
    assert!(!mounts[0].read_only);
    teardown(dir.path()).unwrap();
    assert_eq!(fs::read_to_string(&file).unwrap(), "data");
}

fn claim(name: &str, phase: &str, volume: Option<&str>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            uid: Some(format!("uid-{name}")),
            ..meta(name)
        },
        spec: Some(PersistentVolumeClaimSpec {
            volume_name: volume.map(String::from),
            ..Default::default()
        }),
        status: Some(PersistentVolumeClaimStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }),
    }
}

fn host_pv(name: &str, path: &Path, claim: &str) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            host_path: Some(HostPathVolumeSource {
                path: path.to_string_lossy().into_owned(),
                type_: None,
            }),
            claim_ref: Some(ObjectReference {
                name: Some(claim.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{claim}")),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

#[tokio::test]
async fn claims_must_be_bound_to_a_host_volume() {
    let dir = PodDir::new();
    let data = tempfile::tempdir().unwrap();
    fs::write(data.path().join("db"), "rows").unwrap();
    let src = MapSource::default();
    let v = |read_only| Volume {
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: "data".into(),
            read_only: Some(read_only),
        }),
        ..vol("data")
    };
    let prepare = |ro| {
        let p = pod(vec![v(ro)]);
        let d = dir.path().to_path_buf();
        let src = &src;
        async move { PodVolumes::prepare(&p, &d, src).await }
    };
    let put_claim = |c: PersistentVolumeClaim| {
        src.insert_claim(c);
    };

    let err = prepare(false).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"data\" : persistentvolumeclaim \"data\" not found"
    );
    assert!(err.is_missing_object());

    put_claim(claim("data", "Pending", None));
    let err = prepare(false).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"data\" : persistentvolumeclaim \"data\" is not bound"
    );
    assert!(err.is_missing_object());

    put_claim(claim("data", "Bound", Some("pv-1")));
    let err = prepare(false).await.unwrap_err();
    assert!(
        err.to_string()
            .ends_with("persistentvolume \"pv-1\" not found"),
        "{err}"
    );

    src.insert_volume(host_pv("pv-1", data.path(), "other"));
    let err = prepare(false).await.unwrap_err();
    assert!(err.to_string().contains("is not bound to"), "{err}");

    src.insert_volume(host_pv("pv-1", data.path(), "data"));
    let vols = prepare(true).await.unwrap();
    assert_eq!(vols.host_path("data"), Some(data.path()));
    let mounts = vols
        .mounts(&container(vec![vm("data", "/var/lib/db")]))
        .unwrap();
    assert!(
        mounts[0].read_only,
        "claim readOnly forces a read-only mount"
    );
    let vols = prepare(false).await.unwrap();
    let mounts = vols
        .mounts(&container(vec![vm("data", "/var/lib/db")]))
        .unwrap();
    assert!(!mounts[0].read_only);

    teardown(dir.path()).unwrap();
    assert_eq!(fs::read_to_string(data.path().join("db")).unwrap(), "rows");
}

#[tokio::test]
async fn unknown_volume_mounts_and_kinds_are_errors() {
    let dir = PodDir::new();
    let src = MapSource::default();
    let vols = PodVolumes::prepare(&pod(vec![]), dir.path(), &src)
        .await
        .unwrap();
    let err = vols
        .mounts(&container(vec![vm("ghost", "/g")]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot find volume \"ghost\" to mount into container \"app\""
    );

    let nfs = Volume {
        nfs: Some(Default::default()),
        ..vol("share")
    };
    let err = PodVolumes::prepare(&pod(vec![nfs]), dir.path(), &src)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"share\" : no volume plugin matched: nfs volumes are not supported on this node"
    );
}

#[tokio::test]
async fn sub_paths_are_created_pinned_and_confined() {
    require_root!();
    let dir = PodDir::new();
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("keep"), "host data").unwrap();
    let src = MapSource::default();
    src.put_config_map("cfg", &[("app.conf", "v1")], &[]);
    let scratch = Volume {
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..vol("scratch")
    };
    let p = pod(vec![
        scratch,
        config_map_volume("cfg", "cfg"),
        host_path_volume("host", host.path(), "Directory"),
    ]);
    let vols = PodVolumes::prepare(&p, dir.path(), &src).await.unwrap();
    let scratch = vols.host_path("scratch").unwrap().to_path_buf();

    let mut ctr = container(vec![
        VolumeMount {
            sub_path: Some("logs/app".into()),
            ..vm("scratch", "/var/log/app")
        },
        VolumeMount {
            sub_path: Some("app.conf".into()),
            ..vm("cfg", "/etc/app.conf")
        },
        VolumeMount {
            sub_path_expr: Some("$(POD_NAME)".into()),
            ..vm("host", "/host")
        },
    ]);
    ctr.env = Some(vec![EnvVar {
        name: "POD_NAME".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".into(),
                api_version: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    let mounts = vols.mounts(&ctr).unwrap();
    let subpaths = fs::canonicalize(dir.path())
        .unwrap()
        .join("volume-subpaths");
    assert_eq!(mounts[0].host_path, subpaths.join("scratch/app/0"));
    assert_eq!(mounts[1].host_path, subpaths.join("cfg/app/1"));
    assert_eq!(mounts[2].host_path, subpaths.join("host/app/2"));
    assert!(mounts[1].read_only);
    // The missing directory was made in the volume, and the pinned bind shows it.
    assert!(scratch.join("logs/app").is_dir());
    fs::write(mounts[0].host_path.join("out.log"), "line").unwrap();
    assert_eq!(
        fs::read_to_string(scratch.join("logs/app/out.log")).unwrap(),
        "line"
    );
    // A file sub-path is bound as a file, and the expression made `<host>/web`.
    assert_eq!(fs::read_to_string(&mounts[1].host_path).unwrap(), "v1");
    assert!(host.path().join("web").is_dir());

    // Mounting again (a container restart) reuses the binds.
    assert_eq!(vols.mounts(&ctr).unwrap(), mounts);

    // The same slot asked for another sub-path is re-bound to it.
    let other = vols
        .mounts(&container(vec![VolumeMount {
            sub_path: Some("other".into()),
            ..vm("scratch", "/var/log/app")
        }]))
        .unwrap();
    assert_eq!(other[0].host_path, mounts[0].host_path);
    fs::write(other[0].host_path.join("o"), "2").unwrap();
    assert_eq!(fs::read_to_string(scratch.join("other/o")).unwrap(), "2");

    // A symlink out of the volume is refused.
    std::os::unix::fs::symlink("/etc", scratch.join("evil")).unwrap();
    let err = vols
        .mounts(&container(vec![VolumeMount {
            sub_path: Some("evil".into()),
            ..vm("scratch", "/x")
        }]))
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("subpath \"/etc\" not within volume path"),
        "{err}"
    );
    let err = vols
        .mounts(&container(vec![VolumeMount {
            sub_path: Some("evil/new".into()),
            ..vm("scratch", "/x")
        }]))
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("failed to create subPath directory"),
        "{err}"
    );
    assert!(!Path::new("/etc/new").exists());
    let err = vols
        .mounts(&container(vec![VolumeMount {
            sub_path_expr: Some("$(NOPE)".into()),
            ..vm("scratch", "/x")
        }]))
        .unwrap_err();
    assert_eq!(err.to_string(), "missing value for NOPE");

    // Teardown unmounts the binds first, so hostPath data survives.
    teardown(dir.path()).unwrap();
    assert!(!subpaths.exists());
    assert!(!scratch.exists());
    assert_eq!(
        fs::read_to_string(host.path().join("keep")).unwrap(),
        "host data"
    );
    assert!(host.path().join("web").is_dir());
}

#[tokio::test]
async fn fs_group_owns_volume_contents() {
    let dir = PodDir::new();
    let src = MapSource::default();
    src.put_config_map("cfg", &[("k", "v")], &[]);
    // As root any group will do; otherwise our own, which we may always set.
    let gid: u32 = if is_root() {
        4321
    } else {
        nix::unistd::getegid().as_raw()
    };
    let cm = Volume {
        config_map: Some(ConfigMapVolumeSource {
            name: "cfg".into(),
            default_mode: Some(0o400),
            ..Default::default()
        }),
        ..vol("cfg")
    };
    let scratch = Volume {
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..vol("scratch")
    };
    let mut p = pod(vec![cm, scratch]);
    if let Some(spec) = p.spec.as_mut() {
        spec.security_context = Some(k8s_openapi::api::core::v1::PodSecurityContext {
            fs_group: Some(i64::from(gid)),
            ..Default::default()
        });
    }
    let vols = PodVolumes::prepare(&p, dir.path(), &src).await.unwrap();
    let cfg = vols.host_path("cfg").unwrap().to_path_buf();
    let scratch = vols.host_path("scratch").unwrap().to_path_buf();
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(cfg.join("k")).unwrap();
    assert_eq!(meta.gid(), gid);
    assert_eq!(meta.mode() & 0o7777, 0o440, "group-readable under fsGroup");
    let meta = fs::metadata(&scratch).unwrap();
    assert_eq!(meta.gid(), gid);
    assert_eq!(meta.mode() & 0o7777, 0o2777);

    // Nothing changed: nothing rewritten.
    let before = fs::read_link(cfg.join("..data")).unwrap();
    PodVolumes::prepare(&p, dir.path(), &src).await.unwrap();
    assert_eq!(fs::read_link(cfg.join("..data")).unwrap(), before);
    assert_eq!(fs::metadata(&scratch).unwrap().mode() & 0o7777, 0o2777);
}
