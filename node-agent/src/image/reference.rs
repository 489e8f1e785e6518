//! Image references, parsed by docker/distribution's grammar and normalised as Docker does
//! (`busybox` means `docker.io/library/busybox:latest`), with errors that say what is wrong.
//!
//! oci-client's own `Reference` parser compiles a regular expression whose Unicode `\w{0,127}`
//! costs about 20 MB to build and 7 MB to keep, more than the rest of the node agent; this
//! parser checks the same grammar by hand and builds the same `Reference`.

use oci_client::Reference;

use super::error::ImageError;

/// Repository names longer than this are refused, as the distribution spec does.
const NAME_MAX: usize = 255;

/// Parses and normalises a reference; the normalised form (`Reference::whole`) is the key of
/// the store's index.
pub fn parse(reference: &str) -> Result<Reference, ImageError> {
    let invalid = |reason: String| ImageError::InvalidReference {
        reference: reference.to_string(),
        reason,
    };
    if reference.trim() != reference {
        return Err(invalid("it has leading or trailing white space".into()));
    }
    let hint = "(expected [registry/]repository[:tag][@sha256:digest], e.g. docker.io/library/busybox:1.36)";
    let parts = split(reference).map_err(|why| invalid(format!("{why} {hint}")))?;
    if let Some(d) = &parts.digest {
        if !d.starts_with("sha256:") {
            return Err(invalid(format!(
                "digest {d} uses an algorithm other than sha256, which the store does not support"
            )));
        }
    }
    let (registry, repository) = split_domain(parts.name);
    if repository.len() > NAME_MAX {
        return Err(invalid(format!(
            "repository name must not be more than {NAME_MAX} characters"
        )));
    }
    Ok(match (parts.tag, parts.digest) {
        (Some(tag), Some(digest)) => {
            Reference::with_tag_and_digest(registry, repository, tag, digest)
        }
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest),
        (tag, None) => {
            Reference::with_tag(registry, repository, tag.unwrap_or_else(|| "latest".into()))
        }
    })
}

/// A reference's name, tag and digest, checked against the grammar.
struct Parts<'a> {
    name: &'a str,
    tag: Option<String>,
    digest: Option<String>,
}

fn split(reference: &str) -> Result<Parts<'_>, &'static str> {
    if reference.is_empty() {
        return Err("repository name must have at least one component");
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, d)) => {
            check_digest(d)?;
            (rest, Some(d.to_string()))
        }
        None => (reference, None),
    };
    // A tag follows the last `:` after the last `/`; an earlier `:` is a registry's port.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let tag = &rest[last_slash + i + 1..];
            check_tag(tag)?;
            (&rest[..last_slash + i], Some(tag.to_string()))
        }
        None => (rest, None),
    };
    let mut components = name.split('/');
    let first = components.next().unwrap_or_default();
    let rest_valid = name.contains('/') && components.clone().all(is_path_component);
    let valid = components.all(is_path_component)
        && (is_path_component(first) || (rest_valid && is_domain(first)));
    if !valid {
        return Err(if name.chars().any(|c| c.is_ascii_uppercase()) {
            "repository name must be lowercase"
        } else {
            "invalid reference format"
        });
    }
    Ok(Parts { name, tag, digest })
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or any number of `-`.
fn is_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &s[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
    true
}

/// Host name labels joined by `.`, with an optional `:port`.
fn is_domain(s: &str) -> bool {
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let label = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    };
    host.split('.').all(label)
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), &'static str> {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|c| word(*c) || *c == b'.' || *c == b'-');
    ok.then_some(()).ok_or("invalid tag format")
}

/// `algorithm:hex`, with the hex as long as the algorithm's digest.
fn check_digest(d: &str) -> Result<(), &'static str> {
    let Some((algorithm, hex)) = d.split_once(':') else {
        return Err("invalid checksum digest format");
    };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        let b = part.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    });
    if !algorithm_ok || hex.len() < 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err("invalid checksum digest format");
    }
    let want = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm"),
    };
    if hex.len() != want {
        return Err("invalid checksum digest length");
    }
    Ok(())
}

/// Docker's normalisation: a first component without `.` or `:` (and not `localhost`) is part
/// of a Docker Hub repository, and official images live under `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    if domain == "index.docker.io" {
        domain = "docker.io".into();
    }
    if domain == "docker.io" && !remainder.contains('/') {
        remainder = format!("library/{remainder}");
    }
    (domain, remainder)
}

/// Whether `registry` (host[:port]) is on the loopback interface. Such registries are spoken to
/// over plain HTTP, as Docker treats them as insecure registries by default.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_docker() {
        assert_eq!(
            parse("busybox").unwrap().whole(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            parse("127.0.0.1:5000/a/b:v1").unwrap().whole(),
            "127.0.0.1:5000/a/b:v1"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let r = parse(&format!("quay.io/x/y@{d}")).unwrap();
        assert_eq!(r.digest(), Some(d.as_str()));
        assert_eq!(r.tag(), None);
    }

    #[test]
    fn agrees_with_the_distribution_grammar() {
        let d = format!("sha256:{}", "0123456789abcdef".repeat(4));
        for (given, whole) in [
            ("busybox:1.36", "docker.io/library/busybox:1.36".to_string()),
            ("index.docker.io/x", "docker.io/library/x:latest".into()),
            ("library/busybox", "docker.io/library/busybox:latest".into()),
            ("localhost/a", "localhost/a:latest".into()),
            (
                "localhost:5000/a/b-c__d.e:V_1.0-x",
                "localhost:5000/a/b-c__d.e:V_1.0-x".into(),
            ),
            ("Example.com/a", "Example.com/a:latest".into()),
            ("a---b/c", "docker.io/a---b/c:latest".into()),
            (&format!("r.io/a:t@{d}"), format!("r.io/a:t@{d}")),
        ] {
            assert_eq!(parse(given).unwrap().whole(), whole, "{given}");
        }
        for bad in [
            "a..b",
            "a/-b",
            "a_",
            "r.io:/a",
            "-r.io/a",
            "a:t:u",
            "a/B",
            "a@md5:0123456789abcdef0123456789abcdef",
            &format!("a:{}", "t".repeat(129)),
            &format!("a@sha256:{}", "g".repeat(64)),
            &"a/".repeat(130),
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matches_oci_clients_parser() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let names = [
            "busybox",
            "a/b/c",
            "a.b/c",
            "a:1/b",
            "a.b:99/c/d",
            "localhost/x",
            "a__b",
            "a___b",
            "a-b",
            "a--b",
            "a._b",
            "0/1",
            "x.y.z/w",
            "A/b",
            "a/B",
            "a..b/c",
            "-a/b",
            "a-/b",
            "a.b-/c",
            "index.docker.io/a/b",
            "a/b/",
            "/a",
            "a//b",
            "a:b:c/d",
        ];
        let suffixes = [
            String::new(),
            ":t".into(),
            ":_T.1-x".into(),
            ":.t".into(),
            ":".into(),
            format!("@{d}"),
            format!(":v1@{d}"),
            "@sha256:abc".into(),
        ];
        for n in names {
            for s in &suffixes {
                let r = format!("{n}{s}");
                let ours = parse(&r).map(|x| x.whole()).ok();
                let theirs = Reference::try_from(r.as_str()).map(|x| x.whole()).ok();
                assert_eq!(ours, theirs, "{r}");
            }
        }
    }

    #[test]
    fn malformed_references_say_why() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "a b",
            "busybox@sha256:abc",
            " busybox",
            "x:-tag",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("invalid image reference"), "{bad}: {e}");
        }
    }

    #[test]
    fn loopback_registries() {
        for r in [
            "127.0.0.1:5000",
            "127.3.4.5",
            "localhost:80",
            "[::1]:5000",
            "LOCALHOST",
        ] {
            assert!(is_loopback_registry(r), "{r}");
        }
        for r in [
            "docker.io",
            "10.0.0.1:5000",
            "example.com:443",
            "[fe80::1]:5000",
        ] {
            assert!(!is_loopback_registry(r), "{r}");
        }
    }
}
