//! Users, their credentials and profile rules, without I/O.

use std::fmt;

use emporium_platform::FieldError;
use emporium_platform::auth::Role;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UserId(Uuid);

impl UserId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    pub fn parse(raw: &str) -> Result<Self, String> {
        Uuid::try_parse(raw)
            .map(Self)
            .map_err(|_| format!("`{raw}` is not a UUID"))
    }
}

impl Default for UserId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An email address, trimmed and lower-cased: the one form that is stored,
/// compared and unique.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err("is required".into());
        }
        if email.len() > 254 {
            return Err("is longer than 254 characters".into());
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err("is not an email address".into());
        };
        let valid_domain = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        let valid_local = !local.is_empty()
            && local.len() <= 64
            && !local.contains('@')
            && local
                .chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && c != '"');
        if !(valid_domain && valid_local) {
            return Err("is not an email address".into());
        }
        Ok(Self(email))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub const PASSWORD_MIN: usize = 10;
pub const PASSWORD_MAX: usize = 128;

/// Length is the rule that matters (NIST SP 800-63B): 10 to 128
/// characters, not the email, not one repeated character.
pub fn check_password(password: &str, email: Option<&Email>) -> Result<(), String> {
    let length = password.chars().count();
    if length < PASSWORD_MIN {
        return Err(format!("must have at least {PASSWORD_MIN} characters"));
    }
    if length > PASSWORD_MAX {
        return Err(format!("must have at most {PASSWORD_MAX} characters"));
    }
    if password.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    let mut chars = password.chars();
    let first = chars.next();
    if chars.all(|c| Some(c) == first) {
        return Err("must not be one character repeated".into());
    }
    if email.is_some_and(|e| password.trim().eq_ignore_ascii_case(e.as_str())) {
        return Err("must not be the email address".into());
    }
    Ok(())
}

fn check_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("is required".into());
    }
    if name.chars().count() > 100 {
        return Err("is longer than 100 characters".into());
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(name.to_owned())
}

fn check_phone(phone: Option<&str>) -> Result<Option<String>, String> {
    let Some(phone) = phone.map(str::trim).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    let allowed = phone
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    if !allowed || !(6..=20).contains(&digits) || phone.len() > 32 {
        return Err("is not a phone number (6 to 20 digits, with + - ( ) . and spaces)".into());
    }
    Ok(Some(phone.to_owned()))
}

/// `POST /users/register` as sent.
#[derive(Default, Deserialize)]
pub struct RegistrationInput {
    pub email: Option<String>,
    pub password: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
}

/// A registration whose every field follows the rules.
#[derive(Clone)]
pub struct Registration {
    pub email: Email,
    pub password: String,
    pub name: String,
    pub phone: Option<String>,
}

/// What `Debug` prints in place of a password or a token.
pub const REDACTED: &str = "[redacted]";

// A registration is logged with its fields but never with its password.
impl std::fmt::Debug for RegistrationInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrationInput")
            .field("email", &self.email)
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .field("name", &self.name)
            .field("phone", &self.phone)
            .finish()
    }
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("email", &self.email)
            .field("password", &REDACTED)
            .field("name", &self.name)
            .field("phone", &self.phone)
            .finish()
    }
}

struct Errors(Vec<FieldError>);

impl Errors {
    fn take<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        result
            .map_err(|message| {
                self.0.push(FieldError {
                    field: field.into(),
                    message,
                })
            })
            .ok()
    }
}

fn required(value: Option<&String>) -> Result<&str, String> {
    value
        .map(String::as_str)
        .ok_or_else(|| "is required".into())
}

impl Registration {
    pub fn parse(input: &RegistrationInput) -> Result<Self, Vec<FieldError>> {
        let mut errors = Errors(vec![]);
        let email = errors.take(
            "email",
            required(input.email.as_ref()).and_then(Email::parse),
        );
        let password = errors.take(
            "password",
            required(input.password.as_ref())
                .and_then(|p| check_password(p, email.as_ref()).map(|()| p.to_owned())),
        );
        let name = errors.take("name", required(input.name.as_ref()).and_then(check_name));
        let phone = errors.take("phone", check_phone(input.phone.as_deref()));
        match (email, password, name, phone) {
            (Some(email), Some(password), Some(name), Some(phone)) if errors.0.is_empty() => {
                Ok(Self {
                    email,
                    password,
                    name,
                    phone,
                })
            }
            _ => Err(errors.0),
        }
    }
}

/// `PUT /users/{id}` as sent: the profile, and for an admin the role and
/// whether the account may sign in.
#[derive(Debug, Default, Deserialize)]
pub struct ProfileInput {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub role: Option<String>,
    pub active: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileChange {
    pub name: String,
    pub phone: Option<String>,
    pub role: Option<Role>,
    pub active: Option<bool>,
}

impl ProfileChange {
    pub fn parse(input: &ProfileInput) -> Result<Self, Vec<FieldError>> {
        let mut errors = Errors(vec![]);
        let name = errors.take("name", required(input.name.as_ref()).and_then(check_name));
        let phone = errors.take("phone", check_phone(input.phone.as_deref()));
        let role = errors.take(
            "role",
            match input.role.as_deref() {
                None => Ok(None),
                Some(raw) => parse_role(raw).map(Some),
            },
        );
        match (name, phone, role) {
            (Some(name), Some(phone), Some(role)) if errors.0.is_empty() => Ok(Self {
                name,
                phone,
                role,
                active: input.active,
            }),
            _ => Err(errors.0),
        }
    }
}

pub fn parse_role(raw: &str) -> Result<Role, String> {
    match raw {
        "customer" => Ok(Role::Customer),
        "admin" => Ok(Role::Admin),
        other => Err(format!("`{other}` is not a role (customer, admin)")),
    }
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Customer => "customer",
        Role::Admin => "admin",
    }
}

/// A user as the service knows it (never with the password hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub name: String,
    pub phone: Option<String>,
    pub role: Role,
    pub active: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn registration_debug_redacts_the_password() {
        let input = RegistrationInput {
            email: Some("ada@example.org".into()),
            password: Some("hunter2 is my passphrase".into()),
            name: Some("Ada".into()),
            phone: None,
        };
        let parsed = Registration::parse(&input).unwrap();
        for printed in [
            format!("{input:?}"),
            format!("{parsed:?}"),
            format!("{parsed:#?}"),
        ] {
            assert!(!printed.contains("hunter2"), "{printed}");
            assert!(printed.contains("[redacted]") && printed.contains("ada@example.org"));
        }
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada.Lovelace@Example.ORG ")
                .unwrap()
                .as_str(),
            "ada.lovelace@example.org"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.org",
            "ada@example",
            "ada@.org",
            "ada@example..org",
            "a b@example.org",
            "ada@exa mple.org",
            "ada@example.org.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Email::parse(&format!("{}@example.org", "a".repeat(65))).is_err());
    }

    #[test]
    fn passwords_follow_the_length_rule() {
        let email = Email::parse("ada@example.org").unwrap();
        assert!(check_password("correct horse", Some(&email)).is_ok());
        assert!(check_password("ünïcødé-pässwörd", None).is_ok());
        assert!(check_password("short", None).is_err());
        assert!(check_password(&"x".repeat(129), None).is_err());
        assert!(check_password("aaaaaaaaaaaa", None).is_err());
        assert!(check_password("ADA@example.org", Some(&email)).is_err());
        assert!(check_password("tab\there-and-more", None).is_err());
    }

    #[test]
    fn a_registration_names_every_bad_field() {
        let errors = Registration::parse(&RegistrationInput {
            email: Some("nope".into()),
            password: Some("short".into()),
            name: None,
            phone: Some("call me".into()),
        })
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["email", "password", "name", "phone"]);
        let ok = Registration::parse(&RegistrationInput {
            email: Some("Ada@Example.org".into()),
            password: Some("a long passphrase".into()),
            name: Some("  Ada  ".into()),
            phone: Some("+44 20 7946 0958".into()),
        })
        .unwrap();
        assert_eq!(
            (ok.email.as_str(), ok.name.as_str()),
            ("ada@example.org", "Ada")
        );
    }
}
