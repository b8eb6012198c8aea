//! SCIM 2.0 filter expressions (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2).
//!
//! [`parse`] turns a `filter=` query parameter into a [`Filter`] tree,
//! [`parse_path`] reads the `path` of a PATCH operation, and [`matches`]
//! evaluates a filter against a JSON resource (or one value of a
//! multi-valued complex attribute). Input is bounded (length, number of
//! terms, nesting depth) so hostile filters cannot exhaust the stack.

use std::cmp::Ordering;

use serde_json::Value;

/// Longest accepted filter or path, in bytes.
const MAX_INPUT_LEN: usize = 4096;
/// Most comparison / `pr` terms in one filter.
const MAX_TERMS: usize = 64;
/// Deepest nesting of parentheses, `not (…)` and `[…]`.
const MAX_DEPTH: usize = 16;

const OPS: [(&str, CmpOp); 9] = [
    ("eq", CmpOp::Eq),
    ("ne", CmpOp::Ne),
    ("co", CmpOp::Co),
    ("sw", CmpOp::Sw),
    ("ew", CmpOp::Ew),
    ("gt", CmpOp::Gt),
    ("ge", CmpOp::Ge),
    ("lt", CmpOp::Lt),
    ("le", CmpOp::Le),
];

/// An attribute path: optional schema URN, attribute, optional sub-attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub attr: String,
    pub sub: Option<String>,
}

/// A comparison operator (`eq`, `ne`, `co`, `sw`, `ew`, `gt`, `ge`, `lt`, `le`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `path op value`; the value is a string, number, bool or null.
    Cmp {
        path: AttrPath,
        op: CmpOp,
        value: Value,
    },
    /// `path pr`
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `emails[type eq "work" and value co "@x"]` : attr path + filter over its sub-attributes
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
    },
}

/// Why a filter or path was refused; a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(pub String);

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FilterError {}

/// A PATCH `path`: `attrPath` or `valuePath` optionally followed by `.subAttr`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// The attribute; `sub` is `Some` only for `name.givenName`-style paths without a filter.
    pub attr: AttrPath,
    /// The value selection filter between `[` and `]`, if any.
    pub filter: Option<Filter>,
    /// The sub-attribute after `]` (e.g. `.value`), if any.
    pub sub: Option<String>,
}

/// Parses a filter expression. Positions in errors are byte offsets from 0.
pub fn parse(input: &str) -> Result<Filter, FilterError> {
    let mut p = Parser::new(input)?;
    p.skip_ws();
    if p.at_end() {
        return Err(p.err("empty filter"));
    }
    let f = p.parse_chain(0, true)?;
    p.skip_ws();
    p.expect_end()?;
    Ok(f)
}

/// Parses a PATCH operation `path` (RFC 7644 §3.5.2 PATH grammar).
pub fn parse_path(input: &str) -> Result<PatchPath, FilterError> {
    let mut p = Parser::new(input)?;
    p.skip_ws();
    let attr = p.parse_attr_path()?;
    let (mut filter, mut sub) = (None, None);
    if p.peek() == Some(b'[') {
        if attr.sub.is_some() {
            return Err(p.err("a value filter must follow an attribute, not a sub-attribute"));
        }
        filter = Some(p.parse_nested(0, b']')?);
        if p.peek() == Some(b'.') {
            p.pos += 1;
            sub = Some(p.parse_name()?);
        }
    }
    p.skip_ws();
    p.expect_end()?;
    Ok(PatchPath { attr, filter, sub })
}

/// Does `item` match `filter`?
///
/// Attribute names are compared case-insensitively, strings too unless
/// `case_exact` says the attribute is caseExact. Inside a value filter
/// (`emails[type eq "work"]`) `case_exact` receives the qualified path
/// (`emails.type`). A multi-valued attribute matches if any value does; a
/// complex attribute compared without a sub-attribute uses its `value`
/// sub-attribute (`emails co "x"`). `eq null` matches an absent or null
/// attribute. `ne` matches when no value is equal (absent counts), but is
/// false if a value has a different type.
pub fn matches(filter: &Filter, item: &Value, case_exact: &dyn Fn(&AttrPath) -> bool) -> bool {
    eval(filter, item, None, case_exact)
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    terms: usize,
    in_brackets: bool,
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Result<Self, FilterError> {
        if src.len() > MAX_INPUT_LEN {
            return Err(FilterError(format!(
                "input longer than {MAX_INPUT_LEN} bytes"
            )));
        }
        Ok(Parser {
            src,
            bytes: src.as_bytes(),
            pos: 0,
            terms: 0,
            in_brackets: false,
        })
    }

    fn err(&self, what: &str) -> FilterError {
        FilterError(format!("{what} at position {}", self.pos))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn expect_end(&self) -> Result<(), FilterError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.err("unexpected trailing input"))
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), FilterError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected '{}'", b as char)))
        }
    }

    /// Skips spaces and tabs; returns how many were skipped.
    fn skip_ws(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// Consumes `kw` (case-insensitive) if it is next and ends at a word boundary.
    fn keyword(&mut self, kw: &str) -> bool {
        let end = self.pos + kw.len();
        let hit = self
            .bytes
            .get(self.pos..end)
            .is_some_and(|w| w.eq_ignore_ascii_case(kw.as_bytes()))
            && !self.bytes.get(end).is_some_and(|&b| is_name_char(b));
        if hit {
            self.pos = end;
        }
        hit
    }

    /// Fails with `what` (and the position) when `over` holds.
    fn limit(&self, over: bool, what: &str) -> Result<(), FilterError> {
        if over { Err(self.err(what)) } else { Ok(()) }
    }

    fn count_term(&mut self) -> Result<(), FilterError> {
        self.terms += 1;
        self.limit(
            self.terms > MAX_TERMS,
            &format!("filter has more than {MAX_TERMS} terms"),
        )
    }

    /// `or` chains of `and` chains (`or` = false) of unary terms, left-associative.
    fn parse_chain(&mut self, depth: usize, or: bool) -> Result<Filter, FilterError> {
        let next = |p: &mut Self| {
            if or {
                p.parse_chain(depth, false)
            } else {
                p.parse_unary(depth)
            }
        };
        let mut left = next(self)?;
        loop {
            let save = self.pos;
            if !(self.skip_ws() > 0 && self.keyword(if or { "or" } else { "and" })) {
                self.pos = save;
                return Ok(left);
            }
            self.skip_ws();
            let (l, r) = (Box::new(left), Box::new(next(self)?));
            left = if or {
                Filter::Or(l, r)
            } else {
                Filter::And(l, r)
            };
        }
    }

    fn parse_unary(&mut self, depth: usize) -> Result<Filter, FilterError> {
        if self.peek() == Some(b'(') {
            return self.parse_nested(depth, b')');
        }
        if self.keyword("not") {
            self.skip_ws();
            self.limit(self.peek() != Some(b'('), "expected '(' after 'not'")?;
            return Ok(Filter::Not(Box::new(self.parse_nested(depth, b')')?)));
        }
        self.parse_attr_exp(depth)
    }

    /// `( filter )` or `[ valFilter ]`, with the cursor on the opening bracket.
    fn parse_nested(&mut self, depth: usize, close: u8) -> Result<Filter, FilterError> {
        let square = close == b']';
        self.limit(
            square && self.in_brackets,
            "nested '[' inside a value filter",
        )?;
        self.limit(
            depth >= MAX_DEPTH,
            &format!("filter nested deeper than {MAX_DEPTH} levels"),
        )?;
        self.pos += 1;
        self.in_brackets |= square;
        self.skip_ws();
        let f = self.parse_chain(depth + 1, true)?;
        self.skip_ws();
        self.expect(close)?;
        self.in_brackets &= !square;
        Ok(f)
    }

    fn parse_attr_exp(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let path = self.parse_attr_path()?;
        if self.peek() == Some(b'[') {
            if path.sub.is_some() {
                return Err(
                    self.err("a value filter must follow an attribute, not a sub-attribute")
                );
            }
            let filter = Box::new(self.parse_nested(depth, b']')?);
            return Ok(Filter::ValuePath { path, filter });
        }
        if self.skip_ws() == 0 {
            return Err(self.err("expected a comparison operator"));
        }
        let op_pos = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
            self.pos += 1;
        }
        let word = self
            .src
            .get(op_pos..self.pos)
            .unwrap_or("")
            .to_ascii_lowercase();
        if word == "pr" {
            self.count_term()?;
            return Ok(Filter::Present(path));
        }
        let Some(&(_, op)) = OPS.iter().find(|(name, _)| *name == word) else {
            self.pos = op_pos;
            return Err(self.err("expected a comparison operator"));
        };
        if self.skip_ws() == 0 {
            return Err(self.err("expected a value after the operator"));
        }
        let value = self.parse_value()?;
        self.count_term()?;
        Ok(Filter::Cmp { path, op, value })
    }

    /// `ATTRNAME` (ALPHA *nameChar; a leading `$` is also accepted for `$ref`).
    fn parse_name(&mut self) -> Result<String, FilterError> {
        let start = self.pos;
        match self.peek() {
            Some(b) if b.is_ascii_alphabetic() || b == b'$' => self.pos += 1,
            _ => return Err(self.err("expected an attribute name")),
        }
        while self.peek().is_some_and(is_name_char) {
            self.pos += 1;
        }
        Ok(self.src.get(start..self.pos).unwrap_or("").to_string())
    }

    /// `[URI ":"] ATTRNAME ["." subAttr]`. A URN prefix is recognised by a
    /// leading `urn:`; the attribute is what follows its last `:`.
    fn parse_attr_path(&mut self) -> Result<AttrPath, FilterError> {
        let is_urn = self
            .bytes
            .get(self.pos..self.pos + 4)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"urn:"));
        let mut urn = None;
        if is_urn {
            let start = self.pos;
            let mut end = start;
            while self
                .bytes
                .get(end)
                .is_some_and(|&b| !b" \t\r\n[]()\"".contains(&b))
            {
                end += 1;
            }
            let token = self.src.get(start..end).unwrap_or("");
            let colon = token.rfind(':').unwrap_or(3);
            if colon <= 4 {
                return Err(self.err("incomplete schema URN"));
            }
            urn = Some(token.get(..colon).unwrap_or("").to_string());
            self.pos = start + colon + 1;
        }
        let attr = self.parse_name()?;
        let mut sub = None;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            sub = Some(self.parse_name()?);
        }
        Ok(AttrPath { urn, attr, sub })
    }

    /// A JSON literal: string, number, `true`, `false` or `null` (keywords case-insensitive).
    fn parse_value(&mut self) -> Result<Value, FilterError> {
        let start = self.pos;
        match self.peek() {
            Some(b'"') => {
                let mut i = start + 1;
                loop {
                    match self.bytes.get(i) {
                        None => return Err(self.err("unterminated string")),
                        Some(b'\\') => i += 2,
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
                let lit = self.src.get(start..=i).unwrap_or("");
                let s: String =
                    serde_json::from_str(lit).map_err(|_| self.err("invalid string literal"))?;
                self.pos = i + 1;
                Ok(Value::String(s))
            }
            Some(b) if b == b'-' || b.is_ascii_digit() => {
                while self
                    .peek()
                    .is_some_and(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
                {
                    self.pos += 1;
                }
                match serde_json::from_str::<Value>(self.src.get(start..self.pos).unwrap_or("")) {
                    Ok(v @ Value::Number(_)) => Ok(v),
                    _ => {
                        self.pos = start;
                        Err(self.err("invalid number"))
                    }
                }
            }
            _ => {
                for (kw, v) in [
                    ("true", Value::Bool(true)),
                    ("false", Value::Bool(false)),
                    ("null", Value::Null),
                ] {
                    if self.keyword(kw) {
                        return Ok(v);
                    }
                }
                Err(self.err("expected a value (string, number, true, false or null)"))
            }
        }
    }
}

/// Case-insensitive member lookup (exact match preferred).
fn get_ci<'v>(obj: &'v Value, key: &str) -> Option<&'v Value> {
    let map = obj.as_object()?;
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// The attribute's raw value: under `item[urn]` when that is an object, else in `item` itself.
fn lookup<'v>(item: &'v Value, path: &AttrPath) -> Option<&'v Value> {
    let base = path
        .urn
        .as_deref()
        .and_then(|u| get_ci(item, u))
        .filter(|v| v.is_object())
        .unwrap_or(item);
    get_ci(base, &path.attr)
}

/// All values the path designates, arrays flattened. With `implicit_value`,
/// complex values without a sub-attribute yield their `value` sub-attribute.
fn values_at<'v>(item: &'v Value, path: &AttrPath, implicit_value: bool) -> Vec<&'v Value> {
    fn flat<'v>(v: &'v Value, out: &mut Vec<&'v Value>) {
        match v {
            Value::Array(a) => out.extend(a.iter()),
            other => out.push(other),
        }
    }
    let mut top = Vec::new();
    if let Some(v) = lookup(item, path) {
        flat(v, &mut top);
    }
    let mut out = Vec::new();
    for v in top {
        match (&path.sub, v) {
            (Some(sub), _) => {
                if let Some(s) = get_ci(v, sub) {
                    flat(s, &mut out);
                }
            }
            (None, Value::Object(_)) if implicit_value => {
                if let Some(s) = get_ci(v, "value") {
                    flat(s, &mut out);
                }
            }
            (None, _) => out.push(v),
        }
    }
    out
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Inside a value filter, `type` under `emails` becomes `emails.type`.
fn qualify(parent: Option<&AttrPath>, path: &AttrPath) -> AttrPath {
    match parent {
        Some(p) => AttrPath {
            urn: p.urn.clone(),
            attr: p.attr.clone(),
            sub: Some(path.attr.clone()),
        },
        None => path.clone(),
    }
}

fn eval(
    f: &Filter,
    item: &Value,
    parent: Option<&AttrPath>,
    ce: &dyn Fn(&AttrPath) -> bool,
) -> bool {
    match f {
        Filter::And(a, b) => eval(a, item, parent, ce) && eval(b, item, parent, ce),
        Filter::Or(a, b) => eval(a, item, parent, ce) || eval(b, item, parent, ce),
        Filter::Not(a) => !eval(a, item, parent, ce),
        Filter::Present(p) => values_at(item, p, false).iter().any(|v| !is_empty(v)),
        Filter::Cmp { path, op, value } => {
            let exact = ce(&qualify(parent, path));
            compare(&values_at(item, path, true), *op, value, exact)
        }
        Filter::ValuePath { path, filter } => {
            let q = qualify(parent, path);
            match lookup(item, path) {
                Some(Value::Array(a)) => a
                    .iter()
                    .any(|v| v.is_object() && eval(filter, v, Some(&q), ce)),
                Some(v @ Value::Object(_)) => eval(filter, v, Some(&q), ce),
                _ => false,
            }
        }
    }
}

fn fold(s: &str, exact: bool) -> String {
    if exact {
        s.to_string()
    } else {
        s.to_lowercase()
    }
}

/// Orders two values of the same kind (strings, numbers, or booleans for
/// equality only); `None` when the types differ.
fn order(a: &Value, b: &Value, exact: bool) -> Option<Ordering> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(fold(x, exact).cmp(&fold(y, exact))),
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => Some(i.cmp(&j)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn compare(cands: &[&Value], op: CmpOp, value: &Value, exact: bool) -> bool {
    let non_null = || cands.iter().filter(|c| !c.is_null());
    if value.is_null() {
        return match op {
            CmpOp::Eq => non_null().count() == 0,
            CmpOp::Ne => non_null().count() > 0,
            _ => false,
        };
    }
    let text = |c: &Value| match (c, value) {
        (Value::String(x), Value::String(y)) => Some((fold(x, exact), fold(y, exact))),
        _ => None,
    };
    let ordered = |pred: fn(Ordering) -> bool| {
        !value.is_boolean()
            && cands
                .iter()
                .any(|c| !c.is_boolean() && order(c, value, exact).is_some_and(pred))
    };
    match op {
        CmpOp::Eq => cands
            .iter()
            .any(|c| order(c, value, exact) == Some(Ordering::Equal)),
        CmpOp::Ne => {
            non_null().all(|c| order(c, value, exact).is_some_and(|o| o != Ordering::Equal))
        }
        CmpOp::Co => cands
            .iter()
            .any(|c| text(c).is_some_and(|(x, y)| x.contains(&y))),
        CmpOp::Sw => cands
            .iter()
            .any(|c| text(c).is_some_and(|(x, y)| x.starts_with(&y))),
        CmpOp::Ew => cands
            .iter()
            .any(|c| text(c).is_some_and(|(x, y)| x.ends_with(&y))),
        CmpOp::Gt => ordered(|o| o == Ordering::Greater),
        CmpOp::Ge => ordered(|o| o != Ordering::Less),
        CmpOp::Lt => ordered(|o| o == Ordering::Less),
        CmpOp::Le => ordered(|o| o != Ordering::Greater),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ap(attr: &str, sub: Option<&str>) -> AttrPath {
        AttrPath {
            urn: None,
            attr: attr.into(),
            sub: sub.map(Into::into),
        }
    }
    fn eq(attr: &str, v: &str) -> Filter {
        Filter::Cmp {
            path: ap(attr, None),
            op: CmpOp::Eq,
            value: json!(v),
        }
    }
    fn no_ce(_: &AttrPath) -> bool {
        false
    }

    /// Renders a parse result as an S-expression, for compact expectations.
    fn sx(input: &str) -> String {
        fn p(p: &AttrPath) -> String {
            let urn = p.urn.as_ref().map_or(String::new(), |u| format!("{u}:"));
            let sub = p.sub.as_ref().map_or(String::new(), |s| format!(".{s}"));
            format!("{urn}{}{sub}", p.attr)
        }
        fn show(f: &Filter) -> String {
            match f {
                Filter::Cmp { path, op, value } => format!("({op:?} {} {value})", p(path)),
                Filter::Present(path) => format!("(pr {})", p(path)),
                Filter::And(a, b) => format!("(and {} {})", show(a), show(b)),
                Filter::Or(a, b) => format!("(or {} {})", show(a), show(b)),
                Filter::Not(a) => format!("(not {})", show(a)),
                Filter::ValuePath { path, filter } => format!("{}[{}]", p(path), show(filter)),
            }
        }
        parse(input).map_or_else(|e| format!("ERR {}", e.0), |f| show(&f))
    }

    /// `input => expected S-expression`, one per line.
    const CASES: &str = r#"
userName eq "bjensen" => (Eq userName "bjensen")
name.familyName co "O'Malley" => (Co name.familyName "O'Malley")
userName sw "J" => (Sw userName "J")
urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J" => (Sw urn:ietf:params:scim:schemas:core:2.0:User:userName "J")
title pr => (pr title)
meta.lastModified gt "2011-05-13T04:42:34Z" => (Gt meta.lastModified "2011-05-13T04:42:34Z")
meta.lastModified ge "2011-05-13T04:42:34Z" => (Ge meta.lastModified "2011-05-13T04:42:34Z")
meta.lastModified lt "2011-05-13T04:42:34Z" => (Lt meta.lastModified "2011-05-13T04:42:34Z")
meta.lastModified le "2011-05-13T04:42:34Z" => (Le meta.lastModified "2011-05-13T04:42:34Z")
title pr and userType eq "Employee" => (and (pr title) (Eq userType "Employee"))
title pr or userType eq "Intern" => (or (pr title) (Eq userType "Intern"))
schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User" => (Eq schemas "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
userType eq "Employee" and (emails co "example.com" or emails.value co "example.org") => (and (Eq userType "Employee") (or (Co emails "example.com") (Co emails.value "example.org")))
userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org") => (and (Ne userType "Employee") (not (or (Co emails "example.com") (Co emails.value "example.org"))))
userType eq "Employee" and (emails.type eq "work") => (and (Eq userType "Employee") (Eq emails.type "work"))
userType eq "Employee" and emails[type eq "work" and value co "@example.com"] => (and (Eq userType "Employee") emails[(and (Eq type "work") (Co value "@example.com"))])
emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"] => (or emails[(and (Eq type "work") (Co value "@example.com"))] ims[(and (Eq type "xmpp") (Co value "@foo.com"))])
a eq "1" or b eq "2" AND c eq "3" => (or (Eq a "1") (and (Eq b "2") (Eq c "3")))
a eq "1" and b eq "2" or c eq "3" => (or (and (Eq a "1") (Eq b "2")) (Eq c "3"))
(a EQ "1" Or b eq "2") and  c eq "3" => (and (or (Eq a "1") (Eq b "2")) (Eq c "3"))
NOT	(a eq "1") and b Eq "2" => (and (not (Eq a "1")) (Eq b "2"))
not(a pr) => (not (pr a))
notes eq "3" => (Eq notes "3")
 a eq "\"\\\u00e9" => (Eq a "\"\\é")
a eq 1.5e3 or b ge -2 or c eq TRUE or d ne Null => (or (or (or (Eq a 1500.0) (Ge b -2)) (Eq c true)) (Ne d null))
members[$ref ew "/u1"] => members[(Ew $ref "/u1")]
userName xx "a" => ERR expected a comparison operator at position 9
"#;

    #[test]
    fn rfc_examples_precedence_and_case() {
        for line in CASES.lines().filter(|l| !l.is_empty()) {
            let (input, want) = line.split_once(" => ").unwrap_or((line, "?"));
            assert_eq!(sx(input), want, "{input}");
        }
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            r#"(userName eq "a""#,
            r#"userName eq "a")"#,
            "userName eq",
            r#"userName xx "a""#,
            r#"userName eq "a" junk"#,
            r#"userName eq 'a'"#,
            r#"userName eq "a"#,
            r#"not userName eq "a""#,
            r#"emails[type eq "a"[value eq "b"]]"#,
            r#"emails[type eq "a""#,
            r#"a eq 01"#,
            r#"urn:x eq "a""#,
            r#"1abc eq "a""#,
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        let bomb = "(".repeat(10000);
        assert!(parse(&bomb).is_err());
        let deep = format!("{}a pr{}", "(".repeat(17), ")".repeat(17));
        assert!(parse(&deep).is_err());
        let ok = format!("{}a pr{}", "(".repeat(16), ")".repeat(16));
        assert!(parse(&ok).is_ok());
        let many = vec!["a pr"; 65].join(" or ");
        assert!(parse(&many).is_err());
        assert!(parse(&vec!["a pr"; 64].join(" or ")).is_ok());
        assert!(parse(&format!("a eq \"{}\"", "x".repeat(5000))).is_err());
    }

    #[test]
    fn patch_paths() {
        let p = parse_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(p.attr, ap("emails", None));
        assert_eq!(p.filter, Some(eq("type", "work")));
        assert_eq!(p.sub.as_deref(), Some("value"));
        let p = parse_path(r#"members[value eq "2819c223"]"#).unwrap();
        assert_eq!((p.filter, p.sub), (Some(eq("value", "2819c223")), None));
        let p = parse_path("name.givenName").unwrap();
        assert_eq!(
            (p.attr, p.filter, p.sub),
            (ap("name", Some("givenName")), None, None)
        );
        let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let p = parse_path(&format!("{ent}:manager.value")).unwrap();
        assert_eq!(p.attr.urn.as_deref(), Some(ent));
        assert_eq!(
            (p.attr.attr.as_str(), p.attr.sub.as_deref()),
            ("manager", Some("value"))
        );
        let p = parse_path(&format!("{ent}:department")).unwrap();
        assert_eq!((p.attr.attr.as_str(), p.attr.sub), ("department", None));
        for bad in [
            "",
            "emails[",
            "emails[type eq \"w\"]x",
            "name.givenName[value pr]",
            "a b",
            "emails[type eq \"w\"].",
        ] {
            assert!(parse_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn matching() {
        let user = json!({
            "userName": "BJensen", "title": "", "userType": "Employee", "active": true,
            "name": {"familyName": "O'Malley"},
            "meta": {"lastModified": "2011-05-13T04:42:34Z"},
            "emails": [{"value": "bj@example.com", "type": "work"}, {"value": "babs@home.org", "type": "home"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Tour", "level": 3},
        });
        let m = |f: &str| matches(&parse(f).unwrap(), &user, &no_ce);
        assert!(m(r#"username eq "bjensen""#));
        assert!(!matches(
            &parse(r#"userName eq "bjensen""#).unwrap(),
            &user,
            &|_| true
        ));
        assert!(m(r#"name.familyName co "o'malley""#));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "bj""#
        ));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "tour""#
        ));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:level ge 3"#
        ));
        assert!(!m(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:level gt 3.5"#
        ));
        assert!(!m("title pr") && m("userType pr") && !m("nickName pr") && m("emails pr"));
        assert!(m(r#"meta.lastModified gt "2011-05-13T04:42:33Z""#));
        assert!(!m(r#"meta.lastModified gt "2011-05-13T04:42:34Z""#));
        assert!(m(r#"emails co "example.com" and emails.value ew ".org""#));
        assert!(m(r#"emails[type eq "work" and value co "@example.com"]"#));
        assert!(!m(r#"emails[type eq "home" and value co "@example.com"]"#));
        assert!(m(
            r#"userType ne "Employee" or not (emails.type eq "school")"#
        ));
        assert!(m("active eq true") && !m("active ne true") && !m("active gt false"));
        assert!(!m(r#"active eq "true""#) && !m(r#"active ne "true""#) && !m("userName gt 3"));
        assert!(m("nickName eq null") && m("userName ne null") && m(r#"nickName ne "x""#));
        let seen = std::cell::RefCell::new(Vec::new());
        let ce = |p: &AttrPath| {
            seen.borrow_mut().push(p.clone());
            false
        };
        matches(&parse(r#"emails[type eq "work"]"#).unwrap(), &user, &ce);
        assert_eq!(seen.borrow()[0], ap("emails", Some("type")));
    }
}
