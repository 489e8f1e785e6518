//! Linearizability checker for a key-value register model.
//!
//! End-to-end tests drive the cluster's etcd-compatible store from several
//! concurrent clients, record every operation's invocation and response time
//! with a [`Recorder`], and then ask [`check`] whether the observed history is
//! consistent with *some* sequential execution of a plain map that respects
//! real-time order. That is exactly the guarantee a Raft-backed store must
//! give, so a failure here is a real consistency bug (stale read, lost or
//! duplicated write, double-successful compare-and-swap, ...).
//!
//! The algorithm is Wing & Gong's search with Lowe's improvements, as used by
//! porcupine: the history is partitioned per key (a map of registers is the
//! product of independent registers, so checking each key on its own is
//! sound and complete), call/return events are sorted into a linked list, and
//! a depth-first search picks linearization points, memoising every
//! `(set of linearized operations, register value)` pair it has already
//! explored so no configuration is expanded twice. On top of that, choices
//! of read-only operations (reads, failed compare-and-swaps) are never
//! revisited on backtracking, which keeps read-heavy, highly concurrent
//! histories cheap (see `KeyOp::is_read_only` for why this is sound).
//!
//! Operations whose outcome is unknown (the client timed out or saw an error)
//! may take effect at any point after their invocation, or never; their
//! response time is treated as +infinity and any output is accepted.
//!
//! This file is std-only so it can be pulled into any integration-test binary
//! with `#[path = "common/linearizability.rs"] mod linearizability;`.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The request a client issued; the model is a map from string keys to
/// optional string values, and every operation touches exactly one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    /// Unconditionally store `value` under `key`.
    Put {
        /// Key being written.
        key: String,
        /// Value being stored.
        value: String,
    },
    /// Read the current value of `key` (absent keys read as `None`).
    Get {
        /// Key being read.
        key: String,
    },
    /// Store `new` under `key` only if its current value equals `expected`
    /// (`None` meaning "key absent"); this is how etcd transactions with a
    /// compare on the value are modelled.
    Cas {
        /// Key being compared and possibly written.
        key: String,
        /// Value the key must currently hold; `None` requires it be absent.
        expected: Option<String>,
        /// Value stored if the comparison succeeds.
        new: String,
    },
}

impl Input {
    /// The key this operation touches; used to partition histories per key.
    pub fn key(&self) -> &str {
        match self {
            Input::Put { key, .. } | Input::Get { key } | Input::Cas { key, .. } => key,
        }
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Put { key, value } => write!(f, "put({key:?}, {value:?})"),
            Input::Get { key } => write!(f, "get({key:?})"),
            Input::Cas { key, expected, new } => write!(
                f,
                "cas({key:?}, expected {}, new {new:?})",
                ValueDisplay(expected.as_deref())
            ),
        }
    }
}

/// What the client observed as the result of its request, or `Unknown` when
/// it cannot tell whether the request took effect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Output {
    /// A `Put` was acknowledged.
    Put,
    /// A `Get` returned this value (`None` = key absent).
    Get(Option<String>),
    /// A `Cas` reported whether it swapped.
    Cas(bool),
    /// Timeout or error: the operation may or may not have taken effect, at
    /// any time after its invocation.
    Unknown,
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Put => f.write_str("ok"),
            Output::Get(value) => write!(f, "{}", ValueDisplay(value.as_deref())),
            Output::Cas(swapped) => write!(f, "{swapped}"),
            Output::Unknown => f.write_str("unknown"),
        }
    }
}

/// One client request as recorded by a test: who issued it, when it was
/// invoked and answered, what it asked for, and what it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Client (thread/connection) that issued the request; informational,
    /// used in failure reports.
    pub client: usize,
    /// Invocation time (any monotonic unit, e.g. nanoseconds since a base).
    pub call: u64,
    /// Response time in the same unit; `None` when the completion time is
    /// unknown. Ignored (treated as +infinity) when `output` is `Unknown`.
    pub ret: Option<u64>,
    /// The request.
    pub input: Input,
    /// The observed result.
    pub output: Output,
}

impl Operation {
    /// Whether the outcome of this operation is unknown (it may or may not
    /// have taken effect).
    pub fn is_unknown(&self) -> bool {
        matches!(self.output, Output::Unknown)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "client {} {} -> {} [call {}, ret ",
            self.client, self.input, self.output, self.call
        )?;
        match (self.ret, self.is_unknown()) {
            (Some(ret), false) => write!(f, "{ret}]"),
            _ => f.write_str("?]"),
        }
    }
}

/// Verdict of a linearizability check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// The history is linearizable.
    Ok,
    /// The history is not linearizable (or is malformed); `detail` explains
    /// where the search got stuck so the failing test can be debugged.
    Illegal {
        /// Key whose sub-history has no valid linearization.
        key: String,
        /// Human-readable explanation.
        detail: String,
    },
    /// The time or step budget ran out before a verdict was reached.
    Inconclusive,
}

impl CheckResult {
    /// Convenience for assertions: true only for [`CheckResult::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckResult::Ok)
    }

    /// Convenience for assertions: true only for [`CheckResult::Illegal`].
    pub fn is_illegal(&self) -> bool {
        matches!(self, CheckResult::Illegal { .. })
    }

    /// Convenience for assertions: true only for
    /// [`CheckResult::Inconclusive`].
    pub fn is_inconclusive(&self) -> bool {
        matches!(self, CheckResult::Inconclusive)
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Ok => f.write_str("history is linearizable"),
            CheckResult::Illegal { key, detail } => {
                write!(f, "history is NOT linearizable on key {key:?}: {detail}")
            }
            CheckResult::Inconclusive => {
                f.write_str("linearizability check ran out of budget (inconclusive)")
            }
        }
    }
}

/// Resource limits for [`check_with_limits`], so a pathological history makes
/// a test report `Inconclusive` instead of hanging CI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget for the whole check (all keys together).
    pub time: Duration,
    /// Maximum number of search steps for the whole check.
    pub max_steps: u64,
}

impl Limits {
    /// Only a time budget, no step limit.
    pub fn time(time: Duration) -> Self {
        Limits {
            time,
            max_steps: u64::MAX,
        }
    }
}

/// Checks whether `history` is linearizable with respect to the key-value
/// register model, giving up with [`CheckResult::Inconclusive`] after
/// `budget` of wall-clock time.
pub fn check(history: &[Operation], budget: Duration) -> CheckResult {
    check_with_limits(history, Limits::time(budget))
}

/// Like [`check`], but with both a time budget and a search-step limit (the
/// step limit makes "ran out of budget" deterministic in tests).
pub fn check_with_limits(history: &[Operation], limits: Limits) -> CheckResult {
    let mut budget = Budget {
        deadline: Instant::now().checked_add(limits.time),
        max_steps: limits.max_steps,
        steps: 0,
    };

    if let Some(malformed) = validate(history) {
        return malformed;
    }

    let mut by_key: HashMap<&str, Vec<usize>> = HashMap::new();
    for (index, op) in history.iter().enumerate() {
        by_key.entry(op.input.key()).or_default().push(index);
    }
    // Small keys first: if one of them is illegal we want to report it even
    // when a huge key would exhaust the budget.
    let mut keys: Vec<(&str, Vec<usize>)> = by_key.into_iter().collect();
    keys.sort_unstable_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| a.0.cmp(b.0)));

    for (key, indices) in &keys {
        if budget.exhausted() {
            return CheckResult::Inconclusive;
        }
        match check_key(history, indices, &mut budget) {
            KeyOutcome::Ok => {}
            KeyOutcome::Illegal(detail) => {
                return CheckResult::Illegal {
                    key: (*key).to_owned(),
                    detail,
                }
            }
            KeyOutcome::Inconclusive => return CheckResult::Inconclusive,
        }
    }
    CheckResult::Ok
}

/// Thread-safe history recorder shared by concurrent test clients.
///
/// Timestamps are nanoseconds since the recorder was created, taken from a
/// monotonic clock, so `begin` must be called before the request is sent and
/// `end`/`end_unknown` after the response arrives.
#[derive(Debug)]
pub struct Recorder {
    base: Instant,
    ops: Mutex<Vec<Operation>>,
}

/// An invoked-but-not-yet-answered operation, returned by
/// [`Recorder::begin`] and handed back to [`Recorder::end`] or
/// [`Recorder::end_unknown`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "pass the pending operation to Recorder::end or Recorder::end_unknown"]
pub struct Pending {
    client: usize,
    call: u64,
    input: Input,
}

impl Pending {
    /// The request being performed, so the caller can execute it without
    /// keeping a separate copy.
    pub fn input(&self) -> &Input {
        &self.input
    }

    /// The client that issued the request.
    pub fn client(&self) -> usize {
        self.client
    }

    /// The invocation timestamp.
    pub fn call(&self) -> u64 {
        self.call
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// Creates an empty recorder whose clock starts now.
    pub fn new() -> Self {
        Recorder {
            base: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }

    /// Current timestamp on this recorder's clock (nanoseconds since
    /// creation, saturating).
    pub fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Marks the invocation of `input` by `client`; call this immediately
    /// before sending the request.
    pub fn begin(&self, client: usize, input: Input) -> Pending {
        Pending {
            client,
            call: self.now(),
            input,
        }
    }

    /// Records the response of a pending operation; call this immediately
    /// after the response arrives. An `Output::Unknown` here behaves like
    /// [`Recorder::end_unknown`].
    pub fn end(&self, pending: Pending, output: Output) {
        let ret = if matches!(output, Output::Unknown) {
            None
        } else {
            Some(self.now().max(pending.call))
        };
        self.record(Operation {
            client: pending.client,
            call: pending.call,
            ret,
            input: pending.input,
            output,
        });
    }

    /// Records that a pending operation's outcome is unknown (timeout or
    /// error): it may have taken effect at any time after invocation, or
    /// never.
    pub fn end_unknown(&self, pending: Pending) {
        self.end(pending, Output::Unknown);
    }

    /// Appends a fully formed operation (e.g. one reconstructed from logs).
    pub fn record(&self, op: Operation) {
        self.lock().push(op);
    }

    /// Snapshot of everything recorded so far.
    pub fn history(&self) -> Vec<Operation> {
        self.lock().clone()
    }

    /// Number of operations recorded so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing has been recorded yet.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Checks the recorded history; shorthand for `check(&self.history(),
    /// budget)`.
    pub fn check(&self, budget: Duration) -> CheckResult {
        check(&self.history(), budget)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Operation>> {
        // A panicking client thread must not hide the history from the
        // checker, so ignore poisoning.
        self.ops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

// ---------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------

/// Sentinel "no node" index in the event list.
const NIL: usize = usize::MAX;
/// Index of the list's head sentinel.
const HEAD: usize = 0;
/// Interned id of "key absent".
const ABSENT: usize = 0;
/// Mask selecting the search steps at which the wall clock is consulted
/// (every 1024th step; reading the clock on every step is measurably slow).
const CLOCK_CHECK_MASK: u64 = 1024 - 1;
/// How many operations to list in failure reports.
const REPORT_TAIL: usize = 6;
const REPORT_CANDIDATES: usize = 8;

struct Budget {
    deadline: Option<Instant>,
    max_steps: u64,
    steps: u64,
}

impl Budget {
    fn exhausted(&self) -> bool {
        self.steps >= self.max_steps || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Accounts for one search step; returns true when the budget is spent.
    fn step(&mut self) -> bool {
        if self.steps >= self.max_steps {
            return true;
        }
        self.steps += 1;
        self.steps & CLOCK_CHECK_MASK == 0 && self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

enum KeyOutcome {
    Ok,
    Illegal(String),
    Inconclusive,
}

/// Per-key operation with values interned to small integers.
#[derive(Clone, Copy)]
enum Kind {
    Put {
        value: usize,
    },
    Get {
        observed: usize,
    },
    Cas {
        expected: usize,
        new: usize,
        /// `None` when the outcome is unknown.
        swapped: Option<bool>,
    },
}

#[derive(Clone, Copy)]
struct KeyOp {
    kind: Kind,
    /// Whether the output is known (the op must be linearized).
    known: bool,
    /// Index into the caller's history, for reports.
    index: usize,
    call: u64,
    /// Effective return time; `None` = +infinity.
    ret: Option<u64>,
}

impl KeyOp {
    /// Whether the operation is known never to change the register: a read,
    /// or a compare-and-swap known to have failed.
    ///
    /// Such an operation, once it is legal in the current state and may be
    /// linearized next, can always be linearized right away: in any valid
    /// completion it can be moved to the front (it neither changes the state
    /// nor can be preceded in real time by a still-pending operation, since
    /// its call precedes every pending return). So if linearizing it next
    /// fails, the whole configuration fails and there is no point trying
    /// other operations first. This prunes the search dramatically for
    /// read-heavy histories.
    fn is_read_only(&self) -> bool {
        self.known
            && matches!(
                self.kind,
                Kind::Get { .. }
                    | Kind::Cas {
                        swapped: Some(false),
                        ..
                    }
            )
    }

    /// Applies the operation to register value `state`; `None` if the
    /// recorded output is impossible in that state.
    fn apply(&self, state: usize) -> Option<usize> {
        match self.kind {
            Kind::Put { value } => Some(value),
            Kind::Get { observed } => (observed == state).then_some(state),
            Kind::Cas {
                expected,
                new,
                swapped,
            } => {
                let swaps = state == expected;
                match swapped {
                    Some(reported) if reported != swaps => None,
                    _ => Some(if swaps { new } else { state }),
                }
            }
        }
    }
}

#[derive(Default)]
struct Interner<'a> {
    ids: HashMap<&'a str, usize>,
    /// `names[id - 1]` is the string for id (id 0 is ABSENT).
    names: Vec<&'a str>,
}

impl<'a> Interner<'a> {
    fn intern(&mut self, value: Option<&'a str>) -> usize {
        let Some(value) = value else {
            return ABSENT;
        };
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        self.names.push(value);
        let id = self.names.len();
        self.ids.insert(value, id);
        id
    }

    fn describe(&self, id: usize) -> String {
        let name = id.checked_sub(1).and_then(|i| self.names.get(i)).copied();
        ValueDisplay(name).to_string()
    }
}

struct ValueDisplay<'a>(Option<&'a str>);

impl fmt::Display for ValueDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(value) => write!(f, "{value:?}"),
            None => f.write_str("<absent>"),
        }
    }
}

/// Rejects operations whose output cannot belong to their input, or that
/// respond before they were invoked.
fn validate(history: &[Operation]) -> Option<CheckResult> {
    for (index, op) in history.iter().enumerate() {
        let consistent = matches!(
            (&op.input, &op.output),
            (_, Output::Unknown)
                | (Input::Put { .. }, Output::Put)
                | (Input::Get { .. }, Output::Get(_))
                | (Input::Cas { .. }, Output::Cas(_))
        );
        let problem = if !consistent {
            Some("its output is of the wrong kind for its input")
        } else if !op.is_unknown() && op.ret.is_some_and(|ret| ret < op.call) {
            Some("it responded before it was invoked")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Some(CheckResult::Illegal {
                key: op.input.key().to_owned(),
                detail: format!(
                    "malformed history: operation #{index} ({op}) is invalid: {problem}"
                ),
            });
        }
    }
    None
}

/// Doubly linked list of call/return events (index 0 is the head sentinel).
struct EventList {
    prev: Vec<usize>,
    next: Vec<usize>,
    /// Operation id of each node.
    op: Vec<usize>,
    /// For call nodes, the matching return node; `NIL` for return nodes.
    matching: Vec<usize>,
}

impl EventList {
    fn build(ops: &[KeyOp]) -> Self {
        // (time, 0 = call / 1 = return, op id); calls sort before returns at
        // equal times so touching intervals count as concurrent.
        let mut events: Vec<(u128, u8, usize)> = Vec::with_capacity(ops.len() * 2);
        for (id, op) in ops.iter().enumerate() {
            events.push((u128::from(op.call), 0, id));
            events.push((op.ret.map_or(u128::MAX, u128::from), 1, id));
        }
        events.sort_unstable();

        let len = events.len() + 1;
        let mut list = EventList {
            prev: vec![NIL; len],
            next: vec![NIL; len],
            op: vec![NIL; len],
            matching: vec![NIL; len],
        };
        let mut call_node = vec![NIL; ops.len()];
        let mut return_node = vec![NIL; ops.len()];
        for (i, &(_, kind, id)) in events.iter().enumerate() {
            let node = i + 1;
            list.prev[node] = i;
            list.next[i] = node;
            list.op[node] = id;
            if kind == 0 {
                call_node[id] = node;
            } else {
                return_node[id] = node;
            }
        }
        for (&call, &ret) in call_node.iter().zip(&return_node) {
            list.matching[call] = ret;
        }
        list
    }

    fn is_call(&self, node: usize) -> bool {
        self.matching[node] != NIL
    }

    /// Removes a call node and its return node from the list.
    fn lift(&mut self, call: usize) {
        let (prev, next) = (self.prev[call], self.next[call]);
        self.next[prev] = next;
        self.prev[next] = prev;
        let ret = self.matching[call];
        let (prev, next) = (self.prev[ret], self.next[ret]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    /// Undoes [`EventList::lift`].
    fn unlift(&mut self, call: usize) {
        let ret = self.matching[call];
        let (prev, next) = (self.prev[ret], self.next[ret]);
        self.next[prev] = ret;
        if next != NIL {
            self.prev[next] = ret;
        }
        let (prev, next) = (self.prev[call], self.next[call]);
        self.next[prev] = call;
        self.prev[next] = call;
    }
}

/// Set of linearized operation ids.
struct Bitset(Vec<u64>);

impl Bitset {
    fn new(len: usize) -> Self {
        Bitset(vec![0; len.div_ceil(64)])
    }

    fn set(&mut self, bit: usize) {
        self.0[bit / 64] |= 1 << (bit % 64);
    }

    fn clear(&mut self, bit: usize) {
        self.0[bit / 64] &= !(1 << (bit % 64));
    }

    /// Writes a compact, canonical encoding of `(self, state)` into `out`:
    /// `[state, top, holes...]` where `top` is one past the highest set bit
    /// and `holes` are the clear bits below it. Because operation ids follow
    /// invocation order, the holes are essentially the currently concurrent
    /// (plus unknown-outcome) operations, so keys stay small regardless of
    /// history length.
    fn encode(&self, state: usize, out: &mut Vec<usize>) {
        out.clear();
        out.push(state);
        let top = self
            .0
            .iter()
            .rposition(|&word| word != 0)
            .map_or(0, |i| i * 64 + 64 - self.0[i].leading_zeros() as usize);
        out.push(top);
        for (i, &word) in self.0.iter().enumerate() {
            let base = i * 64;
            if base >= top {
                break;
            }
            let mut holes = !word;
            if top - base < 64 {
                holes &= (1u64 << (top - base)) - 1;
            }
            while holes != 0 {
                out.push(base + holes.trailing_zeros() as usize);
                holes &= holes - 1;
            }
        }
    }
}

/// Where the search got furthest before failing, for the report.
struct Failure {
    depth: usize,
    state: usize,
    blocking: usize,
    tail: Vec<usize>,
    candidates: Vec<usize>,
    more_candidates: usize,
}

fn check_key(history: &[Operation], indices: &[usize], budget: &mut Budget) -> KeyOutcome {
    let mut values = Interner::default();
    let mut ops = Vec::with_capacity(indices.len());
    for &index in indices {
        let Some(op) = history.get(index) else {
            continue;
        };
        let known = !op.is_unknown();
        let kind = match (&op.input, &op.output) {
            // An unknown read constrains nothing and changes nothing.
            (Input::Get { .. }, Output::Unknown) => continue,
            (Input::Get { .. }, Output::Get(observed)) => Kind::Get {
                observed: values.intern(observed.as_deref()),
            },
            (Input::Put { value, .. }, Output::Put | Output::Unknown) => Kind::Put {
                value: values.intern(Some(value)),
            },
            (Input::Cas { expected, new, .. }, Output::Cas(_) | Output::Unknown) => Kind::Cas {
                expected: values.intern(expected.as_deref()),
                new: values.intern(Some(new)),
                swapped: match op.output {
                    Output::Cas(swapped) => Some(swapped),
                    _ => None,
                },
            },
            _ => {
                return KeyOutcome::Illegal(format!(
                    "malformed history: operation #{index} ({op}) has an output of the wrong kind"
                ))
            }
        };
        ops.push(KeyOp {
            kind,
            known,
            index,
            call: op.call,
            ret: if known { op.ret } else { None },
        });
    }
    // Operation ids follow invocation order (see `Bitset::encode`).
    ops.sort_by_key(|op| (op.call, op.index));
    let mut remaining_known = ops.iter().filter(|op| op.known).count();
    if remaining_known == 0 {
        return KeyOutcome::Ok;
    }

    let mut list = EventList::build(&ops);
    let mut linearized = Bitset::new(ops.len());
    let mut cache: HashSet<Box<[usize]>> = HashSet::new();
    let mut scratch = Vec::new();
    // (call node, register value before applying it)
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let mut state = ABSENT;
    let mut deepest: Option<Failure> = None;
    let mut entry = list.next[HEAD];

    loop {
        // Unknown-outcome operations can always be placed after everything
        // else (their output is unconstrained), so we are done as soon as
        // every known operation has been linearized.
        if remaining_known == 0 {
            return KeyOutcome::Ok;
        }
        if budget.step() || entry == NIL {
            // `entry == NIL` cannot happen (a non-empty list always ends in a
            // return node); be conservative rather than panic.
            return KeyOutcome::Inconclusive;
        }
        if list.is_call(entry) {
            let id = list.op[entry];
            let op = &ops[id];
            let Some(next_state) = op.apply(state) else {
                entry = list.next[entry];
                continue;
            };
            linearized.set(id);
            linearized.encode(next_state, &mut scratch);
            if !cache.contains(scratch.as_slice()) {
                cache.insert(scratch.as_slice().into());
                stack.push((entry, state));
                state = next_state;
                if op.known {
                    remaining_known -= 1;
                }
                list.lift(entry);
                entry = list.next[HEAD];
                continue;
            }
            linearized.clear(id);
            if !op.is_read_only() {
                entry = list.next[entry];
                continue;
            }
            // A read-only operation that could go next leads to an explored
            // (hence failed) configuration; by the lemma on `is_read_only`
            // the current configuration fails too, so backtrack.
        } else {
            // Some pending operation returned before we could linearize it.
            let deeper = match &deepest {
                Some(failure) => stack.len() > failure.depth,
                None => true,
            };
            if deeper {
                deepest = Some(snapshot(&list, &stack, state, entry));
            }
        }
        // Undo choices until one whose alternatives are worth exploring.
        loop {
            let Some((call, prior)) = stack.pop() else {
                return KeyOutcome::Illegal(report(history, &ops, &values, deepest.as_ref()));
            };
            let id = list.op[call];
            linearized.clear(id);
            state = prior;
            if ops[id].known {
                remaining_known += 1;
            }
            list.unlift(call);
            entry = list.next[call];
            if !ops[id].is_read_only() {
                break;
            }
        }
    }
}

fn snapshot(list: &EventList, stack: &[(usize, usize)], state: usize, blocked: usize) -> Failure {
    let tail = stack[stack.len().saturating_sub(REPORT_TAIL)..]
        .iter()
        .map(|&(call, _)| list.op[call])
        .collect();
    let mut candidates = Vec::new();
    let mut more_candidates = 0;
    let mut node = list.next[HEAD];
    while node != NIL && node != blocked {
        if list.is_call(node) {
            if candidates.len() < REPORT_CANDIDATES {
                candidates.push(list.op[node]);
            } else {
                more_candidates += 1;
            }
        }
        node = list.next[node];
    }
    Failure {
        depth: stack.len(),
        state,
        blocking: list.op[blocked],
        tail,
        candidates,
        more_candidates,
    }
}

fn report(
    history: &[Operation],
    ops: &[KeyOp],
    values: &Interner<'_>,
    failure: Option<&Failure>,
) -> String {
    let describe = |id: usize| -> String {
        match ops
            .get(id)
            .and_then(|op| history.get(op.index).map(|h| (op.index, h)))
        {
            Some((index, op)) => format!("#{index} {op}"),
            None => format!("<operation {id}>"),
        }
    };
    let mut lines = vec![format!(
        "no valid linearization exists for the {} operations on this key.",
        ops.len()
    )];
    let Some(failure) = failure else {
        return lines.join("\n");
    };
    let value = values.describe(failure.state);
    if failure.depth == 0 {
        lines.push(format!(
            "The search could not linearize even one operation (value {value})."
        ));
    } else {
        lines.push(format!(
            "The deepest partial linearization placed {} of them, leaving the value {value}; \
             its last steps were:",
            failure.depth
        ));
        lines.extend(
            failure
                .tail
                .iter()
                .map(|&id| format!("    {}", describe(id))),
        );
    }
    lines.push(format!(
        "It then got stuck at the return of {}: no pending operation could take effect \
         next consistently with the recorded results. Pending operations at that point:",
        describe(failure.blocking)
    ));
    lines.extend(
        failure
            .candidates
            .iter()
            .map(|&id| format!("    {}", describe(id))),
    );
    if failure.more_candidates > 0 {
        lines.push(format!("    ... and {} more", failure.more_candidates));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::thread;

    const BUDGET: Duration = Duration::from_secs(30);

    fn put(key: &str, value: &str) -> Input {
        Input::Put {
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    fn get(key: &str) -> Input {
        Input::Get {
            key: key.to_owned(),
        }
    }

    fn cas(key: &str, expected: Option<&str>, new: &str) -> Input {
        Input::Cas {
            key: key.to_owned(),
            expected: expected.map(str::to_owned),
            new: new.to_owned(),
        }
    }

    fn seen(value: Option<&str>) -> Output {
        Output::Get(value.map(str::to_owned))
    }

    fn op(client: usize, call: u64, ret: u64, input: Input, output: Output) -> Operation {
        Operation {
            client,
            call,
            ret: Some(ret),
            input,
            output,
        }
    }

    fn unknown(client: usize, call: u64, input: Input) -> Operation {
        Operation {
            client,
            call,
            ret: None,
            input,
            output: Output::Unknown,
        }
    }

    fn assert_ok(history: &[Operation]) {
        let result = check(history, BUDGET);
        assert!(result.is_ok(), "expected linearizable, got: {result}");
    }

    fn assert_illegal(history: &[Operation], expected_key: &str) -> String {
        match check(history, BUDGET) {
            CheckResult::Illegal { key, detail } => {
                assert_eq!(key, expected_key, "wrong key reported: {detail}");
                detail
            }
            other => panic!("expected Illegal on {expected_key:?}, got: {other}"),
        }
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_ok(&[]);
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let history = vec![
            op(0, 0, 1, get("x"), seen(None)),
            op(0, 2, 3, put("x", "1"), Output::Put),
            op(1, 4, 5, get("x"), seen(Some("1"))),
            op(1, 6, 7, cas("x", Some("1"), "2"), Output::Cas(true)),
            op(0, 8, 9, cas("x", Some("1"), "3"), Output::Cas(false)),
            op(0, 10, 11, get("x"), seen(Some("2"))),
            op(2, 12, 13, cas("y", None, "a"), Output::Cas(true)),
            op(2, 14, 15, get("y"), seen(Some("a"))),
        ];
        assert_ok(&history);
    }

    #[test]
    fn concurrent_history_needing_non_obvious_order_is_linearizable() {
        // A is invoked first but must be linearized third: B, C, A, D.
        let history = vec![
            op(0, 0, 100, put("x", "1"), Output::Put),
            op(1, 5, 20, put("x", "2"), Output::Put),
            op(2, 25, 30, get("x"), seen(Some("2"))),
            op(2, 35, 40, get("x"), seen(Some("1"))),
        ];
        assert_ok(&history);

        // Concurrent CASes: only the order put, cas(->b), cas(b->c), get works.
        let history = vec![
            op(0, 0, 50, cas("k", Some("b"), "c"), Output::Cas(true)),
            op(1, 1, 49, cas("k", Some("a"), "b"), Output::Cas(true)),
            op(2, 2, 48, put("k", "a"), Output::Put),
            op(3, 3, 47, cas("k", None, "z"), Output::Cas(false)),
            op(3, 60, 61, get("k"), seen(Some("c"))),
        ];
        assert_ok(&history);
    }

    #[test]
    fn stale_read_after_completed_write_is_illegal() {
        let history = vec![
            op(0, 0, 10, put("x", "1"), Output::Put),
            op(1, 20, 30, get("x"), seen(None)),
        ];
        let detail = assert_illegal(&history, "x");
        assert!(detail.contains("get(\"x\")"), "unhelpful detail: {detail}");

        // Overlapping read may see either value, but once a read has seen the
        // new value, a later read may not go back.
        let history = vec![
            op(0, 0, 100, put("x", "1"), Output::Put),
            op(1, 10, 20, get("x"), seen(Some("1"))),
            op(2, 30, 40, get("x"), seen(None)),
        ];
        assert_illegal(&history, "x");
    }

    #[test]
    fn double_successful_cas_is_illegal() {
        let history = vec![
            op(0, 0, 1, put("x", "0"), Output::Put),
            op(1, 2, 3, cas("x", Some("0"), "1"), Output::Cas(true)),
            op(2, 4, 5, cas("x", Some("0"), "2"), Output::Cas(true)),
        ];
        assert_illegal(&history, "x");

        // Same with the two CASes concurrent: still impossible.
        let history = vec![
            op(0, 0, 1, put("x", "0"), Output::Put),
            op(1, 2, 10, cas("x", Some("0"), "1"), Output::Cas(true)),
            op(2, 3, 9, cas("x", Some("0"), "2"), Output::Cas(true)),
        ];
        assert_illegal(&history, "x");

        // A CAS that claims "absent" after a completed put is also illegal.
        let history = vec![
            op(0, 0, 1, put("y", "0"), Output::Put),
            op(1, 2, 3, cas("y", None, "1"), Output::Cas(true)),
        ];
        assert_illegal(&history, "y");
    }

    #[test]
    fn unknown_operations_may_or_may_not_take_effect() {
        // Effect observed later (long after the client gave up).
        let history = vec![
            unknown(0, 0, put("x", "1")),
            op(1, 5, 6, get("x"), seen(None)),
            op(1, 50, 60, get("x"), seen(Some("1"))),
        ];
        assert_ok(&history);

        // Effect never observed.
        let history = vec![
            unknown(0, 0, put("x", "1")),
            op(1, 10, 20, get("x"), seen(None)),
            op(1, 30, 40, get("x"), seen(None)),
        ];
        assert_ok(&history);

        // An unknown op with a recorded (but meaningless) ret is still
        // allowed to take effect after that ret.
        let history = vec![
            Operation {
                client: 0,
                call: 0,
                ret: Some(5),
                input: cas("x", None, "1"),
                output: Output::Unknown,
            },
            op(1, 10, 20, get("x"), seen(None)),
            op(1, 30, 40, get("x"), seen(Some("1"))),
        ];
        assert_ok(&history);

        // But an unknown op cannot take effect before it was invoked.
        let history = vec![
            op(1, 0, 5, get("x"), seen(Some("1"))),
            unknown(0, 10, put("x", "1")),
        ];
        assert_illegal(&history, "x");

        // And it takes effect at most once: it cannot be observed, undone,
        // and observed again.
        let history = vec![
            unknown(0, 0, put("x", "1")),
            op(1, 10, 11, get("x"), seen(Some("1"))),
            op(1, 12, 13, put("x", "2"), Output::Put),
            op(1, 14, 15, get("x"), seen(Some("1"))),
        ];
        assert_illegal(&history, "x");
    }

    #[test]
    fn keys_are_checked_independently() {
        let history = vec![
            op(0, 0, 10, put("a", "1"), Output::Put),
            op(1, 0, 10, put("b", "1"), Output::Put),
            op(0, 20, 30, get("a"), seen(Some("1"))),
            op(1, 20, 30, get("b"), seen(None)),
        ];
        assert_illegal(&history, "b");
    }

    #[test]
    fn malformed_histories_are_rejected_without_panicking() {
        let history = vec![op(0, 10, 5, put("x", "1"), Output::Put)];
        let detail = assert_illegal(&history, "x");
        assert!(detail.contains("malformed"), "{detail}");

        let history = vec![op(0, 0, 5, put("x", "1"), Output::Cas(true))];
        assert_illegal(&history, "x");

        // Known output but unknown completion time: must still take effect.
        let history = vec![
            Operation {
                client: 0,
                call: 0,
                ret: None,
                input: get("x"),
                output: seen(Some("never-written")),
            },
            op(1, 1, 2, put("x", "1"), Output::Put),
        ];
        assert_illegal(&history, "x");

        // Extreme timestamps.
        let history = vec![
            op(0, u64::MAX, u64::MAX, put("x", "1"), Output::Put),
            op(1, 0, u64::MAX, get("x"), seen(Some("1"))),
        ];
        assert_ok(&history);
    }

    #[test]
    fn budget_exhaustion_is_inconclusive() {
        let history = simulate(7, 8, 2_000, &["k"], 3, 0);
        assert_eq!(check(&history, Duration::ZERO), CheckResult::Inconclusive);
        let limits = Limits {
            time: BUDGET,
            max_steps: 100,
        };
        assert_eq!(
            check_with_limits(&history, limits),
            CheckResult::Inconclusive
        );
        assert_ok(&history);
    }

    /// Deterministic PRNG (splitmix64) so the tests need no crates.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len() as u64) as usize]
        }
    }

    fn random_input(rng: &mut Rng, keys: &[&str], values: u64) -> Input {
        let key = rng.pick(keys);
        let value = |rng: &mut Rng| rng.below(values).to_string();
        match rng.below(10) {
            0..=3 => get(key),
            4..=6 => put(key, &value(rng)),
            7 => cas(key, None, &value(rng)),
            _ => {
                let expected = value(rng);
                cas(key, Some(&expected), &value(rng))
            }
        }
    }

    fn apply(model: &mut HashMap<String, String>, input: &Input) -> Output {
        match input {
            Input::Put { key, value } => {
                model.insert(key.clone(), value.clone());
                Output::Put
            }
            Input::Get { key } => Output::Get(model.get(key).cloned()),
            Input::Cas { key, expected, new } => {
                let swap = model.get(key) == expected.as_ref();
                if swap {
                    model.insert(key.clone(), new.clone());
                }
                Output::Cas(swap)
            }
        }
    }

    /// Logical-time simulation of `clients` clients against a linearizable
    /// map: each operation is invoked, applied atomically at a later tick,
    /// and answered at an even later tick. One in `unknown_rate` operations
    /// (0 = none) ends with an unknown outcome, half of those never applied.
    fn simulate(
        seed: u64,
        clients: usize,
        total: usize,
        keys: &[&str],
        values: u64,
        unknown_rate: u64,
    ) -> Vec<Operation> {
        struct InFlight {
            call: u64,
            input: Input,
            lost: bool,
            output: Option<Output>,
        }
        let mut rng = Rng(seed);
        let mut model = HashMap::new();
        let mut slots: Vec<Option<InFlight>> = (0..clients).map(|_| None).collect();
        let mut history = Vec::with_capacity(total);
        let mut issued = 0;
        let mut time = 0;
        while history.len() < total {
            time += 1;
            let client = rng.below(clients as u64) as usize;
            let slot = &mut slots[client];
            match slot {
                None if issued < total => {
                    issued += 1;
                    *slot = Some(InFlight {
                        call: time,
                        input: random_input(&mut rng, keys, values),
                        lost: unknown_rate > 0 && rng.below(2 * unknown_rate) == 0,
                        output: None,
                    });
                }
                None => {}
                Some(flight) if flight.output.is_none() => {
                    flight.output = Some(if flight.lost {
                        Output::Unknown
                    } else {
                        apply(&mut model, &flight.input)
                    });
                }
                Some(_) => {
                    let Some(flight) = slot.take() else { continue };
                    let mut output = flight.output.unwrap_or(Output::Unknown);
                    if unknown_rate > 0 && rng.below(2 * unknown_rate) == 0 {
                        output = Output::Unknown;
                    }
                    history.push(Operation {
                        client,
                        call: flight.call,
                        ret: Some(time),
                        input: flight.input,
                        output,
                    });
                }
            }
        }
        history
    }

    /// Exhaustive reference checker for tiny single-key histories: tries
    /// every order of every subset of operations that includes all known
    /// ones and respects real-time order.
    fn brute_force(history: &[Operation]) -> bool {
        fn precedes(a: &Operation, b: &Operation) -> bool {
            !a.is_unknown() && a.ret.is_some_and(|ret| ret < b.call)
        }
        fn search(
            history: &[Operation],
            placed: &mut Vec<bool>,
            model: &mut HashMap<String, String>,
        ) -> bool {
            let all_known_placed = history
                .iter()
                .zip(placed.iter())
                .all(|(op, &done)| done || op.is_unknown());
            if all_known_placed {
                return true;
            }
            for i in 0..history.len() {
                let ready = !placed[i]
                    && (0..history.len()).all(|j| placed[j] || !precedes(&history[j], &history[i]));
                if !ready {
                    continue;
                }
                let saved = model.clone();
                let output = apply(model, &history[i].input);
                if history[i].is_unknown() || output == history[i].output {
                    placed[i] = true;
                    if search(history, placed, model) {
                        return true;
                    }
                    placed[i] = false;
                }
                *model = saved;
            }
            false
        }
        search(
            history,
            &mut vec![false; history.len()],
            &mut HashMap::new(),
        )
    }

    #[test]
    fn agrees_with_brute_force_on_small_random_histories() {
        let mut rng = Rng(42);
        let (mut legal, mut illegal) = (0, 0);
        for _ in 0..3_000 {
            let len = 1 + rng.below(7) as usize;
            let value = |rng: &mut Rng| rng.below(2).to_string();
            let history: Vec<Operation> = (0..len)
                .map(|client| {
                    let call = rng.below(12);
                    let ret = call + rng.below(6);
                    let (input, output) = match rng.below(3) {
                        0 => (
                            get("k"),
                            match rng.below(3) {
                                0 => seen(None),
                                _ => Output::Get(Some(value(&mut rng))),
                            },
                        ),
                        1 => (put("k", &value(&mut rng)), Output::Put),
                        _ => {
                            let expected = match rng.below(3) {
                                0 => None,
                                _ => Some(value(&mut rng)),
                            };
                            let input = cas("k", expected.as_deref(), &value(&mut rng));
                            (input, Output::Cas(rng.below(2) == 0))
                        }
                    };
                    let output = if rng.below(6) == 0 {
                        Output::Unknown
                    } else {
                        output
                    };
                    Operation {
                        client,
                        call,
                        ret: Some(ret),
                        input,
                        output,
                    }
                })
                .collect();
            let expected = brute_force(&history);
            let result = check(&history, BUDGET);
            assert!(!result.is_inconclusive());
            assert_eq!(result.is_ok(), expected, "{result}\n{history:#?}");
            if expected {
                legal += 1;
            } else {
                illegal += 1;
            }
        }
        assert!(
            legal > 300 && illegal > 300,
            "{legal} legal / {illegal} illegal"
        );
    }

    #[test]
    fn simulated_concurrent_histories_are_linearizable() {
        for seed in 0..4 {
            let started = Instant::now();
            let history = simulate(seed, 10, 4_000, &["k"], 3, 0);
            let result = check(&history, BUDGET);
            assert!(result.is_ok(), "seed {seed}: {result}");
            eprintln!(
                "seed {seed}: 4000 ops / 1 key / 10 clients checked in {:?}",
                started.elapsed()
            );

            let history = simulate(seed, 8, 4_000, &["a", "b", "c"], 4, 20);
            let result = check(&history, BUDGET);
            assert!(result.is_ok(), "seed {seed} with unknowns: {result}");
        }
    }

    #[test]
    fn corrupted_simulated_history_is_illegal() {
        for seed in 0..4 {
            let mut history = simulate(seed, 8, 3_000, &["k"], 3, 0);
            // Make one read in the middle observe a value nobody wrote.
            let target = history
                .iter()
                .skip(1_500)
                .position(|op| matches!(op.output, Output::Get(_)))
                .map(|i| i + 1_500);
            let Some(target) = target else { continue };
            history[target].output = seen(Some("bogus"));
            assert_illegal(&history, "k");
        }
    }

    #[test]
    fn randomized_threads_against_mutex_map_are_linearizable() {
        const THREADS: usize = 8;
        const OPS_PER_THREAD: usize = 400;
        let recorder = Arc::new(Recorder::new());
        let store = Arc::new(Mutex::new(HashMap::<String, String>::new()));
        let handles: Vec<_> = (0..THREADS)
            .map(|client| {
                let recorder = Arc::clone(&recorder);
                let store = Arc::clone(&store);
                thread::spawn(move || {
                    let mut rng = Rng(0x00C0_FFEE + client as u64);
                    let spin = |rng: &mut Rng| {
                        for _ in 0..rng.below(6) {
                            thread::yield_now();
                        }
                    };
                    for _ in 0..OPS_PER_THREAD {
                        let input = random_input(&mut rng, &["a", "b", "c"], 4);
                        let pending = recorder.begin(client, input);
                        spin(&mut rng);
                        // 1 in 50 requests is "lost" before reaching the store.
                        let output = if rng.below(50) == 0 {
                            Output::Unknown
                        } else {
                            let mut map = store
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            apply(&mut map, pending.input())
                        };
                        spin(&mut rng);
                        // 1 in 30 responses is "lost" on the way back.
                        if rng.below(30) == 0 {
                            recorder.end_unknown(pending);
                        } else {
                            recorder.end(pending, output);
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("client thread panicked");
        }
        assert_eq!(recorder.len(), THREADS * OPS_PER_THREAD);
        let result = recorder.check(BUDGET);
        assert!(result.is_ok(), "{result}");

        // Sanity check that the checker is not vacuous on this history: a
        // read of a value nobody wrote must be caught.
        let mut history = recorder.history();
        if let Some(read) = history
            .iter_mut()
            .find(|op| matches!(op.output, Output::Get(_)))
        {
            read.output = seen(Some("never-written"));
            assert!(check(&history, BUDGET).is_illegal());
        }
    }
}
