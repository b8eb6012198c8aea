//! A user search any front door can ask for: a filter tree over an
//! allow-list of indexed attributes, an order, and an offset window with
//! the total. Rocket.Chat's JSON `query` (and SCIM's filters, later)
//! compile into it; storage turns it into SQL with every value bound, so no
//! text a client sends ever becomes SQL.

use super::ValidationError;
use super::user::{normalize_email, normalize_username};

/// The attributes a search may filter or sort on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    /// Case-insensitively, as usernames are unique.
    Username,
    /// Case-insensitively, as addresses are unique.
    Email,
    Name,
    CustomId,
    Active,
    /// Holds this role id.
    Role,
    /// Carries this tag.
    Tag,
    /// Presence as stored: `online`, `away` or `offline`.
    Status,
    /// When the user was created: an order key, compared with times.
    Created,
    /// When the user last changed: an order key, compared with times.
    Updated,
}

impl Attr {
    fn kind(self) -> Kind {
        match self {
            Attr::Active => Kind::Bool,
            Attr::Role | Attr::Tag => Kind::Set,
            Attr::Created | Attr::Updated => Kind::Time,
            _ => Kind::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Bool,
    /// A set of text values (roles, tags): equality means membership.
    Set,
    /// A point in time: ordered, compared with times only.
    Time,
}

/// How an attribute is compared with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Contains,
    StartsWith,
    EndsWith,
    /// Later / earlier than (times only).
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
}

impl Op {
    fn orders(self) -> bool {
        matches!(
            self,
            Op::Greater | Op::GreaterOrEqual | Op::Less | Op::LessOrEqual
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Bool(bool),
    Time(time::OffsetDateTime),
}

/// A filter: comparisons, presence, and their combinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Cmp {
        attr: Attr,
        op: Op,
        value: Value,
    },
    /// The attribute has a value (at least one role or tag, for a set).
    Present(Attr),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
}

/// At most this many comparisons in one filter, nested at most this deep:
/// a filter is compiled into one statement.
pub const MAX_TERMS: usize = 32;
pub const MAX_DEPTH: usize = 8;

impl Expr {
    /// A comparison, refused unless the value fits the attribute and the
    /// operator (`field` names where the filter came from). Text is
    /// normalised as storage keeps it: usernames and addresses folded, the
    /// rest compared as given (names case-insensitively).
    pub fn cmp(attr: Attr, op: Op, value: Value, field: &str) -> Result<Self, ValidationError> {
        let bad = |m: &str| Err(ValidationError::new(field, m));
        let value = match (attr.kind(), value) {
            (Kind::Time, Value::Time(t)) => {
                if !(op.orders() || matches!(op, Op::Eq | Op::Ne)) {
                    return bad("a time is compared with eq, ne, gt, ge, lt or le");
                }
                Value::Time(t)
            }
            (Kind::Time, _) => return bad("must be compared with a date-time"),
            (_, Value::Time(_)) => return bad("only times are compared with a date-time"),
            (_, _) if op.orders() => return bad("only times are compared with gt, ge, lt or le"),
            (Kind::Bool, Value::Bool(b)) => {
                if !matches!(op, Op::Eq | Op::Ne) {
                    return bad("a true/false attribute is compared for equality only");
                }
                Value::Bool(b)
            }
            (Kind::Bool, Value::Text(_)) => return bad("must be compared with true or false"),
            (_, Value::Bool(_)) => return bad("must be compared with text"),
            (Kind::Set, Value::Text(t)) => {
                if !matches!(op, Op::Eq | Op::Ne) {
                    return bad("roles and tags are compared for equality only");
                }
                if t.chars().count() > 100 {
                    return bad("a role id or a tag is at most 100 characters");
                }
                Value::Text(t)
            }
            (Kind::Text, Value::Text(t)) => {
                if t.chars().count() > 320 {
                    return bad("a compared value is at most 320 characters");
                }
                Value::Text(match attr {
                    Attr::Username => normalize_username(&t),
                    Attr::Email => normalize_email(&t),
                    Attr::Name => t.to_lowercase(),
                    _ => t,
                })
            }
        };
        Ok(Expr::Cmp { attr, op, value })
    }

    /// Refuses a filter larger or deeper than one statement should hold.
    pub fn check_size(&self, field: &str) -> Result<(), ValidationError> {
        fn walk(e: &Expr, depth: usize, terms: &mut usize) -> bool {
            if depth > MAX_DEPTH {
                return false;
            }
            match e {
                Expr::Cmp { .. } | Expr::Present(_) => {
                    *terms += 1;
                    *terms <= MAX_TERMS
                }
                Expr::And(v) | Expr::Or(v) => v.iter().all(|e| walk(e, depth + 1, terms)),
                Expr::Not(e) => walk(e, depth + 1, terms),
            }
        }
        let mut terms = 0;
        if walk(self, 0, &mut terms) {
            Ok(())
        } else {
            Err(ValidationError::new(
                field,
                format!(
                    "a filter holds at most {MAX_TERMS} comparisons, nested at most {MAX_DEPTH} deep"
                ),
            ))
        }
    }
}

/// An order key: `Role` and `Tag` are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub attr: Attr,
    pub descending: bool,
}

impl Sort {
    pub fn new(attr: Attr, descending: bool, field: &str) -> Result<Self, ValidationError> {
        if attr.kind() == Kind::Set {
            return Err(ValidationError::new(
                field,
                "users are not sorted by roles or tags",
            ));
        }
        Ok(Sort { attr, descending })
    }
}

/// One window of a search: the filter, the order (ties, and no order, by
/// creation), `offset` users skipped and at most `count` answered (0: the
/// total alone).
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    pub filter: Option<Expr>,
    pub sort: Vec<Sort>,
    pub offset: u64,
    pub count: u32,
}

/// A search's window and how many users match in all.
#[derive(Debug)]
pub struct Found<T> {
    pub items: Vec<T>,
    pub total: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_compared_with_times_only() {
        let t = time::OffsetDateTime::UNIX_EPOCH;
        assert!(Expr::cmp(Attr::Created, Op::Greater, Value::Time(t), "q").is_ok());
        assert!(Expr::cmp(Attr::Updated, Op::Eq, Value::Time(t), "q").is_ok());
        assert!(Expr::cmp(Attr::Created, Op::Contains, Value::Time(t), "q").is_err());
        assert!(Expr::cmp(Attr::Created, Op::Eq, Value::Text("x".into()), "q").is_err());
        assert!(Expr::cmp(Attr::Name, Op::Eq, Value::Time(t), "q").is_err());
        assert!(Expr::cmp(Attr::Name, Op::Less, Value::Text("x".into()), "q").is_err());
    }

    #[test]
    fn values_must_fit_their_attribute() {
        assert!(Expr::cmp(Attr::Active, Op::Eq, Value::Bool(true), "q").is_ok());
        assert!(Expr::cmp(Attr::Active, Op::Contains, Value::Bool(true), "q").is_err());
        assert!(Expr::cmp(Attr::Active, Op::Eq, Value::Text("yes".into()), "q").is_err());
        assert!(Expr::cmp(Attr::Username, Op::Eq, Value::Bool(true), "q").is_err());
        assert!(Expr::cmp(Attr::Role, Op::StartsWith, Value::Text("a".into()), "q").is_err());
        assert_eq!(
            Expr::cmp(Attr::Username, Op::Eq, Value::Text("Alice".into()), "q").unwrap(),
            Expr::Cmp {
                attr: Attr::Username,
                op: Op::Eq,
                value: Value::Text("alice".into())
            }
        );
    }

    #[test]
    fn filters_are_bounded() {
        let leaf = Expr::Present(Attr::Email);
        let wide = Expr::Or(vec![leaf.clone(); MAX_TERMS + 1]);
        assert!(wide.check_size("q").is_err());
        assert!(
            Expr::Or(vec![leaf.clone(); MAX_TERMS])
                .check_size("q")
                .is_ok()
        );
        let mut deep = leaf;
        for _ in 0..=MAX_DEPTH {
            deep = Expr::Not(Box::new(deep));
        }
        assert!(deep.check_size("q").is_err());
    }
}
