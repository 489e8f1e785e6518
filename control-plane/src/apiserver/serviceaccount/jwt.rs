//! Service-account JWTs: ES256 (ECDSA P-256, SHA-256) compact JWS, signed and verified with
//! ring. The claims are upstream's: bound tokens (`iss` the API server's issuer, a
//! `kubernetes.io` claim naming the namespace, service account and bound object) and legacy
//! Secret-based tokens (`iss` `kubernetes/serviceaccount`, flat `kubernetes.io/serviceaccount/*`
//! claims, no expiry).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// The issuer of bound tokens, as kubeadm configures `--service-account-issuer`.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The issuer upstream writes into legacy Secret-based tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";
/// How far in the future a token's `nbf`/`iat` may lie (clock skew between servers).
const LEEWAY_SECONDS: i64 = 60;
/// Longest token accepted for parsing; anything longer is not one of ours.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token could not be made or is not valid. Nothing here carries token text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    /// The signing key file is not an ECDSA P-256 PKCS#8 key.
    #[error("service-account key: {0}")]
    Key(String),
    /// The token is not a compact JWS of three base64url parts with JSON header and claims.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names another algorithm or key.
    #[error("token signed with an unsupported algorithm or unknown key")]
    Algorithm,
    /// The signature does not verify with the key.
    #[error("invalid token signature")]
    Signature,
    /// The token's `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// The token's `nbf` or `iat` lies in the future.
    #[error("token is not valid yet")]
    NotYetValid,
    /// The token names another issuer.
    #[error("token issuer is not accepted")]
    Issuer,
    /// None of the token's audiences is one the API server accepts.
    #[error("token audiences are not accepted")]
    Audience,
    /// The claims lack what a service-account token must carry.
    #[error("token claims are incomplete: {0}")]
    Claims(&'static str),
    /// Signing failed (ring's error carries no detail).
    #[error("signing the token failed")]
    Sign,
}

/// An object a bound token names: its name and uid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ObjectRef {
    /// The object's name.
    pub name: String,
    /// The object's uid.
    pub uid: String,
}

/// The private `kubernetes.io` claim of a bound token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KubernetesClaims {
    /// The service account's namespace.
    pub namespace: String,
    /// The service account.
    pub serviceaccount: ObjectRef,
    /// The pod the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    /// The Secret the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    /// The node the token (or its pod) is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
}

/// The claims of a bound service-account token (TokenRequest), as upstream writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Audiences; always an array, as upstream serialises it.
    pub aud: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// The issuer.
    pub iss: String,
    /// Token id, `credential-id` in the user's extra.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The namespace, service account and bound object.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
    /// Not before.
    pub nbf: i64,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub sub: String,
}

/// The claims of a legacy Secret-based token, as upstream's token controller writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyClaims {
    /// Always [`LEGACY_ISSUER`].
    pub iss: String,
    /// The namespace.
    #[serde(rename = "kubernetes.io/serviceaccount/namespace")]
    pub namespace: String,
    /// The Secret holding the token.
    #[serde(rename = "kubernetes.io/serviceaccount/secret.name")]
    pub secret_name: String,
    /// The service account's name.
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.name")]
    pub service_account_name: String,
    /// The service account's uid.
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.uid")]
    pub service_account_uid: String,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub sub: String,
}

/// A verified token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// A bound token from the TokenRequest API.
    Bound(Claims),
    /// A legacy Secret-based token.
    Legacy(LegacyClaims),
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
}

/// The service-account signing key, and the key id (`kid`) tokens carry: base64url of the
/// SHA-256 of the public key's DER, as upstream derives it.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish()
    }
}

/// The DER prefix of a P-256 SubjectPublicKeyInfo: what precedes the 65-byte point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

impl SigningKey {
    /// Loads a PKCS#8 PEM key (`sa.key`).
    pub fn from_pem(pem: &str) -> Result<SigningKey, JwtError> {
        let der = rustls_pemfile::private_key(&mut pem.as_bytes())
            .map_err(|e| JwtError::Key(e.to_string()))?
            .ok_or_else(|| JwtError::Key("no private key in the file".into()))?;
        let rng = SystemRandom::new();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_der(), &rng)
                .map_err(|e| JwtError::Key(format!("not an ECDSA P-256 PKCS#8 key: {e}")))?;
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(pair.public_key().as_ref());
        let kid = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&spki));
        Ok(SigningKey { pair, kid, rng })
    }

    /// Signs `claims` (any serialisable claim set) into a compact JWS.
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, JwtError> {
        let header = Header {
            alg: "ES256".into(),
            kid: Some(self.kid.clone()),
            typ: None,
        };
        let signing_input = format!("{}.{}", encode(&header)?, encode(claims)?);
        let sig = self
            .pair
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| JwtError::Sign)?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(sig.as_ref())
        ))
    }

    /// Checks the token's signature and time and issuer claims; `audiences` are those the API
    /// server accepts (bound tokens must name one). Binding (does the pod still exist?) is the
    /// caller's to check. `now` is seconds since the epoch.
    pub fn verify(
        &self,
        token: &str,
        now: i64,
        audiences: &[String],
    ) -> Result<Verified, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::Malformed("too long"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("not three parts"));
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| JwtError::Malformed("bad base64url"))
        };
        let header: Header = serde_json::from_slice(&decode(h)?)
            .map_err(|_| JwtError::Malformed("header is not JSON"))?;
        if header.alg != "ES256" || header.kid.as_deref().is_some_and(|k| k != self.kid) {
            return Err(JwtError::Algorithm);
        }
        let sig = decode(s)?;
        let signed = &token[..h.len() + 1 + p.len()];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.pair.public_key().as_ref())
            .verify(signed.as_bytes(), &sig)
            .map_err(|_| JwtError::Signature)?;
        let payload: serde_json::Value = serde_json::from_slice(&decode(p)?)
            .map_err(|_| JwtError::Malformed("claims are not JSON"))?;
        match payload.get("iss").and_then(|i| i.as_str()) {
            Some(LEGACY_ISSUER) => {
                let c: LegacyClaims = serde_json::from_value(payload)
                    .map_err(|_| JwtError::Claims("legacy service-account claims"))?;
                check_subject(&c.sub, &c.namespace, &c.service_account_name)?;
                Ok(Verified::Legacy(c))
            }
            Some(ISSUER) => {
                let c = parse_bound(payload)?;
                if c.exp <= now {
                    return Err(JwtError::Expired);
                }
                if c.nbf > now + LEEWAY_SECONDS || c.iat > now + LEEWAY_SECONDS {
                    return Err(JwtError::NotYetValid);
                }
                if !c.aud.iter().any(|a| audiences.contains(a)) {
                    return Err(JwtError::Audience);
                }
                check_subject(
                    &c.sub,
                    &c.kubernetes.namespace,
                    &c.kubernetes.serviceaccount.name,
                )?;
                Ok(Verified::Bound(c))
            }
            _ => Err(JwtError::Issuer),
        }
    }
}

/// The bound claims; `aud` may be a string or an array, as RFC 7519 allows.
fn parse_bound(mut payload: serde_json::Value) -> Result<Claims, JwtError> {
    if let Some(a) = payload
        .get("aud")
        .and_then(|a| a.as_str())
        .map(str::to_string)
    {
        payload["aud"] = serde_json::json!([a]);
    }
    serde_json::from_value(payload).map_err(|_| JwtError::Claims("bound service-account claims"))
}

/// The subject must be the service account the private claims name.
fn check_subject(sub: &str, namespace: &str, name: &str) -> Result<(), JwtError> {
    if namespace.is_empty() || name.is_empty() {
        return Err(JwtError::Claims("namespace or service account missing"));
    }
    if sub != super::username(namespace, name) {
        return Err(JwtError::Claims("sub does not name the service account"));
    }
    Ok(())
}

/// One JWS part: JSON, base64url without padding.
fn encode<T: Serialize + ?Sized>(v: &T) -> Result<String, JwtError> {
    serde_json::to_vec(v)
        .map(|b| URL_SAFE_NO_PAD.encode(b))
        .map_err(|_| JwtError::Sign)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        SigningKey::from_pem(&pair.serialize_pem()).unwrap()
    }

    fn claims(now: i64) -> Claims {
        Claims {
            aud: vec![ISSUER.into()],
            exp: now + 3600,
            iat: now,
            iss: ISSUER.into(),
            jti: Some("j".into()),
            kubernetes: KubernetesClaims {
                namespace: "ns".into(),
                serviceaccount: ObjectRef {
                    name: "sa".into(),
                    uid: "u1".into(),
                },
                pod: Some(ObjectRef {
                    name: "p".into(),
                    uid: "u2".into(),
                }),
                ..Default::default()
            },
            nbf: now,
            sub: "system:serviceaccount:ns:sa".into(),
        }
    }

    fn auds() -> Vec<String> {
        vec![ISSUER.to_string()]
    }

    #[test]
    fn signs_and_verifies_bound_claims() {
        let k = key();
        let now = 1_700_000_000;
        let token = k.sign(&claims(now)).unwrap();
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], k.kid.as_str());
        let payload: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(payload["kubernetes.io"]["pod"]["name"], "p");
        assert_eq!(payload["aud"], serde_json::json!([ISSUER]));
        assert!(payload["kubernetes.io"].get("secret").is_none());
        assert_eq!(
            k.verify(&token, now + 10, &auds()),
            Ok(Verified::Bound(claims(now)))
        );
    }

    #[test]
    fn expiry_time_and_audience_are_checked() {
        let k = key();
        let now = 1_700_000_000;
        let token = k.sign(&claims(now)).unwrap();
        assert_eq!(
            k.verify(&token, now + 3600, &auds()),
            Err(JwtError::Expired)
        );
        assert_eq!(
            k.verify(&token, now - 61, &auds()),
            Err(JwtError::NotYetValid)
        );
        assert!(k.verify(&token, now - 59, &auds()).is_ok(), "clock skew");
        assert_eq!(
            k.verify(&token, now, &["vault".to_string()]),
            Err(JwtError::Audience)
        );
        let mut other = claims(now);
        other.aud = vec!["vault".into(), ISSUER.into()];
        assert!(k.verify(&k.sign(&other).unwrap(), now, &auds()).is_ok());
        let mut bad_sub = claims(now);
        bad_sub.sub = "system:serviceaccount:ns:other".into();
        assert!(matches!(
            k.verify(&k.sign(&bad_sub).unwrap(), now, &auds()),
            Err(JwtError::Claims(_))
        ));
        let mut issuer = claims(now);
        issuer.iss = "https://elsewhere".into();
        assert_eq!(
            k.verify(&k.sign(&issuer).unwrap(), now, &auds()),
            Err(JwtError::Issuer)
        );
    }

    #[test]
    fn wrong_key_and_tampering_are_rejected() {
        let (k, other) = (key(), key());
        let now = 1_700_000_000;
        let token = k.sign(&claims(now)).unwrap();
        assert_eq!(other.verify(&token, now, &auds()), Err(JwtError::Algorithm));
        // The same key id but another key's signature.
        let forged = other.sign(&claims(now)).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_sig = forged.split('.').nth(2).unwrap();
        parts[2] = forged_sig;
        assert_eq!(
            k.verify(&parts.join("."), now, &auds()),
            Err(JwtError::Signature)
        );
        // Claims changed after signing.
        let mut c = claims(now);
        c.kubernetes.serviceaccount.name = "admin".into();
        c.sub = "system:serviceaccount:ns:admin".into();
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{body}.{}", parts[0], parts[2]);
        assert_eq!(k.verify(&tampered, now, &auds()), Err(JwtError::Signature));
        // alg none.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            parts[1]
        );
        assert_eq!(k.verify(&none, now, &auds()), Err(JwtError::Algorithm));
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        let k = key();
        for t in [
            "",
            ".",
            "..",
            "a.b.c",
            "a.b.c.d",
            "é.é.é",
            "eyJhbGciOiJFUzI1NiJ9..",
            "eyJhbGciOiJFUzI1NiJ9.e30.AAAA",
            "e30.e30.e30",
        ] {
            assert!(k.verify(t, 0, &auds()).is_err(), "{t:?}");
        }
        assert_eq!(
            k.verify(&"a".repeat(MAX_TOKEN_BYTES + 1), 0, &auds()),
            Err(JwtError::Malformed("too long"))
        );
        // Signed but not a service-account token.
        let t = k
            .sign(&serde_json::json!({"iss": ISSUER, "exp": 5}))
            .unwrap();
        assert!(matches!(k.verify(&t, 0, &auds()), Err(JwtError::Claims(_))));
        let t = k.sign(&serde_json::json!([1, 2])).unwrap();
        assert_eq!(k.verify(&t, 0, &auds()), Err(JwtError::Issuer));
    }

    #[test]
    fn legacy_tokens_verify_without_expiry() {
        let k = key();
        let c = LegacyClaims {
            iss: LEGACY_ISSUER.into(),
            namespace: "ns".into(),
            secret_name: "s".into(),
            service_account_name: "sa".into(),
            service_account_uid: "u".into(),
            sub: "system:serviceaccount:ns:sa".into(),
        };
        let t = k.sign(&c).unwrap();
        assert_eq!(k.verify(&t, i64::MAX, &[]), Ok(Verified::Legacy(c)));
    }
}
