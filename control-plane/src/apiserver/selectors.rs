//! Kubernetes list selectors: the `?labelSelector=` and `?fieldSelector=` query strings and the
//! `metav1.LabelSelector` objects that workload kinds carry, matched against objects kept as JSON.
//!
//! Everything here mirrors the v1.33 API server, because clients (kubectl, client-go informers,
//! controllers) depend on its exact behaviour and on its exact 400 messages:
//!
//! * label selector syntax, key/value validation and matching follow apimachinery `pkg/labels`
//!   (including its lexer, which reads bytes and treats a NUL byte as an end of input);
//! * field selector syntax and escaping follow apimachinery `pkg/fields`;
//! * which fields a kind accepts, the 400 text for the others and aliases such as a Pod's
//!   `spec.host` follow the field label conversion funcs each API group registers (or
//!   `runtime.DefaultMetaV1FieldSelectorConversion` for kinds that register none, or the custom
//!   resource converter for groups that are not built in);
//! * the value a field compares against follows the registries' `ToSelectableFields`, read off the
//!   stored (already defaulted) JSON object: booleans as `true`/`false`, integers in decimal, an
//!   absent string as `""`, an absent boolean as `false` and an absent count as `0`.
//!
//! Upstream quirks are kept on purpose. Among them: apps/v1 registers no conversion func, so a
//! ReplicaSet's `status.replicas` is refused with the generic message; Node and Namespace refuse
//! `metadata.namespace`; a Pod's `status.podIPs` is accepted but never populated upstream, so it
//! compares against `""`; Events' `source` falls back to the reporting controller.

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};

use super::validation::{label_value_errors, qualified_name_errors};

/// Why a selector was rejected; `Display` gives upstream's message, which the API answers in a
/// 400 Status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector string or object that upstream's parser or validation refuses.
    #[error("{0}")]
    Label(String),
    /// A field selector string that cannot be split into terms or unescaped.
    #[error("{0}")]
    FieldSyntax(String),
    /// A field selector naming a field the kind does not support.
    #[error("{0}")]
    UnsupportedField(String),
    /// A label selector object whose JSON shape does not fit `metav1.LabelSelector`.
    #[error("{0}")]
    Malformed(String),
}

// ---------------------------------------------------------------------------------------------
// Messages (name and label syntax come from `validation`, as object validation uses them).
// ---------------------------------------------------------------------------------------------

/// Go's `strconv.Quote` (what `%q` prints). Printability follows Go's `unicode.IsPrint` for
/// ASCII, controls, spaces, format characters, private use and noncharacters; unassigned code
/// points (which need Unicode tables) are taken as printable.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            _ if go_is_print(c) => out.push(c),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            _ => {
                let u = c as u32;
                if u < 0x20 || u == 0x7f {
                    out.push_str(&format!("\\x{u:02x}"));
                } else if u < 0x10000 {
                    out.push_str(&format!("\\u{u:04x}"));
                } else {
                    out.push_str(&format!("\\U{u:08x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

fn go_is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    let private_use = (0xE000..=0xF8FF).contains(&u) || u >= 0xF0000;
    let noncharacter = (0xFDD0..=0xFDEF).contains(&u) || (u & 0xFFFE) == 0xFFFE;
    let format = matches!(u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
        | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F);
    !(private_use || noncharacter || format)
}

/// Go's `%#v` of a `[]string` as `NewRequirement` reports it (an empty one is always nil there).
fn go_string_slice(values: &[String]) -> String {
    if values.is_empty() {
        return "[]string(nil)".to_string();
    }
    let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// `field.ErrorList.ToAggregate().Error()`: duplicates dropped, several bracketed.
fn aggregate(errs: Vec<String>) -> Option<String> {
    let mut seen: Vec<String> = Vec::with_capacity(errs.len());
    for e in errs {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    match seen.len() {
        0 => None,
        1 => seen.pop(),
        _ => Some(format!("[{}]", seen.join(", "))),
    }
}

// ---------------------------------------------------------------------------------------------
// Label selectors (k8s.io/apimachinery/pkg/labels).
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One `key op values` condition; a selector is the AND of its requirements.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// `labels.NewRequirement`, error text included. The paths are upstream's for a nil base
    /// path: `key`, `values`, `values[i]`, `values[i][key]`.
    fn new(key: &str, op: Operator, values: Vec<String>) -> Result<Requirement, String> {
        let mut errs = Vec::new();
        let key_errs = qualified_name_errors(key);
        if !key_errs.is_empty() {
            errs.push(format!(
                "key: Invalid value: {}: {}",
                go_quote(key),
                key_errs.join("; ")
            ));
        }
        match op {
            Operator::In | Operator::NotIn => {
                if values.is_empty() {
                    errs.push(format!(
                        "values: Invalid value: {}: for 'in', 'notin' operators, values set can't be empty",
                        go_string_slice(&values)
                    ));
                }
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
                if values.len() != 1 {
                    errs.push(format!(
                        "values: Invalid value: {}: exact-match compatibility requires one single value",
                        go_string_slice(&values)
                    ));
                }
            }
            Operator::Exists | Operator::DoesNotExist => {
                if !values.is_empty() {
                    errs.push(format!(
                        "values: Invalid value: {}: values set must be empty for exists and does not exist",
                        go_string_slice(&values)
                    ));
                }
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(format!(
                        "values: Invalid value: {}: for 'Gt', 'Lt' operators, exactly one value is required",
                        go_string_slice(&values)
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(format!(
                            "values[{i}]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                            go_quote(v)
                        ));
                    }
                }
            }
        }
        for (i, v) in values.iter().enumerate() {
            let value_errs = label_value_errors(v);
            if !value_errs.is_empty() {
                errs.push(format!(
                    "values[{i}][{key}]: Invalid value: {}: {}",
                    go_quote(v),
                    value_errs.join("; ")
                ));
            }
        }
        match aggregate(errs) {
            Some(e) => Err(e),
            None => Ok(Requirement {
                key: key.to_string(),
                op,
                values,
            }),
        }
    }

    fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let got = labels
            .and_then(|m| m.get(&self.key))
            .and_then(Value::as_str);
        let listed = |v: &str| self.values.iter().any(|x| x == v);
        match self.op {
            Operator::In | Operator::Equals | Operator::DoubleEquals => got.is_some_and(listed),
            Operator::NotIn | Operator::NotEquals => !got.is_some_and(listed),
            Operator::Exists => got.is_some(),
            Operator::DoesNotExist => got.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(have), [want]) = (got, self.values.as_slice()) else {
                    return false;
                };
                match (have.parse::<i64>(), want.parse::<i64>()) {
                    (Ok(have), Ok(want)) if self.op == Operator::GreaterThan => have > want,
                    (Ok(have), Ok(want)) => have < want,
                    _ => false,
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.op == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let (op, parens) = match self.op {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => ("=", false),
            Operator::DoubleEquals => ("==", false),
            Operator::NotEquals => ("!=", false),
            Operator::In => (" in ", true),
            Operator::NotIn => (" notin ", true),
            Operator::GreaterThan => (">", false),
            Operator::LessThan => ("<", false),
        };
        f.write_str(op)?;
        if parens {
            f.write_str("(")?;
        }
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        f.write_str(&values.join(","))?;
        if parens {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A parsed label selector: the AND of its requirements, or upstream's "nothing" selector that a
/// null `metav1.LabelSelector` stands for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// Parses `?labelSelector=` syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`,
    /// `!a`, and upstream's `a>1` / `a<1`, comma-separated (AND), blanks tolerated between tokens.
    /// The empty string selects everything. Keys must be qualified names with an optional DNS
    /// subdomain prefix and values valid label values; errors carry upstream's text.
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let mut parser = Parser::new(s);
        let mut requirements = parser.parse().map_err(SelectorError::Label)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Converts a `metav1.LabelSelector` object (`{matchLabels, matchExpressions}`, as
    /// Deployments, ReplicaSets and Jobs carry) like `metav1.LabelSelectorAsSelector`: JSON
    /// `null` gives a selector that matches nothing (see [`LabelSelector::matches_nothing`]), an
    /// object with no requirements one that matches everything.
    pub fn from_object(v: &Value) -> Result<LabelSelector, SelectorError> {
        let obj = match v {
            Value::Null => {
                return Ok(LabelSelector {
                    requirements: Vec::new(),
                    nothing: true,
                })
            }
            Value::Object(o) => o,
            other => {
                return Err(malformed(other, "Go value", "v1.LabelSelector"));
            }
        };
        let mut requirements = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                let mut keys: Vec<&String> = labels.keys().collect();
                keys.sort();
                for key in keys {
                    let value = match labels.get(key) {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Null) | None => String::new(),
                        Some(other) => {
                            return Err(malformed(
                                other,
                                "Go struct field LabelSelector.matchLabels",
                                "string",
                            ))
                        }
                    };
                    requirements.push(
                        Requirement::new(key, Operator::Equals, vec![value])
                            .map_err(SelectorError::Label)?,
                    );
                }
            }
            Some(other) => {
                return Err(malformed(
                    other,
                    "Go struct field LabelSelector.matchLabels",
                    "map[string]string",
                ))
            }
        }
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for expr in exprs {
                    requirements.push(expression_requirement(expr)?);
                }
            }
            Some(other) => {
                return Err(malformed(
                    other,
                    "Go struct field LabelSelector.matchExpressions",
                    "[]v1.LabelSelectorRequirement",
                ))
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Whether an object's `metadata.labels` (an object of strings, or null/absent for none)
    /// satisfies every requirement. A "nothing" selector matches no object.
    pub fn matches(&self, labels: &Value) -> bool {
        if self.nothing {
            return false;
        }
        let labels = labels.as_object();
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether the selector places no restriction (upstream `Empty()`): true for `""` and `{}`,
    /// false for the "nothing" selector.
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Whether this is upstream's "nothing" selector (from a null `metav1.LabelSelector`), which
    /// matches no object, so callers can skip the scan entirely.
    #[cfg(test)]
    pub fn matches_nothing(&self) -> bool {
        self.nothing
    }
}

/// Upstream's `String()`: requirements sorted by key, joined by commas; "nothing" prints empty.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nothing {
            return Ok(());
        }
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A decode error in the style of Go's encoding/json.
fn malformed(v: &Value, target: &str, go_type: &str) -> SelectorError {
    SelectorError::Malformed(format!(
        "json: cannot unmarshal {} into {target} of type {go_type}",
        json_type(v)
    ))
}

/// One `matchExpressions` entry as `LabelSelectorAsSelector` converts it.
fn expression_requirement(expr: &Value) -> Result<Requirement, SelectorError> {
    const FIELD: &str = "Go struct field LabelSelector.matchExpressions";
    let empty = Map::new();
    let expr = match expr {
        Value::Object(o) => o,
        Value::Null => &empty,
        other => return Err(malformed(other, FIELD, "v1.LabelSelectorRequirement")),
    };
    let text = |name: &str, go_type: &str| -> Result<String, SelectorError> {
        match expr.get(name) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(malformed(other, &format!("{FIELD}.{name}"), go_type)),
        }
    };
    let key = text("key", "string")?;
    let operator = text("operator", "v1.LabelSelectorOperator")?;
    let values = match expr.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut values = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => values.push(s.clone()),
                    Value::Null => values.push(String::new()),
                    other => {
                        return Err(malformed(other, &format!("{FIELD}.values"), "string"));
                    }
                }
            }
            values
        }
        Some(other) => return Err(malformed(other, &format!("{FIELD}.values"), "[]string")),
    };
    let op = match operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        _ => {
            return Err(SelectorError::Label(format!(
                "{} is not a valid label selector operator",
                go_quote(&operator)
            )))
        }
    };
    Requirement::new(&key, op, values).map_err(SelectorError::Label)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn literal_token(s: &[u8]) -> Option<Token> {
    Some(match s {
        b")" => Token::ClosedPar,
        b"," => Token::Comma,
        b"!" => Token::DoesNotExist,
        b"==" => Token::DoubleEquals,
        b"=" => Token::Equals,
        b">" => Token::GreaterThan,
        b"in" => Token::In,
        b"<" => Token::LessThan,
        b"!=" => Token::NotEquals,
        b"notin" => Token::NotIn,
        b"(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Upstream's byte lexer; `read` yields 0 past the end, so a NUL byte also ends a token (and,
/// where a token would start, the input).
struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn read(&mut self) -> u8 {
        match self.s.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => 0,
        }
    }

    fn unread(&mut self) {
        self.pos = self.pos.saturating_sub(1);
    }

    fn scan_identifier(&mut self) -> (Token, String) {
        let mut buf = Vec::new();
        loop {
            let c = self.read();
            if c == 0 {
                break;
            }
            if is_special(c) || is_whitespace(c) {
                self.unread();
                break;
            }
            buf.push(c);
        }
        let tok = literal_token(&buf).unwrap_or(Token::Identifier);
        (tok, String::from_utf8_lossy(&buf).into_owned())
    }

    fn scan_special(&mut self) -> (Token, String) {
        let mut buf = Vec::new();
        let mut last: Option<(Token, usize)> = None;
        loop {
            let c = self.read();
            if c == 0 {
                break;
            }
            if !is_special(c) {
                self.unread();
                break;
            }
            buf.push(c);
            if let Some(t) = literal_token(&buf) {
                last = Some((t, buf.len()));
            } else if last.is_some() {
                self.unread();
                break;
            }
        }
        match last {
            Some((t, n)) => (t, String::from_utf8_lossy(&buf[..n]).into_owned()),
            None => (
                Token::Error,
                format!(
                    "error expected: keyword found '{}'",
                    String::from_utf8_lossy(&buf)
                ),
            ),
        }
    }

    fn lex(&mut self) -> (Token, String) {
        let mut c = self.read();
        while is_whitespace(c) {
            c = self.read();
        }
        if c == 0 {
            return (Token::EndOfString, String::new());
        }
        self.unread();
        if is_special(c) {
            self.scan_special()
        } else {
            self.scan_identifier()
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

/// Upstream's recursive-descent parser over the pre-scanned tokens.
struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

impl Parser {
    fn new(s: &str) -> Parser {
        let mut lexer = Lexer {
            s: s.as_bytes(),
            pos: 0,
        };
        let mut items = Vec::new();
        loop {
            let item = lexer.lex();
            let end = item.0 == Token::EndOfString;
            items.push(item);
            if end {
                break;
            }
        }
        Parser { items, position: 0 }
    }

    fn at(&self, i: usize, ctx: Context) -> (Token, String) {
        let (tok, lit) = self
            .items
            .get(i)
            .cloned()
            .unwrap_or((Token::EndOfString, String::new()));
        match (ctx, tok) {
            (Context::Values, Token::In | Token::NotIn) => (Token::Identifier, lit),
            _ => (tok, lit),
        }
    }

    fn lookahead(&self, ctx: Context) -> (Token, String) {
        self.at(self.position, ctx)
    }

    fn consume(&mut self, ctx: Context) -> (Token, String) {
        self.position += 1;
        self.at(self.position - 1, ctx)
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self
                        .parse_requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(r);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(format!(
                                    "found '{l2}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => return Err(format!("found '{l}', expected: ',' or 'end of string'")),
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    ))
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        if let Some(op) = inferred {
            return Requirement::new(&key, op, Vec::new());
        }
        let op = self.parse_operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(&key, op, values)
    }

    /// The key, and `Exists`/`DoesNotExist` when no binary operator follows (a `!key` stays
    /// `DoesNotExist` whatever follows, as upstream).
    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let mut op = None;
        let (mut tok, mut lit) = self.consume(Context::Values);
        if tok == Token::DoesNotExist {
            op = Some(Operator::DoesNotExist);
            (tok, lit) = self.consume(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        let errs = qualified_name_errors(&lit);
        if !errs.is_empty() {
            return Err(format!(
                "<nil>: Invalid value: {}: {}",
                go_quote(&lit),
                errs.join("; ")
            ));
        }
        let (next, _) = self.lookahead(Context::Values);
        if (next == Token::EndOfString || next == Token::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        Ok((lit, op))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ))
            }
        })
    }

    /// `(x,y,z)`; the result is a sorted set, as upstream's `sets.String.List()`.
    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Token::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Context::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let set = self.parse_identifiers_list()?;
                if self.consume(Context::Values).0 != Token::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(set)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut set: Vec<String> = Vec::new();
        let insert = |set: &mut Vec<String>, v: String| {
            if let Err(i) = set.binary_search(&v) {
                set.insert(i, v);
            }
        };
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Token::Identifier => {
                    insert(&mut set, lit);
                    let (t2, l2) = self.lookahead(Context::Values);
                    match t2 {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(set),
                        _ => return Err(format!("found '{l2}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    if set.is_empty() {
                        insert(&mut set, String::new());
                    }
                    let (t2, _) = self.lookahead(Context::Values);
                    if t2 == Token::ClosedPar {
                        insert(&mut set, String::new());
                        return Ok(set);
                    }
                    if t2 == Token::Comma {
                        self.consume(Context::Values);
                        insert(&mut set, String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        let (tok, _) = self.lookahead(Context::Values);
        if tok == Token::EndOfString || tok == Token::Comma {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok == Token::Identifier {
            Ok(vec![lit])
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Field selectors (k8s.io/apimachinery/pkg/fields + per-kind conversions and field sets).
// ---------------------------------------------------------------------------------------------

/// Groups whose kinds are built in: a kind there without its own conversion func gets
/// `DefaultMetaV1FieldSelectorConversion`; any other group is taken for custom resources.
const BUILTIN_GROUPS: &[&str] = &[
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "metrics.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "storagemigration.k8s.io",
];

const META: &[&str] = &["metadata.name", "metadata.namespace"];
const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
];
const NODE_FIELDS: &[&str] = &["metadata.name", "spec.unschedulable"];
const REPLICATION_CONTROLLER_FIELDS: &[&str] =
    &["metadata.name", "metadata.namespace", "status.replicas"];
const CORE_EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];
const NAMESPACE_FIELDS: &[&str] = &["status.phase", "metadata.name"];
const SECRET_FIELDS: &[&str] = &["type", "metadata.namespace", "metadata.name"];
const SERVICE_FIELDS: &[&str] = &[
    "metadata.namespace",
    "metadata.name",
    "spec.clusterIP",
    "spec.type",
];
/// events.k8s.io/v1 labels and the core Event labels they select on.
const EVENTS_EVENT_FIELDS: &[(&str, &str)] = &[
    ("reason", "reason"),
    ("regarding.kind", "involvedObject.kind"),
    ("regarding.namespace", "involvedObject.namespace"),
    ("regarding.name", "involvedObject.name"),
    ("regarding.uid", "involvedObject.uid"),
    ("regarding.apiVersion", "involvedObject.apiVersion"),
    (
        "regarding.resourceVersion",
        "involvedObject.resourceVersion",
    ),
    ("regarding.fieldPath", "involvedObject.fieldPath"),
    ("reportingController", "reportingComponent"),
    ("source", "source"),
    ("type", "type"),
    ("metadata.namespace", "metadata.namespace"),
    ("metadata.name", "metadata.name"),
];
const JOB_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "status.successful"];
const SIGNER_FIELDS: &[&str] = &["metadata.name", "spec.signerName"];
const RESOURCE_SLICE_FIELDS: &[&str] = &["metadata.name", "spec.nodeName", "spec.driver"];

/// Which conversion func and field set a field selector uses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FieldKind {
    Pod,
    Node,
    ReplicationController,
    CoreEvent,
    Namespace,
    Secret,
    Service,
    EventsEvent,
    Job,
    CertificateSigningRequest,
    ClusterTrustBundle,
    ResourceSlice,
    /// A built-in kind without a conversion func of its own.
    Builtin,
    /// A custom resource: its scope and its CRD's selectable fields (dotted paths).
    Custom {
        namespaced: bool,
        fields: Vec<String>,
    },
}

impl FieldKind {
    fn of(group: &str, kind: &str) -> FieldKind {
        match (group, kind) {
            ("", "Pod") => FieldKind::Pod,
            ("", "Node") => FieldKind::Node,
            ("", "ReplicationController") => FieldKind::ReplicationController,
            ("", "Event") => FieldKind::CoreEvent,
            ("", "Namespace") => FieldKind::Namespace,
            ("", "Secret") => FieldKind::Secret,
            ("", "Service") => FieldKind::Service,
            ("events.k8s.io", "Event") => FieldKind::EventsEvent,
            ("batch", "Job") => FieldKind::Job,
            ("certificates.k8s.io", "CertificateSigningRequest") => {
                FieldKind::CertificateSigningRequest
            }
            ("certificates.k8s.io", "ClusterTrustBundle") => FieldKind::ClusterTrustBundle,
            ("resource.k8s.io", "ResourceSlice") => FieldKind::ResourceSlice,
            (g, _) if BUILTIN_GROUPS.contains(&g) => FieldKind::Builtin,
            _ => FieldKind::Custom {
                namespaced: true,
                fields: Vec::new(),
            },
        }
    }

    /// The kind's field label conversion: the label selected on, or upstream's refusal.
    fn convert(&self, label: &str) -> Result<String, SelectorError> {
        let accepted: &[&str] = match self {
            FieldKind::Pod if label == "spec.host" => return Ok("spec.nodeName".to_string()),
            FieldKind::Pod => POD_FIELDS,
            FieldKind::Node => NODE_FIELDS,
            FieldKind::ReplicationController => REPLICATION_CONTROLLER_FIELDS,
            FieldKind::CoreEvent => CORE_EVENT_FIELDS,
            FieldKind::Namespace => NAMESPACE_FIELDS,
            FieldKind::Secret => SECRET_FIELDS,
            FieldKind::Service => SERVICE_FIELDS,
            FieldKind::EventsEvent => {
                return match EVENTS_EVENT_FIELDS.iter().find(|(l, _)| *l == label) {
                    Some((_, canonical)) => Ok((*canonical).to_string()),
                    None => Err(self.unsupported(label)),
                }
            }
            FieldKind::Job => JOB_FIELDS,
            FieldKind::CertificateSigningRequest | FieldKind::ClusterTrustBundle => SIGNER_FIELDS,
            FieldKind::ResourceSlice => RESOURCE_SLICE_FIELDS,
            FieldKind::Builtin => META,
            FieldKind::Custom { namespaced, fields } => {
                let known = label == "metadata.name"
                    || (*namespaced && label == "metadata.namespace")
                    || fields.iter().any(|f| f == label);
                return if known {
                    Ok(label.to_string())
                } else {
                    Err(self.unsupported(label))
                };
            }
        };
        if accepted.contains(&label) {
            Ok(label.to_string())
        } else {
            Err(self.unsupported(label))
        }
    }

    fn unsupported(&self, label: &str) -> SelectorError {
        SelectorError::UnsupportedField(match self {
            FieldKind::Builtin => format!(
                "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                go_quote(label)
            ),
            FieldKind::Job => format!("field label {} not supported for Job", go_quote(label)),
            FieldKind::ResourceSlice => format!(
                "field label not supported for resource.k8s.io/v1beta1, Kind=ResourceSlice: {label}"
            ),
            _ => format!("field label not supported: {label}"),
        })
    }

    /// The value `ToSelectableFields` gives `field` (a converted label) for `obj`; fields the
    /// kind's set lacks read as `""`, as `fields.Set.Get` does.
    fn value<'a>(&self, obj: &'a Value, field: &str) -> Cow<'a, str> {
        let s = |path: &[&str]| Cow::Borrowed(str_at(obj, path));
        match field {
            "metadata.name" => return s(&["metadata", "name"]),
            "metadata.namespace" => return s(&["metadata", "namespace"]),
            _ => {}
        }
        match self {
            FieldKind::Pod => match field {
                "spec.nodeName" => s(&["spec", "nodeName"]),
                "spec.restartPolicy" => s(&["spec", "restartPolicy"]),
                "spec.schedulerName" => s(&["spec", "schedulerName"]),
                "spec.serviceAccountName" => Cow::Borrowed(non_empty_or(
                    str_at(obj, &["spec", "serviceAccountName"]),
                    str_at(obj, &["spec", "serviceAccount"]),
                )),
                "spec.hostNetwork" => bool_at(obj, &["spec", "hostNetwork"]),
                "status.phase" => s(&["status", "phase"]),
                "status.podIP" => {
                    let first = obj
                        .pointer("/status/podIPs/0/ip")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    Cow::Borrowed(non_empty_or(str_at(obj, &["status", "podIP"]), first))
                }
                "status.nominatedNodeName" => s(&["status", "nominatedNodeName"]),
                _ => Cow::Borrowed(""),
            },
            FieldKind::Node => match field {
                "spec.unschedulable" => bool_at(obj, &["spec", "unschedulable"]),
                _ => Cow::Borrowed(""),
            },
            FieldKind::ReplicationController => match field {
                "status.replicas" => int_at(obj, &["status", "replicas"]),
                _ => Cow::Borrowed(""),
            },
            FieldKind::CoreEvent => match field {
                "source" => Cow::Borrowed(non_empty_or(
                    str_at(obj, &["source", "component"]),
                    str_at(obj, &["reportingComponent"]),
                )),
                _ => match field.strip_prefix("involvedObject.") {
                    Some(sub) => s(&["involvedObject", sub]),
                    None if matches!(field, "reason" | "reportingComponent" | "type") => {
                        s(&[field])
                    }
                    None => Cow::Borrowed(""),
                },
            },
            FieldKind::EventsEvent => match field {
                "reportingComponent" => s(&["reportingController"]),
                "source" => Cow::Borrowed(non_empty_or(
                    str_at(obj, &["deprecatedSource", "component"]),
                    str_at(obj, &["reportingController"]),
                )),
                "reason" | "type" => s(&[field]),
                _ => match field.strip_prefix("involvedObject.") {
                    Some(sub) => s(&["regarding", sub]),
                    None => Cow::Borrowed(""),
                },
            },
            FieldKind::Namespace => match field {
                "status.phase" => s(&["status", "phase"]),
                _ => Cow::Borrowed(""),
            },
            FieldKind::Secret => match field {
                "type" => s(&["type"]),
                _ => Cow::Borrowed(""),
            },
            FieldKind::Service => match field {
                "spec.clusterIP" => s(&["spec", "clusterIP"]),
                "spec.type" => s(&["spec", "type"]),
                _ => Cow::Borrowed(""),
            },
            FieldKind::Job => match field {
                "status.successful" => int_at(obj, &["status", "succeeded"]),
                _ => Cow::Borrowed(""),
            },
            FieldKind::CertificateSigningRequest | FieldKind::ClusterTrustBundle => match field {
                "spec.signerName" => s(&["spec", "signerName"]),
                _ => Cow::Borrowed(""),
            },
            FieldKind::ResourceSlice => match field {
                "spec.nodeName" => s(&["spec", "nodeName"]),
                "spec.driver" => s(&["spec", "driver"]),
                _ => Cow::Borrowed(""),
            },
            FieldKind::Builtin => Cow::Borrowed(""),
            FieldKind::Custom { fields, .. } => {
                if !fields.iter().any(|f| f == field) {
                    return Cow::Borrowed("");
                }
                let path: Vec<&str> = field.split('.').collect();
                match value_at(obj, &path) {
                    Some(Value::String(s)) => Cow::Borrowed(s.as_str()),
                    Some(Value::Bool(b)) => Cow::Borrowed(if *b { "true" } else { "false" }),
                    Some(Value::Number(n)) => Cow::Owned(n.to_string()),
                    _ => Cow::Borrowed(""),
                }
            }
        }
    }
}

fn value_at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, seg| v.as_object()?.get(*seg))
}

fn str_at<'a>(obj: &'a Value, path: &[&str]) -> &'a str {
    value_at(obj, path).and_then(Value::as_str).unwrap_or("")
}

fn non_empty_or<'a>(first: &'a str, fallback: &'a str) -> &'a str {
    if first.is_empty() {
        fallback
    } else {
        first
    }
}

/// `strconv.FormatBool` of a bool that is false when absent.
fn bool_at<'a>(obj: &Value, path: &[&str]) -> Cow<'a, str> {
    let b = value_at(obj, path)
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Cow::Borrowed(if b { "true" } else { "false" })
}

/// `strconv.Itoa` of a count that is 0 when absent.
fn int_at<'a>(obj: &Value, path: &[&str]) -> Cow<'a, str> {
    let n = match value_at(obj, path) {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
            .unwrap_or(0),
        _ => 0,
    };
    Cow::Owned(n.to_string())
}

/// One `field=value` (or `field!=value`) term, its field already converted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldTerm {
    field: String,
    value: String,
    negated: bool,
}

/// A parsed field selector for one kind: the AND of `field=value` / `field!=value` terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSelector {
    kind: FieldKind,
    terms: Vec<FieldTerm>,
}

impl Default for FieldSelector {
    /// The selector that places no restriction.
    fn default() -> Self {
        FieldSelector {
            kind: FieldKind::Builtin,
            terms: Vec::new(),
        }
    }
}

impl FieldSelector {
    /// Parses `?fieldSelector=` syntax (`f=v`, `f==v`, `f!=v`, comma-separated; `\`, `,` and `=`
    /// in values escaped with a backslash) for objects of `kind` in API group `group` (`""` for
    /// core), then runs every term through that kind's field label conversion, so unsupported
    /// fields give upstream's 400 text. A group that is not built in is taken for a namespaced
    /// custom resource without selectable fields.
    pub fn parse(group: &str, kind: &str, s: &str) -> Result<FieldSelector, SelectorError> {
        Self::parse_for(FieldKind::of(group, kind), s)
    }

    fn parse_for(kind: FieldKind, selector: &str) -> Result<FieldSelector, SelectorError> {
        let mut parts = split_terms(selector);
        parts.sort_unstable();
        let mut raw = Vec::with_capacity(parts.len());
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((lhs, op, rhs)) = split_term(part) else {
                return Err(SelectorError::FieldSyntax(format!(
                    "invalid selector: '{selector}'; can't understand '{part}'"
                )));
            };
            let value = unescape_value(rhs)?;
            raw.push((lhs, value, op == "!="));
        }
        let mut terms = Vec::with_capacity(raw.len());
        for (lhs, value, negated) in raw {
            let field = kind.convert(lhs)?;
            if field.is_empty() && value.is_empty() {
                continue;
            }
            terms.push(FieldTerm {
                field,
                value,
                negated,
            });
        }
        Ok(FieldSelector { kind, terms })
    }

    /// Whether `obj` satisfies every term, comparing against the string upstream's field set
    /// holds for the field.
    pub fn matches(&self, obj: &Value) -> bool {
        self.terms
            .iter()
            .all(|t| (self.kind.value(obj, &t.field) == t.value.as_str()) != t.negated)
    }

    /// The name a `metadata.name=X` (or `==`) term pins, so a list can read one key instead of
    /// scanning; the other terms still have to match.
    pub fn name(&self) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| !t.negated && t.field == "metadata.name")
            .map(|t| t.value.as_str())
    }

    /// Whether the selector places no restriction.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

/// Upstream's `String()`: converted terms, values escaped, joined by commas.
impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&t.field)?;
            f.write_str(if t.negated { "!=" } else { "=" })?;
            for c in t.value.chars() {
                if matches!(c, '\\' | ',' | '=') {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// `fields.splitTerms`: split on commas not escaped by a backslash (escapes kept).
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// `fields.splitTerm`: split at the first `!=`, `==` or `=`; the left side is never unescaped.
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for op in ["!=", "==", "="] {
            if let Some(rhs) = rest.strip_prefix(op) {
                return Some((&term[..i], op, rhs));
            }
        }
    }
    None
}

/// `fields.UnescapeValue`, error texts included.
fn unescape_value(s: &str) -> Result<String, SelectorError> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => {
                    return Err(SelectorError::FieldSyntax(format!(
                        "invalid field selector: invalid escape sequence: \\{c}"
                    )))
                }
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => {
                return Err(SelectorError::FieldSyntax(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )))
            }
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::FieldSyntax(
            "invalid field selector: invalid escape sequence: \\".to_string(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Upstream's qualified-name regex explanation, typed out independently of the code.
    const QN: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const LV: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
    const SUB: &str = r"a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

    fn label_err(s: &str) -> String {
        match LabelSelector::parse(s) {
            Ok(sel) => panic!("{s:?} parsed as {sel:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn labels_ok(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn field_err(group: &str, kind: &str, s: &str) -> String {
        match FieldSelector::parse(group, kind, s) {
            Ok(sel) => panic!("{s:?} parsed as {sel:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn fields_ok(group: &str, kind: &str, s: &str) -> FieldSelector {
        FieldSelector::parse(group, kind, s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn matches(sel: &str, labels: Value) -> bool {
        labels_ok(sel).matches(&labels)
    }

    // ----- label selector syntax -----

    #[test]
    fn empty_label_selector_selects_everything() {
        for s in ["", "   ", "\t\n\r "] {
            let sel = labels_ok(s);
            assert!(sel.is_empty());
            assert!(!sel.matches_nothing());
            assert!(sel.matches(&json!({"a": "b"})));
            assert!(sel.matches(&Value::Null));
            assert_eq!(sel.to_string(), "");
        }
    }

    #[test]
    fn label_operators_parse_and_print() {
        for (input, printed) in [
            ("x=a,y=b,z=c", "x=a,y=b,z=c"),
            ("x!=a,y=b", "x!=a,y=b"),
            ("x==a", "x==a"),
            ("x=", "x="),
            ("x= ", "x="),
            ("x=,z= ", "x=,z="),
            ("!x", "!x"),
            ("x", "x"),
            ("x>1", "x>1"),
            ("x>1,z<5", "x>1,z<5"),
            ("x in (b,a)", "x in (a,b)"),
            ("x notin (a)", "x notin (a)"),
            ("x in ()", "x in ()"),
            ("x in (abc,)", "x in (,abc)"),
            (
                "x notin (abc,,def),bar,z in (),w",
                "bar,w,x notin (,abc,def),z in ()",
            ),
            ("x notin ( )", "x notin ()"),
            ("x notin (, a)", "x notin (,a)"),
            ("a in (x,y,notin, z,in)", "a in (in,notin,x,y,z)"),
            ("foo  in\t (abc)", "foo in (abc)"),
            ("x notin\n (abc)", "x notin (abc)"),
            ("\rx", "x"),
            ("a ", "a"),
            ("notin=in", "notin=in"),
            ("x=a,a=x", "a=x,x=a"),
            (
                "this-is-a-dns.domain.com/key-with-dash",
                "this-is-a-dns.domain.com/key-with-dash",
            ),
            (
                "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
                "0.1.2.domain/99 notin (10.10.100.1,tick.tack.clock)",
            ),
        ] {
            assert_eq!(labels_ok(input).to_string(), printed, "{input:?}");
        }
    }

    #[test]
    fn label_syntax_errors_carry_upstream_text() {
        for (input, want) in [
            ("x==a==b", "found '==', expected: ',' or 'end of string'"),
            ("!x=a", "found '=', expected: ',' or 'end of string'"),
            ("x,,y", "found ',', expected: identifier after ','"),
            (",x,y", "found ',', expected: !, identifier, or 'end of string'"),
            ("a in (xyz),", "found '', expected: identifier after ','"),
            ("a in (xyz)b notin ()", "found 'b', expected: ',' or 'end of string'"),
            ("a=b c", "found 'c', expected: ',' or 'end of string'"),
            ("(", "found '(', expected: !, identifier, or 'end of string'"),
            ("!=a", "found '!=', expected: !, identifier, or 'end of string'"),
            (
                "x nott in (y)",
                "unable to parse requirement: found 'nott', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "a (",
                "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "a in (xyz abc)",
                "unable to parse requirement: found 'abc', expected: ',' or ')'",
            ),
            (
                "a in (b",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "a notin(",
                "unable to parse requirement: found '', expected: ',', ')' or identifier",
            ),
            (
                "a in (!)",
                "unable to parse requirement: found '!', expected: ',', ')' or identifier",
            ),
            (
                "a in (b,!)",
                "unable to parse requirement: found '!', expected: ',', or identifier",
            ),
            ("a in x", "unable to parse requirement: found 'x' expected: '('"),
            ("a=(b)", "unable to parse requirement: found '(', expected: identifier"),
            ("!", "unable to parse requirement: found '', expected: identifier"),
            ("!,a", "unable to parse requirement: found ',', expected: identifier"),
            (
                "x<a",
                "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer",
            ),
        ] {
            assert_eq!(label_err(input), want, "{input:?}");
        }
    }

    #[test]
    fn label_key_validation() {
        assert_eq!(
            label_err("-a=b"),
            format!("unable to parse requirement: <nil>: Invalid value: \"-a\": name part {QN}")
        );
        assert_eq!(
            label_err("Foo.com/bar"),
            format!(
                "unable to parse requirement: <nil>: Invalid value: \"Foo.com/bar\": prefix part {SUB}"
            )
        );
        assert_eq!(
            label_err("/a"),
            "unable to parse requirement: <nil>: Invalid value: \"/a\": prefix part must be non-empty"
        );
        assert_eq!(
            label_err("a/"),
            format!(
                "unable to parse requirement: <nil>: Invalid value: \"a/\": name part must be non-empty; name part {QN}"
            )
        );
        assert_eq!(
            label_err("a/b/c"),
            format!(
                "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name {QN} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )
        );
        let long = "k".repeat(64);
        assert_eq!(
            label_err(&long),
            format!(
                "unable to parse requirement: <nil>: Invalid value: \"{long}\": name part must be no more than 63 characters"
            )
        );
        let long_prefix = format!("{}/k", "p".repeat(254));
        assert_eq!(
            label_err(&long_prefix),
            format!(
                "unable to parse requirement: <nil>: Invalid value: \"{long_prefix}\": prefix part must be no more than 253 characters"
            )
        );
        // Upper case and underscores are fine in the name part, not in the prefix.
        labels_ok("example.com/My_Name.x-1");
        labels_ok(&"k".repeat(63));
        labels_ok("in in (in)");
    }

    #[test]
    fn label_value_validation() {
        let long = "v".repeat(64);
        assert_eq!(
            label_err(&format!("k={long}")),
            format!(
                "unable to parse requirement: values[0][k]: Invalid value: \"{long}\": must be no more than 63 characters"
            )
        );
        assert_eq!(
            label_err("k=a||b"),
            format!("unable to parse requirement: values[0][k]: Invalid value: \"a||b\": {LV}")
        );
        assert_eq!(
            label_err("k in (-b,-a)"),
            format!(
                "unable to parse requirement: [values[0][k]: Invalid value: \"-a\": {LV}, values[1][k]: Invalid value: \"-b\": {LV}]"
            )
        );
        // A negative number is an integer but not a label value, as upstream.
        assert_eq!(
            label_err("x>-1"),
            format!("unable to parse requirement: values[0][x]: Invalid value: \"-1\": {LV}")
        );
        assert_eq!(
            label_err("k=\"q\""),
            format!(
                "unable to parse requirement: values[0][k]: Invalid value: \"\\\"q\\\"\": {LV}"
            )
        );
        labels_ok(&format!("k={}", "v".repeat(63)));
        labels_ok("k=My_value-1.2");
    }

    #[test]
    fn nul_byte_ends_input_like_upstream() {
        // A NUL where a token would start ends the input...
        assert!(labels_ok("\0a=b").is_empty());
        assert_eq!(
            label_err("a=b, \0c"),
            "found '', expected: identifier after ','"
        );
        // ...and one right after a token is swallowed with it.
        assert_eq!(labels_ok("a=b\0").to_string(), "a=b");
        assert_eq!(labels_ok("a=b,\0c").to_string(), "a=b,c");
        assert_eq!(
            label_err("a\0b"),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
    }

    #[test]
    fn non_ascii_does_not_panic() {
        assert_eq!(
            label_err("ключ=значение"),
            format!("unable to parse requirement: <nil>: Invalid value: \"ключ\": name part {QN}")
        );
        assert_eq!(
            label_err("k=\u{a0}"),
            format!("unable to parse requirement: values[0][k]: Invalid value: \"\\u00a0\": {LV}")
        );
    }

    // ----- label matching -----

    #[test]
    fn label_matching_per_operator() {
        let set = json!({"foo": "bar", "baz": "blah", "n": "5"});
        for (sel, want) in [
            ("", true),
            ("foo=bar", true),
            ("foo==bar", true),
            ("foo=bar,baz=blah", true),
            ("foo=blah", false),
            ("foo=bar,foobar=bar,baz=blah", false),
            ("foo!=bar", false),
            ("foo!=x", true),
            ("missing!=x", true),
            ("foo in (a,bar)", true),
            ("foo in (a,b)", false),
            ("missing in (a)", false),
            ("foo notin (bar)", false),
            ("foo notin (a)", true),
            ("missing notin (a)", true),
            ("foo", true),
            ("missing", false),
            ("!foo", false),
            ("!missing", true),
            ("n>4", true),
            ("n>5", false),
            ("n<6", true),
            ("n<5", false),
            ("foo>1", false),
            ("missing>1", false),
            ("missing<1", false),
            ("missing=", false),
            ("foo in ()", false),
            ("missing notin ()", true),
        ] {
            assert_eq!(matches(sel, set.clone()), want, "{sel:?}");
        }
    }

    #[test]
    fn label_matching_on_absent_or_odd_labels() {
        assert!(matches("!a", Value::Null));
        assert!(!matches("a", Value::Null));
        assert!(matches("a!=b", json!({})));
        assert!(!matches("a=b", json!("a=b")));
        // A non-string value is no label at all.
        assert!(!matches("a", json!({"a": 1})));
        assert!(matches("!a", json!({"a": true})));
        assert!(matches("a=", json!({"a": ""})));
    }

    // ----- metav1.LabelSelector objects -----

    #[test]
    fn null_object_matches_nothing_and_empty_object_everything() {
        let nothing = LabelSelector::from_object(&Value::Null).unwrap();
        assert!(nothing.matches_nothing());
        assert!(!nothing.is_empty());
        assert!(!nothing.matches(&json!({})));
        assert!(!nothing.matches(&Value::Null));

        for v in [
            json!({}),
            json!({"matchLabels": {}}),
            json!({"matchLabels": null, "matchExpressions": []}),
        ] {
            let all = LabelSelector::from_object(&v).unwrap();
            assert!(all.is_empty(), "{v}");
            assert!(!all.matches_nothing());
            assert!(all.matches(&json!({"x": "y"})));
            assert!(all.matches(&Value::Null));
        }
    }

    #[test]
    fn object_selector_matches() {
        let sel = LabelSelector::from_object(&json!({
            "matchLabels": {"app": "web", "tier": "front"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "team", "operator": "Exists"},
                {"key": "zone", "operator": "NotIn", "values": ["a"]}
            ]
        }))
        .unwrap();
        assert_eq!(
            sel.to_string(),
            "app=web,!canary,env in (prod,staging),team,tier=front,zone notin (a)"
        );
        let good = json!({"app": "web", "tier": "front", "env": "prod", "team": "x"});
        assert!(sel.matches(&good));
        let mut bad = good.clone();
        bad["canary"] = json!("1");
        assert!(!sel.matches(&bad));
        let mut bad = good.clone();
        bad["zone"] = json!("a");
        assert!(!sel.matches(&bad));
        let mut bad = good.clone();
        bad["env"] = json!("dev");
        assert!(!sel.matches(&bad));
        assert!(!sel.matches(&json!({"app": "web"})));
    }

    #[test]
    fn object_selector_errors_carry_upstream_text() {
        let err = |v: Value| LabelSelector::from_object(&v).unwrap_err().to_string();
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "Foo"}]})),
            "\"Foo\" is not a valid label selector operator"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a"}]})),
            "\"\" is not a valid label selector operator"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "In"}]})),
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]})),
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x", "y"]}]})),
            "values: Invalid value: []string{\"x\", \"y\"}: values set must be empty for exists and does not exist"
        );
        assert_eq!(
            err(json!({"matchLabels": {"bad key": "ok"}})),
            format!("key: Invalid value: \"bad key\": name part {QN}")
        );
        assert_eq!(
            err(json!({"matchLabels": {"bad key": "bad value"}})),
            format!(
                "[key: Invalid value: \"bad key\": name part {QN}, values[0][bad key]: Invalid value: \"bad value\": {LV}]"
            )
        );
        assert_eq!(
            err(
                json!({"matchExpressions": [{"key": "k", "operator": "In", "values": ["ok", "-no"]}]})
            ),
            format!("values[1][k]: Invalid value: \"-no\": {LV}")
        );
    }

    #[test]
    fn object_selector_shape_errors() {
        let err = |v: Value| LabelSelector::from_object(&v).unwrap_err();
        assert_eq!(
            err(json!("app=web")),
            SelectorError::Malformed(
                "json: cannot unmarshal string into Go value of type v1.LabelSelector".into()
            )
        );
        assert_eq!(
            err(json!({"matchLabels": "app=web"})).to_string(),
            "json: cannot unmarshal string into Go struct field LabelSelector.matchLabels of type map[string]string"
        );
        assert_eq!(
            err(json!({"matchLabels": {"a": 1}})).to_string(),
            "json: cannot unmarshal number into Go struct field LabelSelector.matchLabels of type string"
        );
        assert_eq!(
            err(json!({"matchExpressions": {}})).to_string(),
            "json: cannot unmarshal object into Go struct field LabelSelector.matchExpressions of type []v1.LabelSelectorRequirement"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]}))
                .to_string(),
            "json: cannot unmarshal number into Go struct field LabelSelector.matchExpressions.values of type string"
        );
        assert_eq!(
            err(json!({"matchExpressions": [null]})).to_string(),
            "\"\" is not a valid label selector operator"
        );
    }

    // ----- field selector syntax -----

    #[test]
    fn empty_field_selector_selects_everything() {
        for s in ["", ",", ",,,"] {
            let sel = fields_ok("", "Pod", s);
            assert!(sel.is_empty());
            assert_eq!(sel.name(), None);
            assert!(sel.matches(&json!({})));
            assert_eq!(sel.to_string(), "");
        }
        assert!(FieldSelector::default().is_empty());
        assert!(FieldSelector::default().matches(&Value::Null));
    }

    #[test]
    fn field_operators() {
        let pod =
            json!({"metadata": {"name": "p", "namespace": "ns"}, "status": {"phase": "Running"}});
        for (sel, want) in [
            ("status.phase=Running", true),
            ("status.phase==Running", true),
            ("status.phase!=Running", false),
            ("status.phase!=Pending", true),
            ("status.phase=Running,metadata.namespace=ns", true),
            ("status.phase=Running,metadata.namespace=other", false),
            ("metadata.name=p,metadata.name!=q", true),
            ("spec.nodeName=", true),
            ("spec.nodeName!=", false),
        ] {
            assert_eq!(fields_ok("", "Pod", sel).matches(&pod), want, "{sel:?}");
        }
    }

    #[test]
    fn field_syntax_errors_carry_upstream_text() {
        for (input, want) in [
            ("x", "invalid selector: 'x'; can't understand 'x'"),
            (
                "x in (a)",
                "invalid selector: 'x in (a)'; can't understand 'x in (a)'",
            ),
            (
                "metadata.name=a,b",
                "invalid selector: 'metadata.name=a,b'; can't understand 'b'",
            ),
            (
                "metadata.name==a==b",
                "invalid field selector: unescaped character in value: 61",
            ),
            (
                "metadata.name=a,b=c=d",
                "invalid field selector: unescaped character in value: 61",
            ),
            (
                r"metadata.name=a\b",
                r"invalid field selector: invalid escape sequence: \b",
            ),
            (
                r"metadata.name=a\",
                r"invalid field selector: invalid escape sequence: \",
            ),
            (
                r"metadata.name=\\\",
                r"invalid field selector: invalid escape sequence: \",
            ),
        ] {
            let err = FieldSelector::parse("", "Pod", input).unwrap_err();
            assert!(matches!(err, SelectorError::FieldSyntax(_)), "{input:?}");
            assert_eq!(err.to_string(), want, "{input:?}");
        }
    }

    #[test]
    fn field_errors_follow_upstream_order() {
        // Terms are sorted; every term must parse before any is converted.
        assert_eq!(
            field_err("", "Pod", "foo=bar,zzz"),
            "invalid selector: 'foo=bar,zzz'; can't understand 'zzz'"
        );
        assert_eq!(
            field_err("", "Pod", "b=1,a=2"),
            "field label not supported: a"
        );
        assert_eq!(
            field_err("", "Pod", "zz=1,aa=x\\q"),
            r"invalid field selector: invalid escape sequence: \q"
        );
    }

    #[test]
    fn field_escapes() {
        let named = |name: &str| json!({"metadata": {"name": name}});
        for (sel, name) in [
            (r"metadata.name=a\,b", "a,b"),
            (r"metadata.name=a\=b", "a=b"),
            (r"metadata.name=a\\b", r"a\b"),
            (r"metadata.name=\\\=\\\,\\", r"\=\,\"),
            ("metadata.name=함", "함"),
            ("metadata.name= x", " x"),
        ] {
            let s = fields_ok("", "ConfigMap", sel);
            assert!(s.matches(&named(name)), "{sel:?}");
            assert!(!s.matches(&named("other")), "{sel:?}");
            assert_eq!(s.name(), Some(name));
            assert_eq!(s.to_string(), sel);
        }
        let s = fields_ok("", "ConfigMap", r"metadata.name=a\,b,metadata.namespace=ns");
        assert!(s.matches(&json!({"metadata": {"name": "a,b", "namespace": "ns"}})));
        assert_eq!(s.to_string(), r"metadata.name=a\,b,metadata.namespace=ns");
        // The left side is never unescaped: a blank makes an unknown field.
        assert_eq!(
            field_err("", "ConfigMap", "metadata.name =x"),
            "\"metadata.name \" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
    }

    #[test]
    fn field_name_pin() {
        assert_eq!(
            fields_ok("", "Pod", "status.phase=Running,metadata.name=foo").name(),
            Some("foo")
        );
        assert_eq!(
            fields_ok("", "Pod", "metadata.name==foo").name(),
            Some("foo")
        );
        assert_eq!(fields_ok("", "Pod", "metadata.name!=foo").name(), None);
        assert_eq!(fields_ok("", "Pod", "metadata.namespace=foo").name(), None);
        // Two pins: the first in sorted order, and nothing can match both.
        let both = fields_ok("", "Pod", "metadata.name=b,metadata.name=a");
        assert_eq!(both.name(), Some("a"));
        assert!(!both.matches(&json!({"metadata": {"name": "a"}})));
    }

    // ----- per-kind fields -----

    #[test]
    fn kinds_without_conversion_get_the_generic_message() {
        let msg = |f: &str| {
            format!(
                "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                go_quote(f)
            )
        };
        for (group, kind, field) in [
            ("", "ConfigMap", "data.x"),
            ("", "PersistentVolume", "name"),
            ("apps", "Deployment", "status.replicas"),
            ("apps", "ReplicaSet", "status.replicas"),
            ("batch", "CronJob", "spec.suspend"),
            ("rbac.authorization.k8s.io", "ClusterRole", "rules"),
        ] {
            assert_eq!(
                field_err(group, kind, &format!("{field}=1")),
                msg(field),
                "{group}/{kind}"
            );
            fields_ok(group, kind, "metadata.name=a,metadata.namespace=b");
        }
        assert_eq!(
            field_err("", "ConfigMap", "a\tb=1"),
            "\"a\\tb\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        let sel = fields_ok("apps", "ReplicaSet", "metadata.namespace=ns");
        assert!(sel.matches(&json!({"metadata": {"name": "rs", "namespace": "ns"}})));
        assert!(!sel.matches(&json!({"metadata": {"name": "rs", "namespace": "x"}})));
        // Cluster-scoped objects have no namespace: only "" matches.
        let cluster = fields_ok(
            "rbac.authorization.k8s.io",
            "ClusterRole",
            "metadata.namespace=",
        );
        assert!(cluster.matches(&json!({"metadata": {"name": "admin"}})));
    }

    #[test]
    fn pod_fields() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "prod"},
            "spec": {
                "nodeName": "node-a",
                "restartPolicy": "Always",
                "schedulerName": "default-scheduler",
                "serviceAccount": "legacy-sa"
            },
            "status": {
                "phase": "Running",
                "podIPs": [{"ip": "10.0.0.7"}, {"ip": "fd00::7"}],
                "nominatedNodeName": "node-b"
            }
        });
        for (sel, want) in [
            ("metadata.name=web-1", true),
            ("metadata.namespace=prod", true),
            ("spec.nodeName=node-a", true),
            ("spec.host=node-a", true),
            ("spec.host=node-b", false),
            ("spec.restartPolicy=Always", true),
            ("spec.schedulerName=default-scheduler", true),
            ("spec.serviceAccountName=legacy-sa", true),
            ("spec.hostNetwork=false", true),
            ("spec.hostNetwork=true", false),
            ("status.phase=Running", true),
            ("status.podIP=10.0.0.7", true),
            ("status.podIPs=10.0.0.7", false),
            ("status.podIPs=", true),
            ("status.nominatedNodeName=node-b", true),
        ] {
            assert_eq!(fields_ok("", "Pod", sel).matches(&pod), want, "{sel:?}");
        }
        assert_eq!(
            fields_ok("", "Pod", "spec.host=n").to_string(),
            "spec.nodeName=n"
        );
        let explicit = json!({
            "spec": {"hostNetwork": true, "serviceAccountName": "sa", "serviceAccount": "old"},
            "status": {"podIP": "10.1.1.1", "podIPs": [{"ip": "10.1.1.1"}]}
        });
        for sel in [
            "spec.hostNetwork=true",
            "spec.serviceAccountName=sa",
            "status.podIP=10.1.1.1",
        ] {
            assert!(fields_ok("", "Pod", sel).matches(&explicit), "{sel:?}");
        }
        assert!(fields_ok("", "Pod", "status.podIP=,spec.nodeName=").matches(&json!({})));
        for bad in [
            "spec.containers=x",
            "status.hostIP=1.2.3.4",
            "spec.nodename=a",
        ] {
            let field = bad.split('=').next().unwrap_or_default();
            let err = FieldSelector::parse("", "Pod", bad).unwrap_err();
            assert_eq!(
                err,
                SelectorError::UnsupportedField(format!("field label not supported: {field}"))
            );
        }
    }

    #[test]
    fn node_namespace_secret_service_rc_fields() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        assert!(fields_ok("", "Node", "spec.unschedulable=true").matches(&node));
        assert!(fields_ok("", "Node", "spec.unschedulable=false").matches(&json!({})));
        assert!(fields_ok("", "Node", "metadata.name=n1").matches(&node));
        assert_eq!(
            field_err("", "Node", "metadata.namespace=x"),
            "field label not supported: metadata.namespace"
        );

        let ns = json!({"metadata": {"name": "dev"}, "status": {"phase": "Terminating"}});
        assert!(fields_ok("", "Namespace", "status.phase=Terminating").matches(&ns));
        assert!(fields_ok("", "Namespace", "metadata.name=dev").matches(&ns));
        assert_eq!(
            field_err("", "Namespace", "name=dev"),
            "field label not supported: name"
        );
        assert_eq!(
            field_err("", "Namespace", "metadata.namespace=dev"),
            "field label not supported: metadata.namespace"
        );

        let secret =
            json!({"metadata": {"name": "s", "namespace": "a"}, "type": "kubernetes.io/tls"});
        assert!(fields_ok("", "Secret", "type=kubernetes.io/tls").matches(&secret));
        assert!(!fields_ok("", "Secret", "type=Opaque").matches(&secret));
        assert_eq!(
            field_err("", "Secret", "data=x"),
            "field label not supported: data"
        );

        let svc = json!({"spec": {"clusterIP": "None", "type": "ClusterIP"}});
        assert!(fields_ok("", "Service", "spec.clusterIP=None,spec.type=ClusterIP").matches(&svc));
        assert!(fields_ok("", "Service", "spec.clusterIP!=None").matches(&json!({})));
        assert_eq!(
            field_err("", "Service", "spec.ports=1"),
            "field label not supported: spec.ports"
        );

        let rc = json!({"status": {"replicas": 3}});
        assert!(fields_ok("", "ReplicationController", "status.replicas=3").matches(&rc));
        assert!(fields_ok("", "ReplicationController", "status.replicas=0").matches(&json!({})));
        assert!(!fields_ok("", "ReplicationController", "status.replicas=").matches(&json!({})));
        assert_eq!(
            field_err("", "ReplicationController", "spec.replicas=1"),
            "field label not supported: spec.replicas"
        );
    }

    #[test]
    fn core_event_fields() {
        let ev = json!({
            "metadata": {"name": "e", "namespace": "ns"},
            "involvedObject": {
                "kind": "Pod", "namespace": "ns", "name": "web", "uid": "u-1",
                "apiVersion": "v1", "resourceVersion": "42", "fieldPath": "spec.containers{c}"
            },
            "reason": "Started",
            "type": "Normal",
            "reportingComponent": "kubelet"
        });
        for sel in [
            "involvedObject.kind=Pod",
            "involvedObject.namespace=ns",
            "involvedObject.name=web",
            "involvedObject.uid=u-1",
            "involvedObject.apiVersion=v1",
            "involvedObject.resourceVersion=42",
            "involvedObject.fieldPath=spec.containers{c}",
            "reason=Started",
            "type=Normal",
            "reportingComponent=kubelet",
            "source=kubelet",
            "metadata.name=e,metadata.namespace=ns",
        ] {
            assert!(fields_ok("", "Event", sel).matches(&ev), "{sel:?}");
        }
        let mut with_source = ev.clone();
        with_source["source"] = json!({"component": "scheduler"});
        assert!(fields_ok("", "Event", "source=scheduler").matches(&with_source));
        assert!(!fields_ok("", "Event", "source=kubelet").matches(&with_source));
        assert_eq!(
            field_err("", "Event", "regarding.name=web"),
            "field label not supported: regarding.name"
        );
        assert_eq!(
            field_err("", "Event", "message=x"),
            "field label not supported: message"
        );
    }

    #[test]
    fn events_k8s_io_event_fields() {
        let ev = json!({
            "metadata": {"name": "e", "namespace": "ns"},
            "regarding": {"kind": "Pod", "name": "web", "namespace": "ns", "uid": "u",
                          "apiVersion": "v1", "resourceVersion": "7", "fieldPath": "f"},
            "reason": "Pulled",
            "type": "Warning",
            "reportingController": "kubelet"
        });
        for sel in [
            "regarding.kind=Pod",
            "regarding.name=web",
            "regarding.namespace=ns",
            "regarding.uid=u",
            "regarding.apiVersion=v1",
            "regarding.resourceVersion=7",
            "regarding.fieldPath=f",
            "reason=Pulled",
            "type=Warning",
            "reportingController=kubelet",
            "source=kubelet",
            "metadata.name=e,metadata.namespace=ns",
        ] {
            assert!(
                fields_ok("events.k8s.io", "Event", sel).matches(&ev),
                "{sel:?}"
            );
        }
        assert_eq!(
            fields_ok(
                "events.k8s.io",
                "Event",
                "regarding.name=web,reportingController=k"
            )
            .to_string(),
            "involvedObject.name=web,reportingComponent=k"
        );
        let mut legacy = ev.clone();
        legacy["deprecatedSource"] = json!({"component": "old"});
        assert!(fields_ok("events.k8s.io", "Event", "source=old").matches(&legacy));
        for bad in ["involvedObject.name", "reportingComponent", "note"] {
            assert_eq!(
                field_err("events.k8s.io", "Event", &format!("{bad}=x")),
                format!("field label not supported: {bad}")
            );
        }
    }

    #[test]
    fn job_csr_ctb_resourceslice_fields() {
        let job = json!({"metadata": {"name": "j", "namespace": "n"}, "status": {"succeeded": 2}});
        assert!(fields_ok("batch", "Job", "status.successful=2").matches(&job));
        assert!(fields_ok("batch", "Job", "status.successful=0").matches(&json!({})));
        assert!(fields_ok("batch", "Job", "metadata.namespace=n").matches(&job));
        assert_eq!(
            field_err("batch", "Job", "status.succeeded=2"),
            "field label \"status.succeeded\" not supported for Job"
        );

        let csr = json!({"metadata": {"name": "c"}, "spec": {"signerName": "example.com/s"}});
        assert!(fields_ok(
            "certificates.k8s.io",
            "CertificateSigningRequest",
            "spec.signerName=example.com/s"
        )
        .matches(&csr));
        assert_eq!(
            field_err(
                "certificates.k8s.io",
                "CertificateSigningRequest",
                "metadata.namespace=x"
            ),
            "field label not supported: metadata.namespace"
        );
        assert!(fields_ok(
            "certificates.k8s.io",
            "ClusterTrustBundle",
            "spec.signerName=example.com/s"
        )
        .matches(&csr));

        let slice = json!({"metadata": {"name": "s"}, "spec": {"nodeName": "n", "driver": "gpu.example.com"}});
        assert!(fields_ok(
            "resource.k8s.io",
            "ResourceSlice",
            "spec.nodeName=n,spec.driver=gpu.example.com"
        )
        .matches(&slice));
        assert_eq!(
            field_err("resource.k8s.io", "ResourceSlice", "spec.pool=x"),
            "field label not supported for resource.k8s.io/v1beta1, Kind=ResourceSlice: spec.pool"
        );
    }

    #[test]
    fn custom_resources() {
        assert_eq!(
            field_err("example.com", "Widget", "spec.color=red"),
            "field label not supported: spec.color"
        );
        let widget = json!({
            "metadata": {"name": "w", "namespace": "ns"},
            "spec": {"color": "red", "size": 3, "on": true}
        });
        assert!(fields_ok(
            "example.com",
            "Widget",
            "metadata.name=w,metadata.namespace=ns"
        )
        .matches(&widget));
    }

    // ----- helpers -----

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("plain"), "\"plain\"");
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(
            go_quote("\t\n\r\u{7}\u{8}\u{b}\u{c}"),
            r#""\t\n\r\a\b\v\f""#
        );
        assert_eq!(go_quote("\u{1}\u{7f}"), r#""\x01\x7f""#);
        assert_eq!(go_quote("é日本"), "\"é日本\"");
        assert_eq!(
            go_quote("\u{a0}\u{200b}\u{feff}"),
            r#""\u00a0\u200b\ufeff""#
        );
        assert_eq!(go_quote("\u{10ffff}"), r#""\U0010ffff""#);
    }

    #[test]
    fn split_helpers_match_upstream() {
        assert_eq!(split_terms(""), Vec::<&str>::new());
        assert_eq!(split_terms("a=a,"), vec!["a=a", ""]);
        assert_eq!(split_terms(r"k=\,,k2=v2"), vec![r"k=\,", "k2=v2"]);
        assert_eq!(split_terms(r"k=\\,k2=v2"), vec![r"k=\\", "k2=v2"]);
        assert_eq!(split_terms(r"k=\\\,,k2=v2"), vec![r"k=\\\,", "k2=v2"]);
        assert_eq!(split_terms(r"k=\a\b\"), vec![r"k=\a\b\"]);
        assert_eq!(split_terms("함=수,목=록"), vec!["함=수", "목=록"]);
        assert_eq!(split_term("c!=value"), Some(("c", "!=", "value")));
        assert_eq!(split_term("b==value"), Some(("b", "==", "value")));
        assert_eq!(split_term("a!b=c"), Some(("a!b", "=", "c")));
        assert_eq!(split_term("a"), None);
        assert_eq!(unescape_value(r"\\\=\\\,\\").as_deref(), Ok(r"\=\,\"));
    }
}
