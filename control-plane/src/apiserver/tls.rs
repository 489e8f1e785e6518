//! rustls setup: the serving certificate, and client certificates verified against the cluster
//! CA but not required, so anonymous callers reach the server and get a proper 401.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::ApiServerError;
use crate::pki::{self, PkiPaths};

fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, ApiServerError> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| ApiServerError::Tls(format!("reading certificates: {e}")))
}

pub fn server_config(paths: &PkiPaths) -> Result<ServerConfig, ApiServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in certs(&pki::read(&paths.ca_cert())?)? {
        roots
            .add(ca)
            .map_err(|e| ApiServerError::Tls(format!("cluster CA: {e}")))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| ApiServerError::Tls(e.to_string()))?;
    let key_pem = pki::read(&paths.server_key())?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| ApiServerError::Tls(format!("server key: {e}")))?
        .ok_or_else(|| ApiServerError::Tls("server key file holds no key".into()))?;
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiServerError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&pki::read(&paths.server_cert())?)?, key)
        .map_err(|e| ApiServerError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}
