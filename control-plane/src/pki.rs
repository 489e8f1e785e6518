//! The cluster's certificates: a CA, the API server's serving certificate, the admin's client
//! certificate and each node agent's client certificate, created once by `skiff init` and reused
//! on every start. Clients authenticate with certificates signed by the CA (CN = user, O =
//! groups), as kubeadm clusters do.

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
    /// The CA's private key, needed to sign certificates after the first start.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    /// A node agent's client certificate (CN `system:node:<node>`), one per node name so a
    /// renamed node gets its own identity.
    pub fn node_cert(&self, node: &str) -> PathBuf {
        self.dir.join(format!("kubelet-{node}.crt"))
    }
    /// The key of [`PkiPaths::node_cert`].
    pub fn node_key(&self, node: &str) -> PathBuf {
        self.dir.join(format!("kubelet-{node}.key"))
    }
    /// The service-account token signing key (ECDSA P-256, PKCS#8), as kubeadm's `sa.key`.
    pub fn sa_key(&self) -> PathBuf {
        self.dir.join("sa.key")
    }
    /// The public half of [`PkiPaths::sa_key`] (SPKI PEM), for whoever verifies tokens.
    pub fn sa_pub(&self) -> PathBuf {
        self.dir.join("sa.pub")
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
/// A further control-plane member starts from a copy of the first one's CA (`ca.crt`,
/// `ca.key`) and service-account key (`sa.key`, `sa.pub`), as kubeadm's shared certificates,
/// and signs its own serving certificate for its own addresses with that CA.
pub fn ensure(paths: &PkiPaths, sans: &[String]) -> Result<(), PkiError> {
    ensure_service_account_key(paths)?;
    let sans = sans
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
    let ca = ensure_ca(paths)?;
    let mut server = CertificateParams::default();
    server
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    server.subject_alt_names = sans;
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    validity(&mut server, 1);
    ca.issue(server, &paths.server_key(), &paths.server_cert())?;
    ca.issue(
        client_params("kubernetes-admin", "system:masters"),
        &paths.admin_key(),
        &paths.admin_cert(),
    )
}

/// The cluster CA, able to sign.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    /// Signs `params` into `cert_path` with a new key in `key_path`, unless both exist. The key
    /// goes first, so a half-written pair is made again rather than trusted.
    fn issue(
        &self,
        params: CertificateParams,
        key_path: &Path,
        cert_path: &Path,
    ) -> Result<(), PkiError> {
        if key_path.exists() && cert_path.exists() {
            return Ok(());
        }
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        write(key_path, &key.serialize_pem(), true)?;
        write(cert_path, &cert.pem(), false)
    }
}

/// Loads the CA, or creates it when there is none. `ca.crt` is written last, so a CA whose
/// certificate is missing was never finished and is made anew.
fn ensure_ca(paths: &PkiPaths) -> Result<Ca, PkiError> {
    if paths.ca_cert().exists() {
        return load_ca(paths);
    }
    let key = KeyPair::generate()?;
    let cert = ca_params().self_signed(&key)?;
    write(&paths.ca_key(), &key.serialize_pem(), true)?;
    write(&paths.ca_cert(), &cert.pem(), false)?;
    Ok(Ca { cert, key })
}

/// The existing CA; a certificate without its key cannot sign and is an error.
fn load_ca(paths: &PkiPaths) -> Result<Ca, PkiError> {
    if !paths.ca_cert().exists() {
        return Err(PkiError::Invalid(format!(
            "no cluster CA in {}: run skiff init first",
            paths.dir.display()
        )));
    }
    if !paths.ca_key().exists() {
        return Err(PkiError::Invalid(format!(
            "{} exists without {}: copy both from the first control-plane member",
            paths.ca_cert().display(),
            paths.ca_key().display()
        )));
    }
    let key = KeyPair::from_pem(&read(&paths.ca_key())?)?;
    // Signing needs only the issuer's name and key, so the CA is rebuilt from its parameters.
    let cert = ca_params().self_signed(&key)?;
    Ok(Ca { cert, key })
}

/// Creates the key pair that signs service-account tokens (`sa.key`, `sa.pub`) unless it
/// exists. Tokens are ES256 JWTs, which ring both signs and verifies.
pub fn ensure_service_account_key(paths: &PkiPaths) -> Result<(), PkiError> {
    if paths.sa_key().exists() && paths.sa_pub().exists() {
        return Ok(());
    }
    if paths.sa_key().exists() {
        // The public half is derived again rather than a new pair made, so tokens already
        // issued stay valid.
        let key = KeyPair::from_pem(&read(&paths.sa_key())?)?;
        return write(&paths.sa_pub(), &key.public_key_pem(), false);
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    write(&paths.sa_pub(), &key.public_key_pem(), false)?;
    write(&paths.sa_key(), &key.serialize_pem(), true)
}

/// The CA's subject and constraints. A certificate signed later must name the same issuer, so
/// the CA is rebuilt from these and its stored key rather than parsed back from its PEM.
fn ca_params() -> CertificateParams {
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "skiff-ca");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca, 10);
    ca
}

/// A client certificate's parameters: the API server reads the user from the CN and the
/// groups from the O.
fn client_params(user: &str, group: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, user);
    params
        .distinguished_name
        .push(DnType::OrganizationName, group);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut params, 1);
    params
}

/// Creates the client certificate node `node`'s agent authenticates with (CN
/// `system:node:<node>`, O `system:nodes`, as kubeadm issues for kubelets) unless it exists.
/// The CA must exist ([`ensure`]).
pub fn ensure_node(paths: &PkiPaths, node: &str) -> Result<(), PkiError> {
    if !is_dns_name(node) {
        return Err(PkiError::Invalid(format!(
            "node name {node:?} must be a DNS name (letters, digits, '-' and '.')"
        )));
    }
    load_ca(paths)?.issue(
        client_params(&format!("system:node:{node}"), "system:nodes"),
        &paths.node_key(node),
        &paths.node_cert(node),
    )
}

/// Writes a kubeconfig that reaches `server` as the admin, with everything inline.
pub fn write_admin_kubeconfig(paths: &PkiPaths, server: &str, out: &Path) -> Result<(), PkiError> {
    write_kubeconfig(
        paths,
        server,
        "kubernetes-admin",
        &paths.admin_cert(),
        &paths.admin_key(),
        out,
    )
}

/// Writes the kubeconfig node `node`'s agent uses (`kubelet.conf`, as kubeadm names it): the
/// node's own identity, so RBAC limits it to what a kubelet needs. See [`ensure_node`].
pub fn write_node_kubeconfig(
    paths: &PkiPaths,
    node: &str,
    server: &str,
    out: &Path,
) -> Result<(), PkiError> {
    write_kubeconfig(
        paths,
        server,
        &format!("system:node:{node}"),
        &paths.node_cert(node),
        &paths.node_key(node),
        out,
    )
}

fn write_kubeconfig(
    paths: &PkiPaths,
    server: &str,
    user: &str,
    cert: &Path,
    key: &Path,
    out: &Path,
) -> Result<(), PkiError> {
    let b64 = |p: &Path| -> Result<String, PkiError> {
        Ok(base64::engine::general_purpose::STANDARD.encode(read(p)?))
    };
    let text = format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: skiff\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
         users:\n\
         - name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n\
         contexts:\n\
         - name: {user}@skiff\n  context:\n    cluster: skiff\n    user: {user}\n\
         current-context: {user}@skiff\n\
         preferences: {{}}\n",
        ca = b64(&paths.ca_cert())?,
        cert = b64(cert)?,
        key = b64(key)?,
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
        let sa = read(&paths.sa_key()).unwrap();
        assert!(read(&paths.sa_pub()).unwrap().contains("PUBLIC KEY"));
        ensure(&paths, &["127.0.0.1".into()]).unwrap();
        assert_eq!(
            read(&paths.ca_cert()).unwrap(),
            ca,
            "an existing CA is kept"
        );
        assert_eq!(
            read(&paths.sa_key()).unwrap(),
            sa,
            "the signing key is kept"
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

    #[test]
    fn a_further_member_signs_its_own_serving_certificate_with_the_copied_ca() {
        let first = tempfile::tempdir().unwrap();
        let first = PkiPaths::new(first.path());
        ensure(&first, &["127.0.0.1".into()]).unwrap();
        let second = tempfile::tempdir().unwrap();
        let second = PkiPaths::new(second.path());
        std::fs::create_dir_all(&second.dir).unwrap();
        std::fs::copy(first.ca_cert(), second.ca_cert()).unwrap();
        assert!(
            matches!(ensure(&second, &["127.0.0.2".into()]), Err(PkiError::Invalid(e)) if e.contains("ca.key")),
            "a CA certificate without its key cannot sign"
        );
        for (from, to) in [
            (first.ca_key(), second.ca_key()),
            (first.sa_key(), second.sa_key()),
            (first.sa_pub(), second.sa_pub()),
        ] {
            std::fs::copy(from, to).unwrap();
        }
        ensure(&second, &["127.0.0.2".into()]).unwrap();
        let read_both =
            |f: fn(&PkiPaths) -> PathBuf| (read(&f(&first)).unwrap(), read(&f(&second)).unwrap());
        let (a, b) = read_both(PkiPaths::ca_cert);
        assert_eq!(a, b, "the copied CA is kept");
        let (a, b) = read_both(PkiPaths::sa_key);
        assert_eq!(a, b, "tokens signed on one member verify on another");
        let (a, b) = read_both(PkiPaths::server_cert);
        assert_ne!(a, b, "each member has its own serving certificate");
    }

    #[test]
    fn node_certificates_are_per_node_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PkiPaths::new(dir.path());
        assert!(
            matches!(ensure_node(&paths, "n1"), Err(PkiError::Invalid(_))),
            "signing needs the CA"
        );
        ensure(&paths, &["127.0.0.1".into()]).unwrap();
        ensure_node(&paths, "n1").unwrap();
        let cert = read(&paths.node_cert("n1")).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        ensure_node(&paths, "n1").unwrap();
        assert_eq!(read(&paths.node_cert("n1")).unwrap(), cert, "kept");
        ensure_node(&paths, "n2").unwrap();
        assert_ne!(read(&paths.node_cert("n2")).unwrap(), cert);
        assert!(matches!(
            ensure_node(&paths, "../n"),
            Err(PkiError::Invalid(_))
        ));
        let conf = dir.path().join("kubelet.conf");
        write_node_kubeconfig(&paths, "n1", "https://127.0.0.1:6443", &conf).unwrap();
        let text = read(&conf).unwrap();
        assert!(
            text.contains("current-context: system:node:n1@skiff"),
            "{text}"
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(&cert);
        assert!(text.contains(&b64), "the node's own certificate is inline");
    }
}
