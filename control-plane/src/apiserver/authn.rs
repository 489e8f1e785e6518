//! Authentication: who a request comes from. A client certificate signed by the cluster CA
//! names the user (CN) and groups (O); otherwise a bearer token from the static token file
//! does, or a service-account JWT ([`super::serviceaccount`]). Everyone authenticated is also
//! in `system:authenticated`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use x509_parser::prelude::{FromDer, X509Certificate};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    /// The user's uid, when the authenticator knows one (a service account's).
    pub uid: Option<String>,
    /// Extra attributes (`authentication.kubernetes.io/pod-name`, ...), as upstream's
    /// `user.Info` carries them; `kubectl auth whoami` shows them.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    /// A user in `groups` and `system:authenticated`.
    pub fn new(name: String, mut groups: Vec<String>) -> User {
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        User {
            name,
            groups,
            ..Default::default()
        }
    }
}

/// The user a (CA-verified) client certificate names, if it names one.
pub fn from_certificate(der: &[u8]) -> Option<User> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(User::new(name, groups))
}

/// Bearer tokens from a kube-apiserver style file: `token,user,uid[,"group1,group2"]` per line.
#[derive(Debug, Default, Clone)]
pub struct TokenFile {
    tokens: HashMap<String, User>,
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<TokenFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        TokenFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<TokenFile, String> {
        let mut tokens = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (head, groups) = match line.split_once(",\"") {
                Some((head, rest)) => {
                    let groups = rest
                        .strip_suffix('"')
                        .ok_or_else(|| format!("line {}: unterminated group list", n + 1))?;
                    (
                        head,
                        groups.split(',').map(|g| g.trim().to_string()).collect(),
                    )
                }
                None => (line, Vec::new()),
            };
            let fields: Vec<&str> = head.split(',').map(str::trim).collect();
            let (token, user) = match fields.as_slice() {
                [token, user, _uid] | [token, user, _uid, _]
                    if !token.is_empty() && !user.is_empty() =>
                {
                    (*token, *user)
                }
                _ => {
                    return Err(format!(
                        "line {}: want token,user,uid[,\"group1,group2\"]",
                        n + 1
                    ))
                }
            };
            let groups: Vec<String> = groups.into_iter().filter(|g| !g.is_empty()).collect();
            tokens.insert(token.to_string(), User::new(user.to_string(), groups));
        }
        Ok(TokenFile { tokens })
    }

    /// The user a bearer token stands for.
    pub fn user(&self, token: &str) -> Option<&User> {
        self.tokens.get(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_lines() {
        let f = TokenFile::parse("# comment\nabc,alice,1\nxyz,bob,2,\"dev,ops\"\n").unwrap();
        assert_eq!(f.user("abc").unwrap().name, "alice");
        assert_eq!(f.user("abc").unwrap().groups, ["system:authenticated"]);
        assert_eq!(
            f.user("xyz").unwrap().groups,
            ["dev", "ops", "system:authenticated"]
        );
        assert!(f.user("nope").is_none());
        assert!(TokenFile::parse("only-a-token").is_err());
        assert!(TokenFile::parse("t,u,1,\"open").is_err());
    }

    #[test]
    fn certificate_names_user_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        let paths = crate::pki::PkiPaths::new(dir.path());
        crate::pki::ensure(&paths, &["127.0.0.1".into()]).unwrap();
        let pem = crate::pki::read(&paths.admin_cert()).unwrap();
        let der = rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let user = from_certificate(&der).unwrap();
        assert_eq!(user.name, "kubernetes-admin");
        assert_eq!(user.groups, ["system:masters", "system:authenticated"]);
    }
}
