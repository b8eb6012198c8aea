//! Per-account settings: for now the declarations of custom user fields
//! (Rocket.Chat's `customFields`: a user may only carry fields the account
//! declared, of the declared type).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ValidationError, text};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Number,
    Boolean,
}

/// One declared custom field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomFieldDef {
    #[serde(rename = "type")]
    pub field_type: FieldType,
    #[serde(default)]
    pub required: bool,
    /// Longest string value, in characters (strings only; default 1000).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "maxLength",
        deserialize_with = "super::whole::option"
    )]
    pub max_length: Option<u32>,
    /// Private fields are shown only to API keys and `view-other-user-info`.
    #[serde(default)]
    pub private: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Settings {
    #[serde(default)]
    pub custom_fields: BTreeMap<String, CustomFieldDef>,
    /// Self sign-up (`POST /signup`).
    #[serde(default)]
    pub signup: SignupSettings,
    /// Mail sent to users.
    #[serde(default)]
    pub email: EmailSettings,
}

/// `verify`: new users with an unverified address get a link confirming it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    #[serde(default)]
    pub verify: bool,
}

/// Whether people may sign themselves up, and whether they must solve a
/// captcha first (verified by the server at its configured siteverify URL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupSettings {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "yes")]
    pub captcha: bool,
}

fn yes() -> bool {
    true
}

impl Default for SignupSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            captcha: true,
        }
    }
}

pub const MAX_CUSTOM_FIELDS: usize = 50;
pub const MAX_CUSTOM_STRING: u32 = 1000;

impl Settings {
    /// Applies a `PATCH /settings` change: each named declaration is set, or
    /// removed when `None`. Existing user values of a removed field are kept
    /// in storage but no longer validated or shown.
    pub fn apply_custom_fields(
        &mut self,
        change: BTreeMap<String, Option<CustomFieldDef>>,
    ) -> Result<(), ValidationError> {
        for (name, def) in change {
            let field = format!("custom_fields.{name}");
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(ValidationError::new(
                    field,
                    "names are 1 to 64 characters of letters, digits, '_' and '-'",
                ));
            }
            match def {
                Some(def) => {
                    if let Some(max) = def.max_length {
                        if def.field_type != FieldType::String {
                            return Err(ValidationError::new(
                                format!("{field}.max_length"),
                                "only string fields have a max_length",
                            ));
                        }
                        if max == 0 || max > MAX_CUSTOM_STRING {
                            return Err(ValidationError::new(
                                format!("{field}.max_length"),
                                format!("must be between 1 and {MAX_CUSTOM_STRING}"),
                            ));
                        }
                    }
                    self.custom_fields.insert(name, def);
                }
                None => {
                    self.custom_fields.remove(&name);
                }
            }
        }
        if self.custom_fields.len() > MAX_CUSTOM_FIELDS {
            return Err(ValidationError::new(
                "custom_fields",
                format!("at most {MAX_CUSTOM_FIELDS} custom fields may be declared"),
            ));
        }
        Ok(())
    }

    /// Checks a user's custom field values against the declarations.
    /// `creating` also demands every required field.
    pub fn check_custom_fields(
        &self,
        values: &Map<String, Value>,
        creating: bool,
    ) -> Result<(), ValidationError> {
        for (name, value) in values {
            let field = format!("custom_fields.{name}");
            let Some(def) = self.custom_fields.get(name) else {
                return Err(ValidationError::new(
                    field,
                    "is not a custom field declared in the account's settings",
                ));
            };
            match (def.field_type, value) {
                (_, Value::Null) if !def.required => {}
                (FieldType::String, Value::String(s)) => {
                    let max = def.max_length.unwrap_or(MAX_CUSTOM_STRING) as usize;
                    text::free_text(&field, s, max)?;
                }
                (FieldType::Number, Value::Number(_)) | (FieldType::Boolean, Value::Bool(_)) => {}
                (t, _) => {
                    return Err(ValidationError::new(
                        field,
                        format!("must be a {}", serde_json::to_value(t).unwrap_or_default()),
                    ));
                }
            }
        }
        if creating
            && let Some((name, _)) = self
                .custom_fields
                .iter()
                .find(|(name, def)| def.required && values.get(*name).is_none_or(Value::is_null))
        {
            return Err(ValidationError::new(
                format!("custom_fields.{name}"),
                "is required",
            ));
        }
        Ok(())
    }

    /// The values a viewer without access to private data may see.
    pub fn public_custom_fields(&self, values: &Map<String, Value>) -> Map<String, Value> {
        values
            .iter()
            .filter(|(k, _)| self.custom_fields.get(*k).is_some_and(|d| !d.private))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

// The body of `PATCH /settings` as sent.

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSettings {
    /// Each named field is declared (or redeclared); `null` removes it.
    #[serde(alias = "customFields")]
    #[schema(value_type = Object)]
    pub custom_fields: Option<BTreeMap<String, Option<CustomFieldDef>>>,
    /// Self sign-up: `{"enabled": true, "captcha": true}`.
    #[serde(alias = "selfSignup", alias = "self_signup")]
    pub signup: Option<SignupSettings>,
    /// Mail to users: `{"verify": true}` mails new users a link confirming
    /// their address.
    pub email: Option<EmailSettings>,
}
