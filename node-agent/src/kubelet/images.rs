//! Getting a container's image before it starts: the pull policy, credentials from the pod's
//! `imagePullSecrets`, and the waiting reasons upstream uses when that fails
//! (`InvalidImageName`, `ErrImagePull`, `ErrImageNeverPull`).

use base64::Engine;
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::Value;

use super::volumes::ObjectSource;
use crate::image::{
    decide, parse_reference, Auth, Image, ImageError, ImageStore, PullDecision, PullOptions,
    PullPolicy,
};
use crate::runtime::spec::ImageDefaults;

/// Why a container's image is not available; `reason` becomes the container's waiting reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFailure {
    /// `InvalidImageName`, `ErrImagePull` or `ErrImageNeverPull`.
    pub reason: &'static str,
    /// What the status and the event say.
    pub message: String,
}

/// Whether a pull happened, for the `Pulled` event.
#[derive(Debug)]
pub enum Got {
    /// The image was already present (and policy allowed using it).
    Present(Image),
    /// It was pulled now.
    Pulled(Image),
}

impl Got {
    /// The image.
    pub fn image(&self) -> &Image {
        match self {
            Got::Present(i) | Got::Pulled(i) => i,
        }
    }
}

/// Makes the container's image available as its pull policy says.
pub async fn ensure(
    store: &ImageStore,
    pod: &Pod,
    c: &Container,
    objects: &dyn ObjectSource,
) -> Result<Got, ImageFailure> {
    let name = c.image.as_deref().unwrap_or("");
    let parsed = parse_reference(name).map_err(|e| ImageFailure {
        reason: "InvalidImageName",
        message: format!("Failed to apply default image tag {name:?}: {e}"),
    })?;
    let present = store.get(name).map_err(|e| ImageFailure {
        reason: "ErrImagePull",
        message: e.to_string(),
    })?;
    let policy = c.image_pull_policy.as_deref().and_then(PullPolicy::parse);
    match decide(policy, name, present.is_some()) {
        PullDecision::UseLocal => {
            if let Some(image) = present {
                let _ = store.mark_used(name);
                return Ok(Got::Present(image));
            }
        }
        PullDecision::NeverPullAbsent => {
            return Err(ImageFailure {
                reason: "ErrImageNeverPull",
                message: format!(
                    "Container image {name:?} is not present with pull policy of Never"
                ),
            })
        }
        PullDecision::Pull => {}
    }
    let auth = pull_auth(pod, parsed.resolve_registry(), objects).await;
    let opts = PullOptions {
        auth,
        ..Default::default()
    };
    match store.pull(name, &opts, &|_| {}).await {
        Ok(image) => Ok(Got::Pulled(image)),
        Err(e) => Err(ImageFailure {
            reason: "ErrImagePull",
            message: pull_message(name, &e),
        }),
    }
}

fn pull_message(name: &str, e: &ImageError) -> String {
    format!("failed to pull and unpack image {name:?}: {e}")
}

/// The credentials for `registry` among the pod's `imagePullSecrets`
/// (`kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg`); anonymous when none match.
pub async fn pull_auth(pod: &Pod, registry: &str, objects: &dyn ObjectSource) -> Auth {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let names = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default();
    for r in names {
        let Ok(Some(secret)) = objects.secret(namespace, &r.name).await else {
            continue;
        };
        let data = secret.data.unwrap_or_default();
        let doc = data
            .get(".dockerconfigjson")
            .and_then(|b| serde_json::from_slice::<Value>(&b.0).ok())
            .map(|v| v["auths"].clone())
            .or_else(|| {
                data.get(".dockercfg")
                    .and_then(|b| serde_json::from_slice::<Value>(&b.0).ok())
            });
        if let Some(auth) = doc.and_then(|d| auth_for(&d, registry)) {
            return auth;
        }
    }
    Auth::Anonymous
}

/// Looks `registry` up in a docker config `auths` map (keys may carry a scheme and a path).
fn auth_for(auths: &Value, registry: &str) -> Option<Auth> {
    let wanted = normalise(registry);
    let (_, entry) = auths
        .as_object()?
        .iter()
        .find(|(k, _)| normalise(k) == wanted)?;
    let field = |k: &str| {
        entry[k]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    if let (Some(username), Some(password)) = (field("username"), field("password")) {
        return Some(Auth::Basic { username, password });
    }
    if let Some(encoded) = field("auth") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (username, password) = text.split_once(':')?;
        return Some(Auth::Basic {
            username: username.into(),
            password: password.into(),
        });
    }
    field("registrytoken")
        .or_else(|| field("identitytoken"))
        .map(|token| Auth::Bearer { token })
}

fn normalise(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        h => h.to_string(),
    }
}

/// What the runtime needs from the image's config, with a named `USER` resolved to numbers
/// through the image's own passwd and group files.
pub fn defaults(image: &Image) -> Result<ImageDefaults, super::image_user::ImageUserError> {
    let cfg = image.config.config().clone().unwrap_or_default();
    Ok(ImageDefaults {
        entrypoint: cfg.entrypoint().clone().unwrap_or_default(),
        cmd: cfg.cmd().clone().unwrap_or_default(),
        env: cfg.env().clone().unwrap_or_default(),
        working_dir: cfg.working_dir().clone().filter(|w| !w.is_empty()),
        user: super::image_user::resolve(cfg.user().as_deref(), &image.layers)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn docker_config_auths_match_by_host() {
        let auths = json!({
            "https://127.0.0.1:5000/v1/": {"auth": "dXNlcjpwYXNz"},
            "other:1": {"username": "a", "password": "b"},
        });
        match auth_for(&auths, "127.0.0.1:5000") {
            Some(Auth::Basic { username, password }) => {
                assert_eq!((username.as_str(), password.as_str()), ("user", "pass"))
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            auth_for(&auths, "other:1"),
            Some(Auth::Basic { .. })
        ));
        assert!(auth_for(&auths, "elsewhere").is_none());
    }
}
