//! `imagePullPolicy`: when the kubelet loop pulls an image, kept pure so it is tested alone.

use super::reference;

/// A container's `imagePullPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull every time a container starts (the registry decides whether anything changed).
    Always,
    /// Pull only when the image is not in the store.
    IfNotPresent,
    /// Never pull; the image must already be in the store.
    Never,
}

impl PullPolicy {
    /// Parses the Kubernetes spelling (`Always`, `IfNotPresent`, `Never`).
    pub fn parse(s: &str) -> Option<PullPolicy> {
        match s {
            "Always" => Some(PullPolicy::Always),
            "IfNotPresent" => Some(PullPolicy::IfNotPresent),
            "Never" => Some(PullPolicy::Never),
            _ => None,
        }
    }

    /// Kubernetes' default when the field is empty: `Always` for `:latest` or no tag (which
    /// means latest), otherwise `IfNotPresent` (digests and other tags).
    pub fn default_for(image: &str) -> PullPolicy {
        // An unparsable reference fails later at pull time; its default does not matter.
        let tag = match reference::parse(image) {
            Ok(r) => r.tag().map(str::to_string),
            Err(_) => Some("latest".to_string()),
        };
        if tag.as_deref() == Some("latest") {
            PullPolicy::Always
        } else {
            PullPolicy::IfNotPresent
        }
    }
}

/// What to do about an image before starting a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullDecision {
    /// Pull it (again).
    Pull,
    /// Use the copy in the store.
    UseLocal,
    /// Fail the container: policy `Never` and the image is absent (`ErrImageNeverPull`).
    NeverPullAbsent,
}

/// Decides from the container's policy (`None` = unset, defaulted from the image), the image
/// reference and whether the store already has it.
pub fn decide(policy: Option<PullPolicy>, image: &str, present: bool) -> PullDecision {
    match policy.unwrap_or_else(|| PullPolicy::default_for(image)) {
        PullPolicy::Always => PullDecision::Pull,
        PullPolicy::IfNotPresent if present => PullDecision::UseLocal,
        PullPolicy::IfNotPresent => PullDecision::Pull,
        PullPolicy::Never if present => PullDecision::UseLocal,
        PullPolicy::Never => PullDecision::NeverPullAbsent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn defaults_follow_kubernetes() {
        assert_eq!(PullPolicy::default_for("busybox"), PullPolicy::Always);
        assert_eq!(
            PullPolicy::default_for("busybox:latest"),
            PullPolicy::Always
        );
        assert_eq!(
            PullPolicy::default_for("127.0.0.1:5000/x:latest"),
            PullPolicy::Always
        );
        assert_eq!(
            PullPolicy::default_for("busybox:1.36"),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            PullPolicy::default_for(&format!("busybox@{DIGEST}")),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            PullPolicy::default_for(&format!("busybox:1.36@{DIGEST}")),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            PullPolicy::default_for(&format!("busybox:latest@{DIGEST}")),
            PullPolicy::Always
        );
    }

    #[test]
    fn decisions() {
        use PullDecision::*;
        use PullPolicy::*;
        assert_eq!(decide(Some(Always), "x:1", true), Pull);
        assert_eq!(decide(Some(Always), "x:1", false), Pull);
        assert_eq!(decide(Some(IfNotPresent), "x", true), UseLocal);
        assert_eq!(decide(Some(IfNotPresent), "x", false), Pull);
        assert_eq!(decide(Some(Never), "x", true), UseLocal);
        assert_eq!(decide(Some(Never), "x", false), NeverPullAbsent);
        assert_eq!(decide(None, "x", true), Pull);
        assert_eq!(decide(None, "x:2", true), UseLocal);
        assert_eq!(decide(None, "x:2", false), Pull);
    }

    #[test]
    fn parses_kubernetes_spelling() {
        assert_eq!(PullPolicy::parse("Always"), Some(PullPolicy::Always));
        assert_eq!(
            PullPolicy::parse("IfNotPresent"),
            Some(PullPolicy::IfNotPresent)
        );
        assert_eq!(PullPolicy::parse("Never"), Some(PullPolicy::Never));
        assert_eq!(PullPolicy::parse("always"), None);
    }
}
