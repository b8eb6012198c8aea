//! The attributes Roster serves over SCIM, declared once: `/Schemas`
//! publishes them, PATCH resolves paths against them, and `attributes` /
//! `excludedAttributes` project with them. Only what is stored is declared,
//! so discovery tells the truth; an account's roles and its custom fields
//! make two parts of the User schemas differ per account.

use serde_json::{Value, json};

use super::filter::AttrPath;
use super::patch::{Attribute, Schema};
use crate::domain::settings::{FieldType, Settings};

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// Roster's own User attributes: bio and the account's custom fields.
pub const ROSTER_USER: &str = "urn:ietf:params:scim:schemas:extension:roster:2.0:User";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    String,
    Boolean,
    Decimal,
    Reference,
    Complex,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::String => "string",
            Type::Boolean => "boolean",
            Type::Decimal => "decimal",
            Type::Reference => "reference",
            Type::Complex => "complex",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

/// One attribute (or sub-attribute) as `/Schemas` describes it.
#[derive(Debug, Clone)]
pub struct Def {
    pub name: String,
    pub kind: Type,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub unique: bool,
    pub canonical: Vec<String>,
    pub references: &'static [&'static str],
    pub subs: Vec<Def>,
    pub description: &'static str,
    /// Served but left out of `/Schemas`. Only `phoneNumbers` is: Roster
    /// keeps numbers in E.164, while RFC 7643 §2.3 gives the attribute no
    /// way to say so, and scim2-tester (which fills every published
    /// attribute) sends ten bare digits, which E.164 refuses. An identity
    /// provider's `+1 425 555 0100` or `tel:+1-425-555-0100` is kept as
    /// `+14255550100`; docs/scim.md says so.
    pub published: bool,
}

impl Def {
    fn new(name: &str, kind: Type, description: &'static str) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            multi: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            unique: false,
            canonical: Vec::new(),
            references: &[],
            subs: Vec::new(),
            description,
            published: true,
        }
    }

    fn unpublished(mut self) -> Self {
        self.published = false;
        self
    }

    fn multi(mut self) -> Self {
        self.multi = true;
        self
    }

    fn required(mut self) -> Self {
        self.required = true;
        self
    }

    fn exact(mut self) -> Self {
        self.case_exact = true;
        self
    }

    fn unique(mut self) -> Self {
        self.unique = true;
        self
    }

    fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }

    fn canonical(mut self, values: impl IntoIterator<Item = String>) -> Self {
        self.canonical = values.into_iter().collect();
        self
    }

    fn references(mut self, to: &'static [&'static str]) -> Self {
        self.references = to;
        self
    }

    fn subs(mut self, subs: Vec<Def>) -> Self {
        self.kind = Type::Complex;
        self.subs = subs;
        self
    }

    /// The attribute as RFC 7643 §7 describes one.
    fn describe(&self) -> Value {
        let mut o = json!({
            "name": self.name,
            "type": self.kind.name(),
            "multiValued": self.multi,
            "description": self.description,
            "required": self.required,
            "mutability": match self.mutability {
                Mutability::ReadOnly => "readOnly",
                Mutability::ReadWrite => "readWrite",
                Mutability::Immutable => "immutable",
                Mutability::WriteOnly => "writeOnly",
            },
            "returned": if self.mutability == Mutability::WriteOnly { "never" } else { "default" },
            "uniqueness": if self.unique { "server" } else { "none" },
        });
        if matches!(self.kind, Type::String | Type::Reference) {
            o["caseExact"] = json!(self.case_exact);
        }
        if !self.canonical.is_empty() {
            o["canonicalValues"] = json!(self.canonical);
        }
        if !self.references.is_empty() {
            o["referenceTypes"] = json!(self.references);
        }
        if !self.subs.is_empty() {
            o["subAttributes"] = Value::Array(
                self.subs
                    .iter()
                    .filter(|d| d.published)
                    .map(Def::describe)
                    .collect(),
            );
        }
        o
    }
}

/// The one address type Roster keeps, and the types it answers with.
pub const WORK: &str = "work";

/// The User schema's attributes. `roles` lists the account's roles beside
/// `user` (which every user holds and SCIM does not show).
pub fn user_core(roles: &[String]) -> Vec<Def> {
    vec![
        Def::new(
            "userName",
            Type::String,
            "Roster's username: 1–100 letters, digits, punctuation and single spaces; unique case-insensitively, look-alikes refused.",
        )
        .required()
        .unique(),
        Def::new("name", Type::Complex, "The user's name.").subs(vec![Def::new(
            "formatted",
            Type::String,
            "Roster's name (the same as displayName).",
        )]),
        Def::new(
            "displayName",
            Type::String,
            "Roster's name: 1–100 characters.",
        ),
        Def::new("nickName", Type::String, "Roster's nickname."),
        Def::new(
            "profileUrl",
            Type::Reference,
            "Roster's link: an http(s) URL.",
        )
        .references(&["external"]),
        Def::new(
            "emails",
            Type::Complex,
            "Roster keeps one address: the primary one (else the first).",
        )
        .multi()
        .subs(vec![
            Def::new("value", Type::String, "The address."),
            Def::new("type", Type::String, "Always work.").canonical([WORK.to_owned()]),
            primary(),
        ]),
        // Served but not published: see `Def::unpublished`.
        Def::new(
            "phoneNumbers",
            Type::Complex,
            "Roster keeps one number, in E.164 (+ and up to 15 digits): the primary one (else the first).",
        )
        .multi()
        .unpublished()
        .subs(vec![
            Def::new("value", Type::String, "The number, E.164."),
            Def::new("type", Type::String, "Always work.").canonical([WORK.to_owned()]),
            primary(),
        ]),
        Def::new(
            "photos",
            Type::Complex,
            "Roster keeps one picture: its profile_picture.",
        )
        .multi()
        .subs(vec![
            Def::new("value", Type::Reference, "An http(s) URL.").references(&["external"]),
            Def::new("type", Type::String, "Always photo.").canonical(["photo".to_owned()]),
            primary(),
        ]),
        // Every Roster user is active or not: `active` is never unassigned
        // (a create without it makes an active user).
        Def::new(
            "active",
            Type::Boolean,
            "false deactivates the user: their tokens stop and their connections close at once. Never unassigned: a create without it makes an active user.",
        )
        .required(),
        Def::new(
            "password",
            Type::String,
            "8–128 characters; never answered.",
        )
        .mutability(Mutability::WriteOnly),
        Def::new(
            "roles",
            Type::Complex,
            "Roster roles beside user, which every user holds.",
        )
        .multi()
        .subs(vec![
            Def::new("value", Type::String, "A role id of the account.")
                .exact()
                .canonical(roles.iter().cloned()),
        ]),
    ]
}

/// `primary` of a multi-valued attribute of which Roster keeps one value:
/// read to choose that value (the primary one given, else the first), never
/// answered, as nothing of it is kept. So it is served but not published:
/// a published `primary` would have to come back as it was sent (a single
/// value sent with `primary: false` included), which scim2-tester checks.
fn primary() -> Def {
    Def::new(
        "primary",
        Type::Boolean,
        "Chooses the one value kept; not answered.",
    )
    .unpublished()
}

/// Roster's extension: bio and the account's custom fields.
pub fn user_roster(settings: &Settings) -> Vec<Def> {
    let mut defs = vec![Def::new("bio", Type::String, "Up to 1,000 characters.")];
    for (name, def) in &settings.custom_fields {
        let kind = match def.field_type {
            FieldType::String => Type::String,
            FieldType::Number => Type::Decimal,
            FieldType::Boolean => Type::Boolean,
        };
        let mut d = Def::new(name, kind, "A custom field the account declared.").exact();
        d.required = def.required;
        defs.push(d);
    }
    defs
}

/// The Group schema's attributes: a space's name and members.
pub fn group_core() -> Vec<Def> {
    vec![
        Def::new(
            "displayName",
            Type::String,
            "The space's name: 1–100 characters.",
        )
        .required(),
        Def::new(
            "members",
            Type::Complex,
            "The space's members (users only); added with the space role user.",
        )
        .multi()
        .subs(vec![
            Def::new("value", Type::String, "The user's id.")
                .exact()
                .mutability(Mutability::Immutable),
            Def::new("$ref", Type::Reference, "The user's URI.")
                .references(&["User"])
                .mutability(Mutability::Immutable),
            Def::new("type", Type::String, "Always User.")
                .canonical(["User".to_owned()])
                .mutability(Mutability::Immutable),
        ]),
    ]
}

/// A schema resource as `/Schemas` answers it.
pub fn describe(id: &str, name: &str, description: &str, attrs: &[Def], location: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attrs.iter().filter(|d| d.published).map(Def::describe).collect::<Vec<_>>(),
        "meta": { "resourceType": "Schema", "location": location },
    })
}

/// A resource's schemas for PATCH and projection: the core attributes,
/// then each extension's, by URN.
pub struct Resource {
    pub core_urn: &'static str,
    pub core: Vec<Def>,
    pub extensions: Vec<(&'static str, Vec<Def>)>,
}

/// Attributes every resource has (RFC 7643 §3.1), read-only but `externalId`.
const COMMON: [(&str, bool); 4] = [
    ("id", true),
    ("externalId", false),
    ("meta", true),
    ("schemas", true),
];

impl Resource {
    fn find<'a>(defs: &'a [Def], name: &str) -> Option<&'a Def> {
        defs.iter().find(|d| d.name.eq_ignore_ascii_case(name))
    }

    fn defs(&self, urn: Option<&str>) -> Option<(Option<&'static str>, &[Def])> {
        match urn {
            None => Some((None, &self.core)),
            Some(u) if u.eq_ignore_ascii_case(self.core_urn) => Some((None, &self.core)),
            Some(u) => self
                .extensions
                .iter()
                .find(|(e, _)| e.eq_ignore_ascii_case(u))
                .map(|(e, d)| (Some(*e), d.as_slice())),
        }
    }
}

/// The enterprise User extension (RFC 7643 §4.3): nothing of it is stored.
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// RFC 7643 §4.1 User attributes Roster does not store. Identity providers
/// map them by default (Entra: title, preferredLanguage, addresses, …), so
/// a PATCH naming one is accepted and changes nothing, as a POST or PUT
/// carrying one is; `/Schemas` does not list them.
const UNSTORED_USER: [&str; 9] = [
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "addresses",
    "ims",
    "entitlements",
    "x509Certificates",
];

/// Sub-attributes of User attributes Roster does not store, accepted and
/// dropped as [`UNSTORED_USER`] are: the parts of `name` beside `formatted`
/// (a POST or PUT without `formatted` joins given, middle and family name
/// into Roster's name), the `display` of values Roster keeps one string of
/// (Okta sends `emails: [{value, display, primary}]`), and what RFC 7643
/// gives `roles` beside `value`.
const UNSTORED_USER_SUBS: [(&str, &str); 11] = [
    ("name", "givenName"),
    ("name", "familyName"),
    ("name", "middleName"),
    ("name", "honorificPrefix"),
    ("name", "honorificSuffix"),
    ("emails", "display"),
    ("phoneNumbers", "display"),
    ("photos", "display"),
    ("roles", "display"),
    ("roles", "type"),
    ("roles", "primary"),
];

/// A member's `display` (its user's name, which Okta's Group Push sends
/// beside `value`): accepted and dropped; the user's own name is theirs.
const UNSTORED_GROUP_SUBS: [(&str, &str); 1] = [("members", "display")];

impl Schema for Resource {
    fn unstored(&self, urn: Option<&str>, attr: &str, sub: Option<&str>) -> bool {
        let user = self.core_urn == USER;
        if user
            && (urn.is_some_and(|u| u.eq_ignore_ascii_case(ENTERPRISE_USER))
                || attr.eq_ignore_ascii_case(ENTERPRISE_USER))
        {
            return true;
        }
        if !urn.is_none_or(|u| u.eq_ignore_ascii_case(self.core_urn)) {
            return false;
        }
        let is = |name: &str, n: &&str| n.eq_ignore_ascii_case(name);
        if user && UNSTORED_USER.iter().any(|n| is(attr, n)) {
            return true;
        }
        let subs: &[(&str, &str)] = if user {
            &UNSTORED_USER_SUBS
        } else {
            &UNSTORED_GROUP_SUBS
        };
        sub.is_some_and(|sub| subs.iter().any(|(a, s)| is(attr, a) && is(sub, s)))
    }

    fn canonical(&self, urn: Option<&str>, attr: &str) -> Option<Attribute> {
        let core = urn.is_none_or(|u| u.eq_ignore_ascii_case(self.core_urn));
        if core
            && let Some((name, read_only)) =
                COMMON.iter().find(|(n, _)| n.eq_ignore_ascii_case(attr))
        {
            return Some(Attribute {
                urn: None,
                name: (*name).to_owned(),
                multi_valued: *name == "schemas",
                complex: *name == "meta",
                read_only: *read_only,
            });
        }
        let (ext, defs) = self.defs(urn)?;
        let d = Self::find(defs, attr)?;
        Some(Attribute {
            urn: ext.map(str::to_owned),
            name: d.name.clone(),
            multi_valued: d.multi,
            complex: d.kind == Type::Complex,
            read_only: d.mutability == Mutability::ReadOnly,
        })
    }

    fn sub(&self, attr: &Attribute, sub: &str) -> Option<String> {
        if attr.name == "meta" {
            return [
                "resourceType",
                "created",
                "lastModified",
                "location",
                "version",
            ]
            .into_iter()
            .find(|n| n.eq_ignore_ascii_case(sub))
            .map(str::to_owned);
        }
        let (_, defs) = self.defs(attr.urn.as_deref())?;
        let d = Self::find(defs, &attr.name)?;
        Self::find(&d.subs, sub).map(|s| s.name.clone())
    }

    fn case_exact(&self, path: &AttrPath) -> bool {
        let Some((_, defs)) = self.defs(path.urn.as_deref()) else {
            return false;
        };
        let Some(d) = Self::find(defs, &path.attr) else {
            return path.attr.eq_ignore_ascii_case("id");
        };
        match &path.sub {
            Some(s) => Self::find(&d.subs, s).is_some_and(|s| s.case_exact),
            None => d.case_exact,
        }
    }
}
