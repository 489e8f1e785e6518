//! The `FailedScheduling` message, built as upstream's `FitError.Error()` builds it, since
//! users and tools parse it: `0/N nodes are available: <count> <reason>, ....` with the
//! "count reason" strings sorted as strings, then the preemption outcome.

use std::collections::HashMap;

/// What the pod condition says when there is no node at all (upstream's
/// `ErrNoNodesAvailable`).
pub const NO_NODES: &str = "no nodes available to schedule pods";

/// Reason for nodes preemption did not consider (upstream's absent-node status).
pub const PREEMPTION_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// Reason for nodes without lower-priority pods.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// Counts of rejection reasons over nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reasons(HashMap<String, usize>);

impl Reasons {
    /// Counts one node's reason.
    pub fn add(&mut self, reason: &str) {
        self.add_n(reason, 1)
    }

    /// Counts `n` nodes with the same reason.
    pub fn add_n(&mut self, reason: &str, n: usize) {
        if n == 0 {
            return;
        }
        match self.0.get_mut(reason) {
            Some(c) => *c += n,
            None => {
                self.0.insert(reason.to_string(), n);
            }
        }
    }

    /// `0/<nodes> nodes are available: <sorted histogram>.`
    pub fn message(&self, nodes: usize) -> String {
        let mut parts: Vec<String> = self.0.iter().map(|(r, n)| format!("{n} {r}")).collect();
        parts.sort();
        let mut msg = format!("0/{nodes} nodes are available:");
        if !parts.is_empty() {
            msg.push(' ');
            msg.push_str(&parts.join(", "));
            msg.push('.');
        }
        msg
    }
}

/// The full message: the filter histogram, then (when preemption failed) its own message
/// prefixed `preemption: `, each followed by a period as upstream's `SeparatorFormat` does.
pub fn message(nodes: usize, filter: &Reasons, preemption: Option<&str>) -> String {
    let mut msg = filter.message(nodes);
    if let Some(p) = preemption {
        msg.push_str(&format!(" preemption: {p}."));
    }
    msg
}

/// Events carry at most 1024 characters of message (upstream's `truncateMessage`).
pub fn truncate_for_event(msg: &str) -> String {
    const LIMIT: usize = 1024;
    if msg.len() <= LIMIT {
        return msg.to_string();
    }
    let mut end = LIMIT - 3;
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &msg[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_counted_and_sorted_as_strings() {
        let mut r = Reasons::default();
        r.add("Insufficient cpu");
        r.add("node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }");
        r.add("Insufficient cpu");
        let mut p = Reasons::default();
        p.add_n(NO_VICTIMS, 3);
        assert_eq!(
            message(3, &r, Some(&p.message(3))),
            "0/3 nodes are available: 1 node(s) had untolerated taint \
             {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 \
             nodes are available: 3 No preemption victims found for incoming pod.."
        );
    }

    #[test]
    fn counts_sort_as_text_like_upstream() {
        let mut r = Reasons::default();
        r.add_n("Insufficient memory", 10);
        r.add_n("Insufficient cpu", 2);
        assert_eq!(
            r.message(12),
            "0/12 nodes are available: 10 Insufficient memory, 2 Insufficient cpu."
        );
    }

    #[test]
    fn several_reasons_of_one_node_each_count() {
        let mut r = Reasons::default();
        for reason in ["Insufficient cpu", "Insufficient memory"] {
            r.add(reason);
        }
        assert_eq!(
            message(1, &r, Some("not eligible due to preemptionPolicy=Never")),
            "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory. \
             preemption: not eligible due to preemptionPolicy=Never."
        );
    }

    #[test]
    fn long_messages_are_truncated_for_events() {
        let long = "x".repeat(2000);
        let t = truncate_for_event(&long);
        assert_eq!(t.len(), 1024);
        assert!(t.ends_with("..."));
    }
}
