//! Label selectors: the string syntax of `?labelSelector=` and the `LabelSelector` object.

use std::fmt;

use serde_json::{Map, Value};

use crate::errors::FieldError;
use crate::names;

/// Why a label selector was refused; the text is upstream's message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The string form does not parse, e.g. `found ')', expected: !, identifier, or 'end of
    /// string'` or `unable to parse requirement: ...`.
    #[error("{0}")]
    Syntax(String),
    /// A requirement is invalid (bad key, bad value, wrong number of values).
    #[error("{0}")]
    Requirement(String),
    /// A `matchExpressions` operator other than In, NotIn, Exists, DoesNotExist.
    #[error("{} is not a valid label selector operator", crate::errors::go_quote(.0))]
    UnknownOperator(String),
    /// A `LabelSelector` object of the wrong JSON shape.
    #[error("label selector {0}")]
    Malformed(String),
}

/// How a requirement compares a label (upstream's `selection.Operator`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

impl Operator {
    /// Upstream's operator string (`=`, `==`, `!=`, `in`, `notin`, `exists`, `!`, `gt`, `lt`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

/// One condition on one label key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Operator,
    pub values: Vec<String>,
}

impl Requirement {
    /// A checked requirement, as upstream's `NewRequirement`; the error is upstream's
    /// aggregated field errors (`key: Invalid value: ...`, `values[0][key]: ...`).
    pub fn new(key: &str, op: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        let errs = requirement_errors(key, op, &values);
        if errs.is_empty() {
            Ok(Requirement {
                key: key.to_string(),
                op,
                values,
            })
        } else {
            Err(SelectorError::Requirement(aggregate(&errs)))
        }
    }

    /// Whether the labels satisfy this requirement.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let value = labels
            .and_then(|l| l.get(&self.key))
            .and_then(Value::as_str);
        let has_value = |v: &str| self.values.iter().any(|x| x == v);
        match self.op {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                value.is_some_and(has_value)
            }
            Operator::NotIn | Operator::NotEquals => !value.is_some_and(has_value),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => self.compare(value),
        }
    }

    fn compare(&self, value: Option<&str>) -> bool {
        let Some(label) = value.and_then(|v| v.parse::<i64>().ok()) else {
            return false;
        };
        let [wanted] = self.values.as_slice() else {
            return false;
        };
        let Ok(wanted) = wanted.parse::<i64>() else {
            return false;
        };
        match self.op {
            Operator::GreaterThan => label > wanted,
            _ => label < wanted,
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.op == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.op {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in (",
            Operator::NotIn => " notin (",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        f.write_str(op)?;
        let mut values = self.values.clone();
        values.sort();
        f.write_str(&values.join(","))?;
        if matches!(self.op, Operator::In | Operator::NotIn) {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Upstream's `NewRequirement` checks, as field errors.
fn requirement_errors(key: &str, op: Operator, values: &[String]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(e) = key_error(key, "key") {
        errs.push(e);
    }
    let as_list = || Value::from(values.to_vec());
    match op {
        Operator::In | Operator::NotIn if values.is_empty() => errs.push(FieldError::invalid(
            "values",
            as_list(),
            "for 'in', 'notin' operators, values set can't be empty",
        )),
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
            errs.push(FieldError::invalid(
                "values",
                as_list(),
                "exact-match compatibility requires one single value",
            ))
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            errs.push(FieldError::invalid(
                "values",
                as_list(),
                "values set must be empty for exists and does not exist",
            ))
        }
        Operator::GreaterThan | Operator::LessThan => {
            if values.len() != 1 {
                errs.push(FieldError::invalid(
                    "values",
                    as_list(),
                    "for 'Gt', 'Lt' operators, exactly one value is required",
                ));
            }
            for (i, v) in values.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    errs.push(FieldError::invalid(
                        &format!("values[{i}]"),
                        v.as_str(),
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
        }
        _ => {}
    }
    for (i, v) in values.iter().enumerate() {
        let msgs = names::label_value(v);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(
                &format!("values[{i}][{key}]"),
                v.as_str(),
                &msgs.join("; "),
            ));
        }
    }
    errs
}

/// Upstream's `validateLabelKey`: one error joining all qualified-name messages.
fn key_error(key: &str, path: &str) -> Option<FieldError> {
    let msgs = names::qualified_name(key);
    (!msgs.is_empty()).then(|| FieldError::invalid(path, key, &msgs.join("; ")))
}

/// Upstream's aggregate of field errors as one message.
fn aggregate(errs: &[FieldError]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for m in errs.iter().map(FieldError::message) {
        if !seen.contains(&m) {
            seen.push(m);
        }
    }
    if seen.len() == 1 {
        seen.remove(0)
    } else {
        format!("[{}]", seen.join(", "))
    }
}

/// A label selector: all requirements must hold; none means everything matches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Selector::default()
    }

    /// Parses the string form (`a=b,c in (x,y),!d`); the empty string matches everything.
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        let mut parser = Parser::new(s);
        let mut requirements = parser.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector { requirements })
    }

    /// Reads a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`). Null and `{}`
    /// match everything; the caller decides whether a missing selector means nothing.
    pub fn from_label_selector(v: &Value) -> Result<Selector, SelectorError> {
        let obj = match v {
            Value::Null => return Ok(Selector::everything()),
            Value::Object(obj) => obj,
            _ => return Err(SelectorError::Malformed("must be an object".into())),
        };
        let mut requirements = Vec::new();
        if let Some(labels) = obj.get("matchLabels").filter(|v| !v.is_null()) {
            let labels = labels
                .as_object()
                .ok_or_else(|| SelectorError::Malformed("matchLabels must be an object".into()))?;
            for (k, v) in labels {
                let value = v.as_str().ok_or_else(|| {
                    SelectorError::Malformed(format!("matchLabels.{k} must be a string"))
                })?;
                requirements.push(Requirement::new(
                    k,
                    Operator::Equals,
                    vec![value.to_string()],
                )?);
            }
        }
        for expr in match_expressions(obj)? {
            requirements.push(expression_requirement(expr)?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector { requirements })
    }

    /// An equality selector from a map of label values (as ReplicationController selectors).
    pub fn from_map(m: &Map<String, Value>) -> Selector {
        let mut requirements: Vec<Requirement> = m
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                op: Operator::Equals,
                values: vec![v.as_str().unwrap_or_default().to_string()],
            })
            .collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Selector { requirements }
    }

    /// Whether labels (a map of string values; `None` = no labels) satisfy every requirement.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// True when the selector has no requirements (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// The value a requirement pins `key` to (`key=v`, `key==v`, `key in (v)`), if any.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.op, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

fn match_expressions(obj: &Map<String, Value>) -> Result<&[Value], SelectorError> {
    match obj.get("matchExpressions") {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(SelectorError::Malformed(
            "matchExpressions must be a list".into(),
        )),
    }
}

fn expression_requirement(expr: &Value) -> Result<Requirement, SelectorError> {
    let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
    let operator = expr
        .get("operator")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let op = match operator {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => return Err(SelectorError::UnknownOperator(other.to_string())),
    };
    let values = string_list(expr.get("values"));
    Requirement::new(key, op, values)
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|i| i.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Upstream's `ValidateLabelSelector` for a `metav1.LabelSelector` at `field`.
pub fn validate_label_selector(v: &Value, field: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(obj) = v.as_object() else {
        return errs;
    };
    if let Some(labels) = obj.get("matchLabels").and_then(Value::as_object) {
        errs.extend(names::validate_labels(
            labels,
            &format!("{field}.matchLabels"),
        ));
    }
    let exprs = obj
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, expr) in exprs.iter().enumerate() {
        errs.extend(validate_requirement(
            expr,
            &format!("{field}.matchExpressions[{i}]"),
        ));
    }
    errs
}

/// Upstream's `ValidateLabelSelectorRequirement`.
fn validate_requirement(expr: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let operator = expr
        .get("operator")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let values = string_list(expr.get("values"));
    let values_path = format!("{path}.values");
    match operator {
        "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
            &values_path,
            "must be specified when `operator` is 'In' or 'NotIn'",
        )),
        "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
            &values_path,
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        )),
        "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
        other => errs.push(FieldError::invalid(
            &format!("{path}.operator"),
            other,
            "not a valid selector operator",
        )),
    }
    let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
    errs.extend(names::validate_label_name(key, &format!("{path}.key")));
    for (i, value) in values.iter().enumerate() {
        for msg in names::label_value(value) {
            errs.push(FieldError::invalid(
                &format!("{values_path}[{i}]"),
                value.as_str(),
                &msg,
            ));
        }
    }
    errs
}

/// Tokens of the selector string, as upstream's lexer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

fn keyword(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits a selector string into tokens, ending with `EndOfString`.
fn lex(s: &str) -> Vec<(Token, String)> {
    let bytes = s.as_bytes();
    let mut pos = 0;
    let mut items = Vec::new();
    loop {
        while pos < bytes.len() && is_whitespace(bytes[pos]) {
            pos += 1;
        }
        let Some(&b) = bytes.get(pos) else {
            items.push((Token::EndOfString, String::new()));
            return items;
        };
        let (token, literal, next) = if is_special(b) {
            lex_special(bytes, pos)
        } else {
            lex_word(bytes, pos)
        };
        items.push((token, literal));
        pos = next;
    }
}

/// The longest run of special symbols that is an operator token.
fn lex_special(bytes: &[u8], start: usize) -> (Token, String, usize) {
    let mut end = start;
    let mut last: Option<(Token, usize)> = None;
    while end < bytes.len() && is_special(bytes[end]) {
        let candidate = String::from_utf8_lossy(&bytes[start..=end]);
        if let Some(token) = keyword(&candidate) {
            last = Some((token, end + 1));
        } else if last.is_some() {
            break;
        }
        end += 1;
    }
    match last {
        Some((token, stop)) => (
            token,
            String::from_utf8_lossy(&bytes[start..stop]).into_owned(),
            stop,
        ),
        None => (
            Token::Error,
            format!(
                "error expected: keyword found '{}'",
                String::from_utf8_lossy(&bytes[start..end])
            ),
            end,
        ),
    }
}

/// An identifier or keyword: everything up to whitespace or a special symbol.
fn lex_word(bytes: &[u8], start: usize) -> (Token, String, usize) {
    let mut end = start;
    while end < bytes.len() && !is_special(bytes[end]) && !is_whitespace(bytes[end]) {
        end += 1;
    }
    let word = String::from_utf8_lossy(&bytes[start..end]).into_owned();
    let token = match word.as_str() {
        "in" | "notin" => keyword(&word).unwrap_or(Token::Identifier),
        _ => Token::Identifier,
    };
    (token, word, end)
}

/// Where the parser is: reading key and operator, or reading values (where `in` and `notin`
/// are plain identifiers).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

/// Upstream's recursive-descent selector parser.
struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

type ParseResult<T> = Result<T, String>;

impl Parser {
    fn new(s: &str) -> Self {
        Parser {
            items: lex(s),
            position: 0,
        }
    }

    fn lookahead(&self, context: Context) -> (Token, String) {
        let (token, literal) = self
            .items
            .get(self.position)
            .cloned()
            .unwrap_or((Token::EndOfString, String::new()));
        match (context, token) {
            (Context::Values, Token::In | Token::NotIn) => (Token::Identifier, literal),
            _ => (token, literal),
        }
    }

    fn consume(&mut self, context: Context) -> (Token, String) {
        let item = self.lookahead(context);
        self.position += 1;
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (token, literal) = self.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self.parse_requirement().map_err(|e| {
                        SelectorError::Syntax(format!("unable to parse requirement: {e}"))
                    })?;
                    requirements.push(r);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(SelectorError::Syntax(format!(
                                    "found '{l2}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(SelectorError::Syntax(format!(
                                "found '{l}', expected: ',' or 'end of string'"
                            )));
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(SelectorError::Syntax(format!(
                        "found '{literal}', expected: !, identifier, or 'end of string'"
                    )));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> ParseResult<Requirement> {
        let (key, op) = self.parse_key_and_infer_operator()?;
        if let Some(op) = op {
            return checked(&key, op, Vec::new());
        }
        let op = self.parse_operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        checked(&key, op, values)
    }

    /// Reads `!key`, `key` (followed by end or comma: exists), or a key before an operator.
    fn parse_key_and_infer_operator(&mut self) -> ParseResult<(String, Option<Operator>)> {
        let (mut token, mut literal) = self.consume(Context::Values);
        let mut op = None;
        if token == Token::DoesNotExist {
            op = Some(Operator::DoesNotExist);
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(format!("found '{literal}', expected: identifier"));
        }
        if let Some(e) = key_error(&literal, "<nil>") {
            return Err(e.message());
        }
        let (next, _) = self.lookahead(Context::Values);
        if matches!(next, Token::EndOfString | Token::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        Ok((literal, op))
    }

    fn parse_operator(&mut self) -> ParseResult<Operator> {
        let (token, literal) = self.consume(Context::KeyAndOperator);
        Ok(match token {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => return Err(format!("found '{literal}', expected: {BINARY_OPERATORS}")),
        })
    }

    /// Reads `(v1,v2,...)`; the result is sorted and without repeats, as upstream's set.
    fn parse_values(&mut self) -> ParseResult<Vec<String>> {
        let (token, literal) = self.consume(Context::Values);
        if token != Token::OpenPar {
            return Err(format!("found '{literal}' expected: '('"));
        }
        let (token, literal) = self.lookahead(Context::Values);
        match token {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                if self.consume(Context::Values).0 != Token::ClosedPar {
                    return Err(format!("found '{literal}', expected: ')'"));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!(
                "found '{literal}', expected: ',', ')' or identifier"
            )),
        }
    }

    fn parse_identifiers_list(&mut self) -> ParseResult<Vec<String>> {
        let mut set = std::collections::BTreeSet::new();
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    set.insert(literal);
                    let (next, next_literal) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(set.into_iter().collect()),
                        _ => return Err(format!("found '{next_literal}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    let (next, _) = self.lookahead(Context::Values);
                    if next == Token::ClosedPar {
                        set.insert(String::new());
                        return Ok(set.into_iter().collect());
                    }
                    if next == Token::Comma {
                        self.consume(Context::Values);
                        set.insert(String::new());
                    }
                }
                _ => return Err(format!("found '{literal}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> ParseResult<Vec<String>> {
        let (token, _) = self.lookahead(Context::Values);
        if matches!(token, Token::EndOfString | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        let (token, literal) = self.consume(Context::Values);
        if token == Token::Identifier {
            Ok(vec![literal])
        } else {
            Err(format!("found '{literal}', expected: identifier"))
        }
    }
}

/// `Requirement::new` with the error as plain text, for the parser.
fn checked(key: &str, op: Operator, values: Vec<String>) -> ParseResult<Requirement> {
    Requirement::new(key, op, values).map_err(|e| e.to_string())
}
