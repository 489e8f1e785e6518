//! Image references: parsed with oci-client's `Reference` (so `busybox` means
//! `docker.io/library/busybox:latest`, as everywhere else), with errors that say what is wrong.

use oci_client::Reference;

use super::error::ImageError;

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
    let parsed = Reference::try_from(reference).map_err(|e| {
        invalid(format!(
            "{e} (expected [registry/]repository[:tag][@sha256:digest], e.g. docker.io/library/busybox:1.36)"
        ))
    })?;
    if let Some(d) = parsed.digest() {
        if !d.starts_with("sha256:") {
            return Err(invalid(format!(
                "digest {d} uses an algorithm other than sha256, which the store does not support"
            )));
        }
    }
    Ok(parsed)
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
