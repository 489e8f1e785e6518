//! The node agent's image store through `skiff image ...`: pulls from a real registry
//! (Debian's docker-registry on 127.0.0.1) of an image made from Debian's static busybox,
//! basic auth, clear errors, layer sharing, whiteouts, and imports of OCI layout and
//! `docker save` archives with no registry at all.

mod common;

use common::cluster::*;
use common::images::*;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

fn layer_dir(root: &Path, diff_id: &str) -> std::path::PathBuf {
    root.join("layers/sha256")
        .join(diff_id.trim_start_matches("sha256:"))
}

fn check_busybox_layer(root: &Path, image: &TestImage) {
    let layer = layer_dir(root, &image.diff_ids[0]);
    let bin = layer.join("bin/busybox");
    let m = fs::metadata(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    assert_eq!(m.len(), fs::metadata(busybox_path()).unwrap().len());
    assert_eq!(m.permissions().mode() & 0o777, 0o755);
    assert_eq!(m.mtime(), 1_700_000_000);
    assert_eq!(
        fs::read_link(layer.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert!(fs::read_to_string(layer.join("etc/passwd"))
        .unwrap()
        .starts_with("root:x:0:0:"));
    let tmp = fs::metadata(layer.join("tmp")).unwrap();
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
}

#[test]
fn pull_by_tag_and_by_digest_then_list_and_remove() {
    let name = "pull_by_tag_and_by_digest_then_list_and_remove";
    if !require(name, false, &["docker-registry", "busybox"]) {
        return;
    }
    let reg = Registry::start(name);
    let image = TestImage::new(vec![busybox_layer()]);
    reg.push("skiff/busybox", "v1", &image);
    let dir = TestDir::new(name);
    let root = dir.path().join("images");

    let by_tag = reg.reference("skiff/busybox", "v1");
    let out = skiff_image(&root, &["pull", &by_tag]);
    let stdout = check_ok("pull by tag", &out);
    assert_eq!(stdout.trim(), format!("{by_tag} {}", image.manifest.digest));
    let progress = stderr_str(&out);
    assert!(
        progress.contains("downloading 0 B")
            && progress.contains("downloaded")
            && progress.contains("unpacked"),
        "progress: {progress}"
    );
    check_busybox_layer(&root, &image);
    let blobs = entries(&root, "blobs/sha256");
    for b in [&image.manifest, &image.config, &image.layers[0]] {
        assert!(
            blobs.contains(&b.hex().to_string()),
            "{} not in {blobs:?}",
            b.digest
        );
    }
    assert_eq!(blobs.len(), 3);

    // By digest: same content, nothing downloaded again.
    let by_digest = format!("{}/skiff/busybox@{}", reg.addr, image.manifest.digest);
    let out = skiff_image(&root, &["pull", &by_digest]);
    check_ok("pull by digest", &out);
    assert!(
        stderr_str(&out).contains("already present"),
        "{}",
        describe(&out)
    );
    assert_eq!(reg.blob_fetches(&image.layers[0].digest), 1);

    let ls = check_ok("image ls", &skiff_image(&root, &["ls"]));
    assert!(
        ls.lines().any(|l| l.starts_with(&format!("{by_tag} "))),
        "{ls}"
    );
    assert!(
        ls.lines().any(|l| l.starts_with(&format!("{by_digest} "))),
        "{ls}"
    );
    assert!(ls.contains(&image.manifest.digest[..19]), "{ls}");

    // Removing one reference keeps the blobs the other still needs.
    let out = check_ok("rm by tag", &skiff_image(&root, &["rm", &by_tag]));
    assert!(out.contains(&format!("removed {by_tag}")), "{out}");
    assert_eq!(entries(&root, "blobs/sha256").len(), 3);
    assert_eq!(entries(&root, "layers/sha256").len(), 1);
    let ls = check_ok("image ls", &skiff_image(&root, &["ls"]));
    assert!(!ls.contains(&by_tag), "{ls}");

    // Removing the last one frees everything.
    check_ok("rm by digest", &skiff_image(&root, &["rm", &by_digest]));
    assert_eq!(entries(&root, "blobs/sha256"), Vec::<String>::new());
    assert_eq!(entries(&root, "layers/sha256"), Vec::<String>::new());
    let ls = check_ok("image ls", &skiff_image(&root, &["ls"]));
    assert_eq!(ls.lines().count(), 1, "only the header: {ls}");

    let err = check_fails("rm again", &skiff_image(&root, &["rm", &by_tag]));
    assert!(err.contains("is not in the store"), "{err}");
}

#[test]
fn basic_auth_pull_needs_the_right_credentials() {
    let name = "basic_auth_pull_needs_the_right_credentials";
    if !require(name, false, &["docker-registry", "busybox", "htpasswd"]) {
        return;
    }
    let reg = Registry::start_with_basic_auth(name, "skiff", "s3cret-pw");
    let image = TestImage::new(vec![busybox_layer()]);
    reg.push("private/busybox", "v1", &image);
    let dir = TestDir::new(name);
    let root = dir.path().join("images");
    let reference = reg.reference("private/busybox", "v1");

    let err = check_fails("anonymous pull", &skiff_image(&root, &["pull", &reference]));
    assert!(
        err.contains("requires authentication") && err.contains("--username/--password"),
        "{err}"
    );
    let err = check_fails(
        "pull with a wrong password",
        &skiff_image(
            &root,
            &[
                "pull",
                &reference,
                "--username",
                "skiff",
                "--password",
                "wrong",
            ],
        ),
    );
    assert!(
        err.contains("refused the credentials") && err.contains("--username/--password"),
        "{err}"
    );
    assert_eq!(entries(&root, "blobs/sha256"), Vec::<String>::new());

    let out = skiff_image(
        &root,
        &[
            "pull",
            &reference,
            "--username",
            "skiff",
            "--password",
            "s3cret-pw",
        ],
    );
    check_ok("pull with credentials", &out);
    check_busybox_layer(&root, &image);
}

#[test]
fn bad_references_and_missing_images_fail_clearly() {
    let name = "bad_references_and_missing_images_fail_clearly";
    if !require(name, false, &["docker-registry", "busybox"]) {
        return;
    }
    let reg = Registry::start(name);
    let image = TestImage::new(vec![busybox_layer()]);
    reg.push("skiff/busybox", "v1", &image);
    let dir = TestDir::new(name);
    let root = dir.path().join("images");

    let missing_tag = reg.reference("skiff/busybox", "no-such-tag");
    let err = check_fails(
        "pull of a missing tag",
        &skiff_image(&root, &["pull", &missing_tag]),
    );
    assert!(
        err.contains("was not found") && err.contains(&missing_tag),
        "{err}"
    );

    let missing_repo = reg.reference("skiff/nothing-here", "v1");
    let err = check_fails(
        "pull of a missing repository",
        &skiff_image(&root, &["pull", &missing_repo]),
    );
    assert!(err.contains("was not found"), "{err}");

    for bad in [
        format!("{}/Skiff/BusyBox:v1", reg.addr),
        format!("{}/skiff/busybox:", reg.addr),
        format!("{}/skiff/busybox@sha256:1234", reg.addr),
        "has space:v1".to_string(),
    ] {
        let err = check_fails(
            &format!("pull {bad:?}"),
            &skiff_image(&root, &["pull", &bad]),
        );
        assert!(err.contains("invalid image reference"), "{bad}: {err}");
    }

    // Nothing listens on this port.
    let port = alloc_port(std::net::Ipv4Addr::LOCALHOST);
    let nowhere = format!("127.0.0.1:{port}/skiff/busybox:v1");
    let err = check_fails(
        "pull from nowhere",
        &skiff_image(&root, &["pull", &nowhere]),
    );
    assert!(err.contains("cannot reach registry"), "{err}");

    assert_eq!(entries(&root, "blobs/sha256"), Vec::<String>::new());
    assert_eq!(entries(&root, "tmp"), Vec::<String>::new());
}

#[test]
fn second_image_reuses_the_shared_layer_and_unpacks_whiteouts() {
    let name = "second_image_reuses_the_shared_layer_and_unpacks_whiteouts";
    if !require(name, true, &["docker-registry", "busybox"]) {
        return;
    }
    let reg = Registry::start(name);
    let base = TestImage::new(vec![busybox_layer()]);
    let app = TestImage::new(vec![busybox_layer(), whiteout_layer()]);
    assert_eq!(base.layers[0].digest, app.layers[0].digest);
    reg.push("skiff/base", "v1", &base);
    reg.push("skiff/app", "v1", &app);
    let dir = TestDir::new(name);
    let root = dir.path().join("images");

    check_ok(
        "pull base",
        &skiff_image(&root, &["pull", &reg.reference("skiff/base", "v1")]),
    );
    let out = skiff_image(&root, &["pull", &reg.reference("skiff/app", "v1")]);
    check_ok("pull app", &out);
    let progress = stderr_str(&out);
    let shared = &base.layers[0].digest[7..19];
    assert!(
        progress.contains(&format!("{shared}: already present"))
            && progress.contains(&format!("{shared}: already unpacked")),
        "{progress}"
    );
    assert_eq!(
        reg.blob_fetches(&base.layers[0].digest),
        1,
        "shared layer fetched twice"
    );
    assert_eq!(reg.blob_fetches(&app.layers[1].digest), 1);
    assert_eq!(entries(&root, "layers/sha256").len(), 2);

    let top = layer_dir(&root, &app.diff_ids[1]);
    let wh = fs::symlink_metadata(top.join("etc/group")).unwrap();
    assert!(
        wh.file_type().is_char_device(),
        "etc/group is not a whiteout"
    );
    assert_eq!((wh.rdev(), wh.uid(), wh.gid()), (0, 0, 0));
    assert!(!top.join("etc/.wh.group").exists());
    assert_eq!(
        fs::read_to_string(top.join("etc/motd")).unwrap(),
        "hello from layer 2\n"
    );
    assert_eq!(
        xattr::get(top.join("tmp"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert!(!top.join("tmp/.wh..wh..opq").exists());
    assert!(top.join("tmp/new").is_file());
    // The base layer is untouched by the upper one.
    let bottom = layer_dir(&root, &app.diff_ids[0]);
    assert!(bottom.join("etc/group").is_file());
    assert!(bottom.join("tmp/old").is_file());

    // Removing the app keeps the shared layer for base.
    check_ok(
        "rm app",
        &skiff_image(&root, &["rm", &reg.reference("skiff/app", "v1")]),
    );
    assert_eq!(
        entries(&root, "layers/sha256"),
        vec![base.diff_ids[0][7..].to_string()]
    );
}

#[test]
fn pull_resolves_an_index_to_this_platform() {
    let name = "pull_resolves_an_index_to_this_platform";
    if !require(name, false, &["docker-registry", "busybox"]) {
        return;
    }
    let reg = Registry::start(name);
    let native = TestImage::new(vec![busybox_layer()]);
    let other_arch = if host_arch() == "s390x" {
        "riscv64"
    } else {
        "s390x"
    };
    let foreign = TestImage::with_arch(
        vec![LayerTar::default().file("foreign", 0o644, b"x\n").finish()],
        other_arch,
    );
    reg.push("skiff/multi", "native", &native);
    reg.push("skiff/multi", "foreign", &foreign);
    let index = index_of(&[(&foreign, other_arch), (&native, host_arch())]);
    reg.push_raw("skiff/multi", "v1", &[], &index);
    let dir = TestDir::new(name);
    let root = dir.path().join("images");

    let reference = reg.reference("skiff/multi", "v1");
    let out = check_ok("pull index", &skiff_image(&root, &["pull", &reference]));
    assert_eq!(
        out.trim(),
        format!("{reference} {}", native.manifest.digest)
    );
    assert_eq!(reg.blob_fetches(&foreign.layers[0].digest), 0);
    check_busybox_layer(&root, &native);
}

#[test]
fn import_oci_layout_and_docker_save_archives_without_a_registry() {
    let name = "import_oci_layout_and_docker_save_archives_without_a_registry";
    if !require(name, false, &["busybox"]) {
        return;
    }
    let dir = TestDir::new(name);
    let root = dir.path().join("images");
    let image = TestImage::new(vec![busybox_layer()]);
    let oci = dir.path().join("busybox-oci.tar");
    image.write_oci_archive(&oci, "skiff.test/oci/busybox:v1");
    let docker = dir.path().join("busybox-docker.tar");
    image.write_docker_save(&docker, "skiff.test/docker/busybox:v2");

    let out = check_ok(
        "import oci",
        &skiff_image(&root, &["import", oci.to_str().unwrap()]),
    );
    assert_eq!(
        out.trim(),
        format!(
            "imported skiff.test/oci/busybox:v1 {}",
            image.manifest.digest
        )
    );
    let out = check_ok(
        "import docker save",
        &skiff_image(&root, &["import", docker.to_str().unwrap()]),
    );
    assert!(
        out.starts_with("imported skiff.test/docker/busybox:v2 sha256:"),
        "{out}"
    );

    let ls = check_ok("image ls", &skiff_image(&root, &["ls"]));
    assert!(ls.contains("skiff.test/oci/busybox:v1"), "{ls}");
    assert!(ls.contains("skiff.test/docker/busybox:v2"), "{ls}");
    // Same uncompressed layer (gzip in one, plain in the other): unpacked once.
    assert_eq!(
        entries(&root, "layers/sha256"),
        vec![image.diff_ids[0][7..].to_string()]
    );
    check_busybox_layer(&root, &image);
    // The plain docker-save layer is stored under its own digest (= the diff id).
    assert!(entries(&root, "blobs/sha256").contains(&image.diff_ids[0][7..].to_string()));

    let junk = dir.path().join("junk.tar");
    fs::write(&junk, b"this is not a tar archive").unwrap();
    let err = check_fails(
        "import junk",
        &skiff_image(&root, &["import", junk.to_str().unwrap()]),
    );
    assert!(err.contains("not an image archive"), "{err}");
    assert_eq!(entries(&root, "tmp"), Vec::<String>::new());
}

#[test]
fn malicious_layer_is_rejected_and_writes_nothing_outside() {
    let name = "malicious_layer_is_rejected_and_writes_nothing_outside";
    if !require(name, false, &[]) {
        return;
    }
    let dir = TestDir::new(name);
    let root = dir.path().join("images");
    let image = TestImage::new(vec![escaping_layer()]);
    let archive = dir.path().join("evil.tar");
    image.write_oci_archive(&archive, "skiff.test/evil:v1");

    let err = check_fails(
        "import evil",
        &skiff_image(&root, &["import", archive.to_str().unwrap()]),
    );
    assert!(
        err.contains("escapes the layer root") && err.contains("../escape"),
        "{err}"
    );
    let escaped: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "escape"))
        .collect();
    assert!(escaped.is_empty(), "written outside the layer: {escaped:?}");
    assert_eq!(entries(&root, "layers/sha256"), Vec::<String>::new());
    assert_eq!(entries(&root, "tmp"), Vec::<String>::new());
    let ls = check_ok("image ls", &skiff_image(&root, &["ls"]));
    assert!(!ls.contains("evil"), "{ls}");
}

#[test]
fn concurrent_pulls_of_one_image_share_the_store_safely() {
    let name = "concurrent_pulls_of_one_image_share_the_store_safely";
    if !require(name, false, &["docker-registry", "busybox"]) {
        return;
    }
    let reg = Registry::start(name);
    let image = TestImage::new(vec![busybox_layer()]);
    reg.push("skiff/busybox", "v1", &image);
    reg.push("skiff/busybox", "v2", &image);
    let dir = TestDir::new(name);
    let root = dir.path().join("images");

    // Four processes at once, two per tag, into one store.
    let pulls: Vec<_> = ["v1", "v2", "v1", "v2"]
        .iter()
        .map(|tag| {
            let (root, reference) = (root.clone(), reg.reference("skiff/busybox", tag));
            std::thread::spawn(move || skiff_image(&root, &["pull", &reference]))
        })
        .collect();
    for p in pulls {
        check_ok("concurrent pull", &p.join().unwrap());
    }
    assert_eq!(
        entries(&root, "layers/sha256"),
        vec![image.diff_ids[0][7..].to_string()]
    );
    assert_eq!(entries(&root, "blobs/sha256").len(), 3);
    assert_eq!(entries(&root, "tmp"), Vec::<String>::new());
    check_busybox_layer(&root, &image);
    let ls = check_ok("image ls", &skiff_image(&root, &["ls"]));
    assert_eq!(ls.lines().count(), 3, "header and two tags: {ls}");
}
