//! SCIM 2.0 PATCH (RFC 7644 §3.5.2) as a pure JSON transformer.
//!
//! [`parse_request`] reads a PatchOp body into [`Operation`]s; [`apply`] applies them, all or
//! nothing, to a resource's SCIM JSON document (the adapter then stores the result with PUT
//! semantics). A [`Schema`] supplies canonical names, multi-valuedness and mutability, so names in
//! paths and values match case-insensitively and are written back canonically.

use serde_json::{Map, Value};

use super::filter::{self, AttrPath, CmpOp, Filter};

/// The PatchOp message schema URN.
pub const PATCH_OP_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Most operations accepted in one request.
const MAX_OPERATIONS: usize = 1000;

type Obj = Map<String, Value>;
type Res<T = ()> = Result<T, PatchError>;

/// `return Err(PatchError { scim_type, detail: format!(…) })`.
macro_rules! bail {
    ($t:literal, $($fmt:tt)+) => {
        return Err(PatchError { scim_type: $t, detail: format!($($fmt)+) })
    };
}

/// A PATCH operation kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Remove,
    Replace,
}

/// One entry of `Operations`; `path`, when present, is known to parse.
#[derive(Debug, Clone)]
pub struct Operation {
    pub op: OpKind,
    pub path: Option<String>,
    pub value: Option<Value>,
}

/// A refusal: the RFC 7644 §3.12 scimType (`invalidPath`, `noTarget`, `invalidValue`, `invalidSyntax`, `mutability`) and a detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError {
    pub scim_type: &'static str,
    pub detail: String,
}

impl std::fmt::Display for PatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.scim_type, self.detail)
    }
}

impl std::error::Error for PatchError {}

/// What the engine needs to know about the resource type's attributes.
pub trait Schema {
    /// The canonical name of a top-level attribute (case-insensitive lookup; `urn` is the schema URN given in the path, if any: the core schema URN means the base document, an extension URN means the object under that URN key), or None if the resource has no such attribute (→ invalidPath "no attribute X").
    fn canonical(&self, urn: Option<&str>, attr: &str) -> Option<Attribute>;
    /// The canonical name of a sub-attribute of a complex attribute, or None (→ invalidPath).
    fn sub(&self, attr: &Attribute, sub: &str) -> Option<String>;
    /// Is this attribute's string comparison caseExact (for value filters)? Called with
    /// `attr` = the multi-valued attribute and `sub` = the compared sub-attribute.
    fn case_exact(&self, path: &AttrPath) -> bool;
    /// A standard attribute (or sub-attribute) the service does not store:
    /// an operation on it is accepted and changes nothing, as a POST or PUT
    /// carrying it is, rather than refused as an unknown path.
    fn unstored(&self, _urn: Option<&str>, _attr: &str, _sub: Option<&str>) -> bool {
        false
    }
}

/// A resolved top-level attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// `Some(extension URN)` for extension attributes, stored under `doc[urn][name]`.
    pub urn: Option<String>,
    pub name: String,
    pub multi_valued: bool,
    pub complex: bool,
    pub read_only: bool,
}

/// Reads a PatchOp request body (`{"schemas":[PatchOp URN], "Operations":[…]}`).
///
/// `schemas` may be omitted (but if present must name PatchOp); `Operations` may be spelled
/// `operations`; `op` is case-insensitive; an empty `path` counts as no path.
pub fn parse_request(body: &Value) -> Res<Vec<Operation>> {
    let Some(obj) = body.as_object() else {
        bail!("invalidSyntax", "PATCH body must be a JSON object");
    };
    if let Some(s) = obj.get("schemas") {
        let is_patch = |u: &Value| {
            u.as_str()
                .is_some_and(|u| u.eq_ignore_ascii_case(PATCH_OP_URN))
        };
        if !s.as_array().map_or(is_patch(s), |a| a.iter().any(is_patch)) {
            bail!("invalidSyntax", "schemas must contain {PATCH_OP_URN}");
        }
    }
    let ops = obj.get("Operations").or_else(|| obj.get("operations"));
    let Some(ops) = ops.and_then(Value::as_array) else {
        bail!("invalidSyntax", "missing Operations array");
    };
    if ops.is_empty() || ops.len() > MAX_OPERATIONS {
        bail!(
            "invalidValue",
            "Operations must hold 1 to {MAX_OPERATIONS} operations"
        );
    }
    ops.iter()
        .enumerate()
        .map(|(i, o)| parse_op(i, o))
        .collect()
}

fn get_ci<'v>(m: &'v Obj, key: &str) -> Option<&'v Value> {
    m.get(key).or_else(|| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn parse_op(i: usize, o: &Value) -> Res<Operation> {
    let Some(o) = o.as_object() else {
        bail!("invalidSyntax", "operation {i} is not an object");
    };
    let op = get_ci(o, "op")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    let op = match op.as_deref() {
        Some("add") => OpKind::Add,
        Some("remove") => OpKind::Remove,
        Some("replace") => OpKind::Replace,
        _ => bail!(
            "invalidSyntax",
            "operation {i}: op must be add, remove or replace"
        ),
    };
    let path = match get_ci(o, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => match filter::parse_path(s) {
            Ok(_) => Some(s.clone()),
            Err(e) => bail!("invalidPath", "operation {i}: {e}"),
        },
        Some(_) => bail!("invalidPath", "operation {i}: path must be a string"),
    };
    let value = get_ci(o, "value").cloned();
    match op {
        OpKind::Remove if path.is_none() => bail!("noTarget", "operation {i}: remove needs a path"),
        OpKind::Add | OpKind::Replace if value.is_none() => {
            bail!("invalidSyntax", "operation {i}: {op:?} needs a value")
        }
        _ => Ok(Operation { op, path, value }),
    }
}

/// Applies the operations in order to `doc`, all or nothing: on error `doc` is left unchanged.
/// Afterwards null values, empty objects and empty arrays are removed from the document.
pub fn apply(doc: &mut Value, ops: &[Operation], schema: &dyn Schema) -> Res {
    let mut work = doc.clone();
    let Some(root) = work.as_object_mut() else {
        bail!("invalidValue", "the resource document is not a JSON object");
    };
    let engine = Engine { schema };
    for (i, op) in ops.iter().enumerate() {
        engine.apply_op(root, op).map_err(|e| PatchError {
            scim_type: e.scim_type,
            detail: format!("operation {i}: {}", e.detail),
        })?;
    }
    prune(root, 4);
    *doc = work;
    Ok(())
}

/// A resolved PATCH target.
struct Target {
    attr: Attribute,
    /// `name.givenName`: canonical sub-attribute, no filter.
    sub: Option<String>,
    filter: Option<Filter>,
    /// `emails[…].value`: canonical sub-attribute after the filter.
    item_sub: Option<String>,
}

struct Engine<'s> {
    schema: &'s dyn Schema,
}

impl Engine<'_> {
    fn apply_op(&self, root: &mut Obj, op: &Operation) -> Res {
        let replace = op.op == OpKind::Replace;
        let (Some(path), v) = (&op.path, &op.value) else {
            return match &op.value {
                _ if op.op == OpKind::Remove => bail!("noTarget", "remove needs a path"),
                Some(v) => self.apply_pathless(root, v, replace),
                None => bail!("invalidSyntax", "value required"),
            };
        };
        if let Ok(p) = filter::parse_path(path)
            && self.schema.unstored(
                p.attr.urn.as_deref(),
                &p.attr.attr,
                p.attr.sub.as_deref().or(p.sub.as_deref()),
            )
        {
            return Ok(());
        }
        let t = self.resolve(path)?;
        if t.attr.read_only {
            bail!("mutability", "attribute {} is read-only", t.attr.name);
        }
        match v {
            _ if op.op == OpKind::Remove => self.remove(root, &t, v.as_ref()),
            Some(v) => self.set(root, &t, v.clone(), replace),
            None => bail!("invalidSyntax", "value required"),
        }
    }

    fn resolve(&self, path: &str) -> Res<Target> {
        let p = filter::parse_path(path).map_err(|e| PatchError {
            scim_type: "invalidPath",
            detail: e.0,
        })?;
        let Some(attr) = self.schema.canonical(p.attr.urn.as_deref(), &p.attr.attr) else {
            bail!("invalidPath", "no attribute {}", p.attr.attr);
        };
        let sub = p.attr.sub.map(|s| self.sub_name(&attr, &s)).transpose()?;
        let item_sub = p.sub.map(|s| self.sub_name(&attr, &s)).transpose()?;
        if let Some(f) = &p.filter {
            if !(attr.multi_valued && attr.complex) {
                bail!(
                    "invalidPath",
                    "{} is not multi-valued and complex",
                    attr.name
                );
            }
            self.check_filter(&attr, f)?;
        }
        Ok(Target {
            attr,
            sub,
            filter: p.filter,
            item_sub,
        })
    }

    fn sub_name(&self, attr: &Attribute, sub: &str) -> Res<String> {
        match self.schema.sub(attr, sub).filter(|_| attr.complex) {
            Some(s) => Ok(s),
            None => bail!("invalidPath", "no sub-attribute {}.{sub}", attr.name),
        }
    }

    /// Every attribute a value filter names must be a sub-attribute of `attr`.
    fn check_filter(&self, attr: &Attribute, f: &Filter) -> Res {
        match f {
            Filter::Cmp { path, .. } | Filter::Present(path) => {
                self.sub_name(attr, &path.attr).map(|_| ())
            }
            Filter::And(a, b) | Filter::Or(a, b) => {
                self.check_filter(attr, a)?;
                self.check_filter(attr, b)
            }
            Filter::Not(a) => self.check_filter(attr, a),
            Filter::ValuePath { .. } => bail!("invalidPath", "nested value filter"),
        }
    }

    /// `add`/`replace` without a path: each key of the value object is an attribute, a full
    /// path (`urn:…:User:department`, Entra), or a schema URN whose object holds attributes.
    fn apply_pathless(&self, root: &mut Obj, value: &Value, replace: bool) -> Res {
        let Some(obj) = value.as_object() else {
            bail!(
                "invalidValue",
                "an operation without a path needs an object value"
            );
        };
        let is_urn = |k: &str| k.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
        for (k, v) in obj
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("schemas"))
        {
            let path = filter::parse_path(k).ok().filter(|p| p.filter.is_none());
            if path.as_ref().is_some_and(|p| {
                self.schema
                    .unstored(p.attr.urn.as_deref(), &p.attr.attr, p.attr.sub.as_deref())
            }) {
                continue;
            }
            let attr = path.and_then(|p| {
                let a = self.schema.canonical(p.attr.urn.as_deref(), &p.attr.attr)?;
                Some((a, p.attr.sub))
            });
            match (attr, v) {
                (Some((attr, sub)), _) => self.set_entry(root, attr, sub, v, replace)?,
                (None, Value::Object(inner)) if is_urn(k) => {
                    for (ik, iv) in inner
                        .iter()
                        .filter(|(k, _)| !k.eq_ignore_ascii_case("schemas"))
                    {
                        if self.schema.unstored(Some(k), ik, None) {
                            continue;
                        }
                        let Some(attr) = self.schema.canonical(Some(k), ik) else {
                            bail!("invalidPath", "no attribute {ik} in {k}");
                        };
                        self.set_entry(root, attr, None, iv, replace)?;
                    }
                }
                (None, _) => bail!("invalidPath", "no attribute {k}"),
            }
        }
        Ok(())
    }

    /// One attribute of a pathless value; a read-only one may be echoed unchanged.
    fn set_entry(
        &self,
        root: &mut Obj,
        attr: Attribute,
        sub: Option<String>,
        v: &Value,
        replace: bool,
    ) -> Res {
        let sub = sub.map(|s| self.sub_name(&attr, &s)).transpose()?;
        if attr.read_only {
            let cur = slot(root, &attr).and_then(|c| sub.as_ref().map_or(Some(c), |s| c.get(s)));
            if cur.unwrap_or(&Value::Null) == v {
                return Ok(());
            }
            bail!("mutability", "attribute {} is read-only", attr.name);
        }
        let t = Target {
            attr,
            sub,
            filter: None,
            item_sub: None,
        };
        self.set(root, &t, v.clone(), replace)
    }

    /// `add` or `replace` at a resolved target.
    fn set(&self, root: &mut Obj, t: &Target, v: Value, replace: bool) -> Res {
        match (&t.filter, &t.sub) {
            (Some(f), _) => self.set_filtered(root, t, f, v),
            (None, Some(sub)) => {
                set_sub(root, &t.attr, sub, v);
                Ok(())
            }
            (None, None) => self.set_attr(root, &t.attr, v, replace),
        }
    }

    /// A whole attribute. Multi-valued: add appends (merging into a value with the same
    /// `value`/`type`), replace replaces. Complex: the sub-attributes given are merged
    /// (RFC 7644 §3.5.2.1, §3.5.2.3). Null removes the attribute.
    fn set_attr(&self, root: &mut Obj, attr: &Attribute, v: Value, replace: bool) -> Res {
        if v.is_null() {
            remove_attr(root, attr);
        } else if attr.multi_valued {
            let given = match v {
                Value::Array(a) => a,
                other => vec![other],
            };
            let items: Vec<Value> = given
                .into_iter()
                .map(|i| self.canon(attr, i))
                .collect::<Res<_>>()?;
            let arr = arr_mut(entry(root, attr));
            if replace {
                arr.clear();
            }
            let touched: Vec<usize> = items.into_iter().map(|i| merge_or_push(arr, i)).collect();
            fix_primary(arr, &touched);
        } else if let Value::Object(m) = self.canon(attr, v.clone())? {
            merge_into(obj_mut(entry(root, attr)), m);
        } else {
            *entry(root, attr) = v;
        }
        Ok(())
    }

    /// `emails[type eq "work"]`: merge the value object into each match (noTarget if none).
    /// `emails[type eq "work"].value`: set the sub-attribute on each match; if none match,
    /// append a value built from the filter's `eq` terms (what Entra ID relies on).
    fn set_filtered(&self, root: &mut Obj, t: &Target, f: &Filter, v: Value) -> Res {
        let merge = match (&t.item_sub, v) {
            (Some(_), v) => Err(v),
            (None, Value::Object(m)) => Ok(self.canon_obj(&t.attr, m)?),
            (None, _) => bail!(
                "invalidValue",
                "a filtered path without a sub-attribute needs an object"
            ),
        };
        let template = self.eq_template(&t.attr, f);
        let arr = arr_mut(entry(root, &t.attr));
        let hits = self.hits(arr, t, f);
        let touched = if hits.contains(&true) {
            match merge {
                Ok(m) => each_hit(arr, &hits, |o| merge_into(o, m.clone())),
                Err(v) => {
                    let sub = t.item_sub.as_deref().unwrap_or("value");
                    each_hit(arr, &hits, |o| set_key(o, sub, v.clone()))
                }
            }
        } else {
            match (merge, &t.item_sub, template) {
                (Err(Value::Null), _, _) => Vec::new(),
                (Err(v), Some(sub), Some(mut item)) => {
                    item.insert(sub.clone(), v);
                    arr.push(Value::Object(item));
                    vec![arr.len() - 1]
                }
                _ => bail!("noTarget", "no value of {} matches the filter", t.attr.name),
            }
        };
        fix_primary(arr, &touched);
        Ok(())
    }

    /// Which values of `arr` the target's filter selects.
    fn hits(&self, arr: &[Value], t: &Target, f: &Filter) -> Vec<bool> {
        let ce = |p: &AttrPath| {
            let sub = Some(p.attr.clone());
            self.schema.case_exact(&AttrPath {
                urn: t.attr.urn.clone(),
                attr: t.attr.name.clone(),
                sub,
            })
        };
        arr.iter()
            .map(|e| e.is_object() && filter::matches(f, e, &ce))
            .collect()
    }

    /// The value implied by a filter made only of `attr eq literal` terms joined by `and`.
    fn eq_template(&self, attr: &Attribute, f: &Filter) -> Option<Obj> {
        let mut out = Obj::new();
        let mut stack = vec![f];
        while let Some(f) = stack.pop() {
            match f {
                Filter::Cmp {
                    path,
                    op: CmpOp::Eq,
                    value,
                } if path.sub.is_none() && !value.is_null() => {
                    out.insert(self.schema.sub(attr, &path.attr)?, value.clone());
                }
                Filter::And(a, b) => stack.extend([&**b, &**a]),
                _ => return None,
            }
        }
        Some(out)
    }

    fn remove(&self, root: &mut Obj, t: &Target, value: Option<&Value>) -> Res {
        let Some(cur) = slot_mut(root, &t.attr) else {
            return Ok(());
        };
        match (&t.filter, &t.sub, cur) {
            (Some(f), _, Value::Array(arr)) => {
                let hits = self.hits(arr, t, f);
                match &t.item_sub {
                    Some(s) => {
                        each_hit(arr, &hits, |o| {
                            o.remove(s);
                        });
                    }
                    None => {
                        let mut hit = hits.into_iter();
                        arr.retain(|_| !hit.next().unwrap_or(false));
                    }
                }
            }
            (Some(_), _, _) => {}
            (None, Some(s), Value::Object(o)) => {
                o.remove(s);
            }
            (None, Some(s), Value::Array(arr)) => {
                for o in arr.iter_mut().filter_map(Value::as_object_mut) {
                    o.remove(s);
                }
            }
            // Azure AD: `{"op":"remove","path":"members","value":[{"value":"id"}]}` removes
            // just those values.
            (None, None, Value::Array(arr)) if value.is_some_and(|v| !v.is_null()) => {
                let gone = match value {
                    Some(Value::Array(a)) => a.as_slice(),
                    other => other.map(std::slice::from_ref).unwrap_or_default(),
                };
                arr.retain(|e| {
                    !gone.iter().any(|g| {
                        g.get("value")
                            .map_or(e == g, |id| e.get("value") == Some(id))
                    })
                });
            }
            (None, _, _) => remove_attr(root, &t.attr),
        }
        Ok(())
    }

    /// Checks a value's shape and renames its keys to canonical sub-attribute names.
    fn canon(&self, attr: &Attribute, v: Value) -> Res<Value> {
        match (attr.complex, v) {
            (true, Value::Object(m)) => Ok(Value::Object(self.canon_obj(attr, m)?)),
            (true, _) => bail!("invalidValue", "{} takes objects", attr.name),
            (false, v @ (Value::Object(_) | Value::Array(_))) => {
                bail!("invalidValue", "{} takes simple values, got {v}", attr.name)
            }
            (false, v) => Ok(v),
        }
    }

    fn canon_obj(&self, attr: &Attribute, m: Obj) -> Res<Obj> {
        m.into_iter()
            .filter(|(k, _)| {
                !self
                    .schema
                    .unstored(attr.urn.as_deref(), &attr.name, Some(k))
            })
            .map(|(k, x)| Ok((self.sub_name(attr, &k)?, x)))
            .collect()
    }
}

/// `name.givenName`, or `emails.value` (every value; a new value if there is none).
fn set_sub(root: &mut Obj, attr: &Attribute, sub: &str, v: Value) {
    if !attr.multi_valued {
        return set_key(obj_mut(entry(root, attr)), sub, v);
    }
    let arr = arr_mut(entry(root, attr));
    if arr.is_empty() && !v.is_null() {
        arr.push(Value::Object(Obj::from_iter([(sub.to_string(), v)])));
    } else {
        arr.iter_mut()
            .for_each(|e| set_key(obj_mut(e), sub, v.clone()));
    }
    let all: Vec<usize> = (0..arr.len()).collect();
    fix_primary(arr, &all);
}

/// Runs `f` on each selected value; returns their indices.
fn each_hit(arr: &mut [Value], hits: &[bool], mut f: impl FnMut(&mut Obj)) -> Vec<usize> {
    let mut touched = Vec::new();
    for (i, e) in arr
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| hits.get(*i) == Some(&true))
    {
        f(obj_mut(e));
        touched.push(i);
    }
    touched
}

/// Appends `item`, or merges it into an existing value with the same `value` and `type` (or
/// skips an identical simple value); returns its index.
fn merge_or_push(arr: &mut Vec<Value>, item: Value) -> usize {
    let key = |v: &Value| {
        v.get("value")
            .map(|id| (id.clone(), v.get("type").cloned()))
    };
    let found = match key(&item) {
        Some(k) => arr.iter().position(|e| key(e).as_ref() == Some(&k)),
        None => arr.iter().position(|e| *e == item),
    };
    match (found, item) {
        (Some(i), Value::Object(src)) => {
            if let Some(dst) = arr.get_mut(i) {
                merge_into(obj_mut(dst), src);
            }
            i
        }
        (Some(i), _) => i,
        (None, item) => {
            arr.push(item);
            arr.len() - 1
        }
    }
}

fn is_primary(v: &Value) -> bool {
    match v.get("primary") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// If one of `touched` is now primary, no other value stays primary (RFC 7643 §2.4).
fn fix_primary(arr: &mut [Value], touched: &[usize]) {
    let keep = touched
        .iter()
        .rev()
        .find(|&&i| arr.get(i).is_some_and(is_primary));
    if let Some(&keep) = keep {
        let others = arr.iter_mut().enumerate().filter(|(i, _)| *i != keep);
        for o in others.filter_map(|(_, e)| e.as_object_mut()) {
            o.remove("primary");
        }
    }
}

fn merge_into(dst: &mut Obj, src: Obj) {
    src.into_iter().for_each(|(k, v)| set_key(dst, &k, v));
}

/// Sets `k`, or removes it when `v` is null ("unassigned", RFC 7643 §2.5).
fn set_key(m: &mut Obj, k: &str, v: Value) {
    if v.is_null() {
        m.remove(k);
    } else {
        m.insert(k.to_string(), v);
    }
}

fn slot<'d>(root: &'d Obj, attr: &Attribute) -> Option<&'d Value> {
    match &attr.urn {
        Some(u) => root.get(u)?.get(&attr.name),
        None => root.get(&attr.name),
    }
}

fn slot_mut<'d>(root: &'d mut Obj, attr: &Attribute) -> Option<&'d mut Value> {
    match &attr.urn {
        Some(u) => root.get_mut(u)?.get_mut(&attr.name),
        None => root.get_mut(&attr.name),
    }
}

/// The attribute's slot, created (as null) if missing.
fn entry<'d>(root: &'d mut Obj, attr: &Attribute) -> &'d mut Value {
    let base = match &attr.urn {
        Some(u) => obj_mut(root.entry(u.clone()).or_insert(Value::Null)),
        None => root,
    };
    base.entry(attr.name.clone()).or_insert(Value::Null)
}

fn remove_attr(root: &mut Obj, attr: &Attribute) {
    let base = match &attr.urn {
        Some(u) => root.get_mut(u).and_then(Value::as_object_mut),
        None => Some(root),
    };
    if let Some(b) = base {
        b.remove(&attr.name);
    }
}

/// `v` as an object, replacing any non-object with `{}`.
fn obj_mut(v: &mut Value) -> &mut Obj {
    match v {
        Value::Object(m) => m,
        other => {
            *other = Value::Object(Obj::new());
            obj_mut(other)
        }
    }
}

/// `v` as an array: null becomes `[]`, another single value `[v]`.
fn arr_mut(v: &mut Value) -> &mut Vec<Value> {
    match v {
        Value::Array(a) => a,
        other => {
            let old = std::mem::take(other);
            *other = Value::Array(if old.is_null() { Vec::new() } else { vec![old] });
            arr_mut(other)
        }
    }
}

/// Drops nulls, empty objects and empty arrays, after cleaning inside them (to `depth` levels).
fn prune(m: &mut Obj, depth: usize) {
    let empty = |v: &Value| {
        v.is_null()
            || v.as_object().is_some_and(Obj::is_empty)
            || v.as_array().is_some_and(Vec::is_empty)
    };
    for v in m.values_mut().filter(|_| depth > 0) {
        match v {
            Value::Object(o) => prune(o, depth - 1),
            Value::Array(a) => {
                a.iter_mut()
                    .filter_map(Value::as_object_mut)
                    .for_each(|o| prune(o, depth - 1));
                a.retain(|e| !empty(e));
            }
            _ => {}
        }
    }
    m.retain(|_, v| !empty(v));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    /// `name:flags=subs`; flags: m multi-valued, c complex, r read-only; `E/` = enterprise.
    const DEFS: &str = "id:r userName displayName nickName active name:c=givenName,familyName \
        emails:mc=value,type,primary,display members:mc=value,display,$ref,type \
        addresses:mc=type,streetAddress,locality,postalCode meta:cr=created,lastModified \
        E/department E/manager:c=value,displayName";

    struct TestSchema;
    impl TestSchema {
        fn find(&self, ext: bool, name: &str) -> Option<(Attribute, &'static str)> {
            DEFS.split_whitespace().find_map(|d| {
                let (n, rest) = d.split_once(':').unwrap_or((d, ""));
                let (flags, subs) = rest.split_once('=').unwrap_or((rest, ""));
                let (is_ext, n) = n.strip_prefix("E/").map_or((false, n), |n| (true, n));
                (is_ext == ext && n.eq_ignore_ascii_case(name)).then(|| {
                    let (urn, name) = (ext.then(|| ENT.to_string()), n.to_string());
                    let f = |c| flags.contains(c);
                    let (multi_valued, complex, read_only) = (f('m'), f('c'), f('r'));
                    (
                        Attribute {
                            urn,
                            name,
                            multi_valued,
                            complex,
                            read_only,
                        },
                        subs,
                    )
                })
            })
        }
    }
    impl Schema for TestSchema {
        fn canonical(&self, urn: Option<&str>, attr: &str) -> Option<Attribute> {
            let core = "urn:ietf:params:scim:schemas:core:2.0:";
            let ext = match urn.map(str::to_ascii_lowercase) {
                None => false,
                Some(u) if u == ENT.to_ascii_lowercase() => true,
                Some(u) if u.starts_with(core) => false,
                Some(_) => return None,
            };
            self.find(ext, attr).map(|a| a.0)
        }
        fn sub(&self, attr: &Attribute, sub: &str) -> Option<String> {
            let subs = self.find(attr.urn.is_some(), &attr.name)?.1;
            subs.split(',')
                .find(|s| s.eq_ignore_ascii_case(sub))
                .map(String::from)
        }
        fn case_exact(&self, p: &AttrPath) -> bool {
            p.attr == "members" && p.sub.as_deref() == Some("value")
        }
    }

    fn run(doc: &Value, ops: Value) -> Result<Value, PatchError> {
        let body = json!({"schemas": [PATCH_OP_URN], "Operations": ops});
        let mut out = doc.clone();
        apply(&mut out, &parse_request(&body)?, &TestSchema)?;
        Ok(out)
    }

    /// `check!(doc, [ops], key => expected, …)`: applies, compares `doc[key]`, returns the doc.
    macro_rules! check {
        ($doc:expr, $ops:tt $(, $key:expr => $want:tt)* $(,)?) => {{
            let d = run(&$doc, json!($ops)).unwrap_or_else(|e| panic!("{e}"));
            $(assert_eq!(d.get($key).cloned().unwrap_or(Value::Null), json!($want), "{}", $key);)*
            d
        }};
    }
    /// `refuse!(doc, [ops] => scimType)`.
    macro_rules! refuse {
        ($doc:expr, $ops:tt => $t:literal) => {
            assert_eq!(
                run(&$doc, json!($ops)).map_err(|e| e.scim_type).err(),
                Some($t)
            )
        };
    }

    fn user() -> Value {
        json!({"id": "u1", "userName": "bjensen", "name": {"givenName": "Barbara"},
            "emails": [{"value": "bj@example.com", "type": "work", "primary": true},
                       {"value": "babs@home.org", "type": "home"}],
            "addresses": [{"type": "work", "streetAddress": "100 Main", "locality": "Here"}],
            "meta": {"created": "2020-01-01T00:00:00Z"}})
    }
    fn group() -> Value {
        json!({"id": "g1", "displayName": "Tour",
            "members": [{"value": "a", "display": "A"}, {"value": "b"}]})
    }

    #[test]
    fn rfc_add() {
        check!(group(), [{"op": "add", "path": "members",
            "value": [{"display": "Babs", "$ref": "https://x/Users/2819", "value": "2819"}]}],
            "members" => [{"value": "a", "display": "A"}, {"value": "b"},
                {"display": "Babs", "$ref": "https://x/Users/2819", "value": "2819"}]);
        check!(user(), [{"op": "add", "value": {
                "emails": [{"value": "babs@jensen.org", "type": "home"}], "NICKNAME": "Babs"}}],
            "nickName" => "Babs",
            "emails" => [{"value": "bj@example.com", "type": "work", "primary": true},
                {"value": "babs@home.org", "type": "home"}, {"value": "babs@jensen.org", "type": "home"}]);
        check!(group(), [{"op": "add", "path": "members", "value": {"value": "a", "display": "A2"}}],
            "members" => [{"value": "a", "display": "A2"}, {"value": "b"}]);
        check!(user(), [{"op": "add", "path": "name.familyName", "value": "Jensen"},
                {"op": "add", "path": "NAME", "value": {"GivenName": "Babs"}}],
            "name" => {"givenName": "Babs", "familyName": "Jensen"});
    }

    #[test]
    fn rfc_remove() {
        check!(group(), [{"op": "remove", "path": "members[value eq \"a\"]"}],
            "members" => [{"value": "b"}]);
        // members.value is caseExact in TestSchema
        check!(group(), [{"op": "remove", "path": "members[value eq \"A\"]"}],
            "members" => [{"value": "a", "display": "A"}, {"value": "b"}]);
        check!(group(), [{"op": "remove", "path": "members"}], "members" => null);
        check!(user(), [{"op": "remove", "path": "emails[type eq \"work\" and value ew \"EXAMPLE.com\"]"}],
            "emails" => [{"value": "babs@home.org", "type": "home"}]);
        check!(group(), [{"op": "remove", "path": "members"},
                {"op": "add", "path": "members", "value": [{"value": "c"}]}],
            "members" => [{"value": "c"}]);
        check!(user(), [{"op": "remove", "path": "name.givenName"},
                {"op": "remove", "path": "emails[type eq \"nope\"]"},
                {"op": "remove", "path": "emails[type eq \"home\"].type"}],
            "name" => null,
            "emails" => [{"value": "bj@example.com", "type": "work", "primary": true},
                {"value": "babs@home.org"}]);
    }

    #[test]
    fn rfc_replace() {
        check!(group(), [{"op": "replace", "path": "members", "value": [{"value": "x"}, {"value": "y"}]}],
            "members" => [{"value": "x"}, {"value": "y"}]);
        check!(user(), [{"op": "replace", "path": "addresses[type eq \"work\"]",
                "value": {"type": "work", "streetAddress": "911 Universal City Plaza", "postalCode": "91608"}}],
            "addresses" => [{"type": "work", "streetAddress": "911 Universal City Plaza",
                "postalCode": "91608", "locality": "Here"}]);
        check!(user(), [{"op": "replace", "path": "addresses[type eq \"work\"].streetAddress",
                "value": "1010 Broadway"}],
            "addresses" => [{"type": "work", "streetAddress": "1010 Broadway", "locality": "Here"}]);
        check!(user(), [{"op": "replace", "value": {"nickName": "Babs",
                "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}]}}],
            "nickName" => "Babs",
            "emails" => [{"value": "bjensen@example.com", "type": "work", "primary": true}]);
        refuse!(user(), [{"op": "replace", "path": "addresses[type eq \"x\"]", "value": {"locality": "y"}}]
            => "noTarget");
        check!(group(), [{"op": "replace", "path": "members", "value": []}], "members" => null);
        check!(user(), [{"op": "replace", "path": "nickName", "value": null}], "nickName" => null);
    }

    #[test]
    fn entra_and_okta_shapes() {
        check!(user(), [{"op": "Replace", "path": "active", "value": "False"}], "active" => "False");
        check!(user(), [{"op": "replace", "value": {"active": false, "id": "u1", "schemas": []}}],
            "active" => false);
        let bare = json!({"userName": "x"});
        check!(bare, [{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "x@y.com"},
                {"op": "Replace", "path": "emails[type eq \"work\"].primary", "value": true}],
            "emails" => [{"type": "work", "value": "x@y.com", "primary": true}]);
        check!(user(), [{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "n@x.com"}],
            "emails" => [{"value": "n@x.com", "type": "work", "primary": true},
                {"value": "babs@home.org", "type": "home"}]);
        check!(group(), [{"op": "Remove", "path": "members", "value": [{"value": "a"}]}],
            "members" => [{"value": "b"}]);
        let d = check!(bare, [{"op": "Add", "value": {
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Eng",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": "m1"}},
                "urn:ietf:params:scim:schemas:core:2.0:User": {"displayName": "X"}}}],
            ENT => {"department": "Eng", "manager": {"value": "m1"}}, "displayName" => "X");
        let d = check!(d, [{"op": "replace", "value": "m2",
                "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"},
                {"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}],
            ENT => {"manager": {"value": "m2"}});
        check!(d, [{"op": "replace", "value": null,
                "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"}],
            ENT => null);
    }

    #[test]
    fn primary_stays_unique() {
        check!(user(), [{"op": "add", "path": "emails", "value": {"value": "n@x", "primary": true}}],
            "emails" => [{"value": "bj@example.com", "type": "work"},
                {"value": "babs@home.org", "type": "home"}, {"value": "n@x", "primary": true}]);
    }

    #[test]
    fn refusals_leave_doc_unchanged() {
        let ops = json!([{"op": "replace", "path": "displayName", "value": "x"},
            {"op": "replace", "path": "nosuch", "value": 1}]);
        let ops = parse_request(&json!({ "Operations": ops }));
        let mut doc = user();
        let e = apply(&mut doc, &ops.unwrap_or_default(), &TestSchema).map_err(|e| e.scim_type);
        assert_eq!((e, doc), (Err("invalidPath"), user()));
        refuse!(user(), [{"op": "replace", "path": "id", "value": "u2"}] => "mutability");
        refuse!(user(), [{"op": "remove", "path": "meta.created"}] => "mutability");
        refuse!(user(), [{"op": "replace", "value": {"id": "u2"}}] => "mutability");
        refuse!(user(), [{"op": "add", "value": {"bogus": 1}}] => "invalidPath");
        refuse!(user(), [{"op": "add", "path": "name.bogus", "value": 1}] => "invalidPath");
        refuse!(user(), [{"op": "add", "path": "emails[bogus eq 1]", "value": {}}] => "invalidPath");
        refuse!(user(), [{"op": "add", "path": "userName", "value": [1]}] => "invalidValue");
        refuse!(user(), [{"op": "add", "value": "x"}] => "invalidValue");
    }

    #[test]
    fn request_parsing() {
        let op = json!({"op": "remove", "path": "members"});
        let p = |b: Value| parse_request(&b).map(|o| o.len()).map_err(|e| e.scim_type);
        assert_eq!(p(json!({"operations": [op]})), Ok(1));
        assert_eq!(p(json!([op])), Err("invalidSyntax"));
        assert_eq!(
            p(json!({"schemas": ["urn:x"], "Operations": [op]})),
            Err("invalidSyntax")
        );
        assert_eq!(
            p(json!({ "schemas": [PATCH_OP_URN] })),
            Err("invalidSyntax")
        );
        assert_eq!(p(json!({"Operations": []})), Err("invalidValue"));
        assert_eq!(
            p(json!({ "Operations": vec![op; 1001] })),
            Err("invalidValue")
        );
        assert_eq!(
            p(json!({"Operations": [{"op": "move", "path": "x"}]})),
            Err("invalidSyntax")
        );
        assert_eq!(
            p(json!({"Operations": [{"op": "Remove"}]})),
            Err("noTarget")
        );
        assert_eq!(
            p(json!({"Operations": [{"op": "add", "path": "x"}]})),
            Err("invalidSyntax")
        );
        assert_eq!(
            p(json!({"Operations": [{"op": "add", "path": "x[", "value": 1}]})),
            Err("invalidPath")
        );
        let ops =
            parse_request(&json!({"Operations": [{"op": "REPLACE", "path": "", "value": {}}]}));
        assert!(ops.is_ok_and(|o| o[0].op == OpKind::Replace && o[0].path.is_none()));
    }
}
