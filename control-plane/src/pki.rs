//! The cluster's certificates: a CA, the API server's serving certificate and the admin's client
//! certificate, created once by `skiff init` and reused on every start. Clients authenticate with
//! certificates signed by the CA (CN = user, O = groups), as kubeadm clusters do.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Why certificates could not be created or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0}")]
    Invalid(String),
}

/// Where the PEM files live under `<data-dir>/pki`.
#[derive(Debug, Clone)]
pub struct PkiPaths {
    pub dir: PathBuf,
}

impl PkiPaths {
    pub fn new(data_dir: &Path) -> PkiPaths {
        PkiPaths {
            dir: data_dir.join("pki"),
        }
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("apiserver.crt")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("apiserver.key")
    }
    pub fn admin_cert(&self) -> PathBuf {
        self.dir.join("admin.crt")
    }
    pub fn admin_key(&self) -> PathBuf {
        self.dir.join("admin.key")
    }
}

fn write(path: &Path, data: &str, secret: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(io)?;
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// Whether `name` can stand in a certificate as a DNS name (letters, digits, '-' and '.').
pub fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

/// Reads a file the PKI wrote.
pub fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn validity(params: &mut CertificateParams, years: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365 * years);
}

/// Creates the CA, serving and admin certificates unless they exist. The serving certificate
/// names every address in `sans` (IPs and DNS names), since clients check SANs, not the CN.
pub fn ensure(paths: &PkiPaths, sans: &[String]) -> Result<(), PkiError> {
    if paths.ca_cert().exists() && paths.server_cert().exists() && paths.admin_cert().exists() {
        return Ok(());
    }
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "skiff-ca");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca, 10);
    let ca_cert = ca.self_signed(&ca_key)?;

    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::default();
    server
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    server.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) if is_dns_name(s) => s
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|_| PkiError::Invalid(format!("{s:?} is not an IP or DNS name"))),
            Err(_) => Err(PkiError::Invalid(format!("{s:?} is not an IP or DNS name"))),
        })
        .collect::<Result<_, _>>()?;
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    validity(&mut server, 1);
    let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key)?;

    let admin_key = KeyPair::generate()?;
    let mut admin = CertificateParams::default();
    admin
        .distinguished_name
        .push(DnType::CommonName, "kubernetes-admin");
    admin
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    admin.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut admin, 1);
    let admin_cert = admin.signed_by(&admin_key, &ca_cert, &ca_key)?;

    write(&paths.dir.join("ca.key"), &ca_key.serialize_pem(), true)?;
    write(&paths.server_key(), &server_key.serialize_pem(), true)?;
    write(&paths.server_cert(), &server_cert.pem(), false)?;
    write(&paths.admin_key(), &admin_key.serialize_pem(), true)?;
    write(&paths.admin_cert(), &admin_cert.pem(), false)?;
    // Last, so a half-finished run is redone rather than trusted.
    write(&paths.ca_cert(), &ca_cert.pem(), false)?;
    Ok(())
}

/// Writes a kubeconfig that reaches `server` as the admin, with everything inline.
pub fn write_admin_kubeconfig(paths: &PkiPaths, server: &str, out: &Path) -> Result<(), PkiError> {
    let b64 = |p: &Path| -> Result<String, PkiError> {
        Ok(base64::engine::general_purpose::STANDARD.encode(read(p)?))
    };
    let text = format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: skiff\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
         users:\n\
         - name: kubernetes-admin\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n\
         contexts:\n\
         - name: kubernetes-admin@skiff\n  context:\n    cluster: skiff\n    user: kubernetes-admin\n\
         current-context: kubernetes-admin@skiff\n\
         preferences: {{}}\n",
        ca = b64(&paths.ca_cert())?,
        cert = b64(&paths.admin_cert())?,
        key = b64(&paths.admin_key())?,
    );
    write(out, &text, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_and_writes_a_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PkiPaths::new(dir.path());
        ensure(&paths, &["127.0.0.1".into(), "localhost".into()]).unwrap();
        let ca = read(&paths.ca_cert()).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        ensure(&paths, &["127.0.0.1".into()]).unwrap();
        assert_eq!(
            read(&paths.ca_cert()).unwrap(),
            ca,
            "an existing CA is kept"
        );
        let conf = dir.path().join("admin.conf");
        write_admin_kubeconfig(&paths, "https://127.0.0.1:6443", &conf).unwrap();
        let text = read(&conf).unwrap();
        assert!(text.contains("server: https://127.0.0.1:6443"));
        assert!(text.contains("current-context: kubernetes-admin@skiff"));
        assert!(matches!(
            ensure(
                &PkiPaths::new(&dir.path().join("x")),
                &["not a name!".into()]
            ),
            Err(PkiError::Invalid(_))
        ));
    }
}
