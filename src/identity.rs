//! Who is calling, and whose a server is.
//!
//! A caller is the admin (an admin token, a user named in `auth.admins`, or anyone when
//! no authentication is configured: one person on a laptop) or a named user (a seat
//! link's owner, a name from a trusted proxy). A server's owner is `metadata.owner` in
//! its spec; a server without one is the admin's. What a caller may do with a server
//! follows from these two alone: [`Caller::may_use`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest user name.
pub const MAX_USER_NAME: usize = 64;

/// A user's name: 1 to 64 letters, digits, `-`, `_`, `.` or `@`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a valid user name: use 1-{MAX_USER_NAME} letters, digits, `-`, `_`, `.` or `@`"
)]
pub struct InvalidUserName(pub String);

impl UserName {
    pub fn parse(name: &str) -> Result<Self, InvalidUserName> {
        let valid = !name.is_empty()
            && name.len() <= MAX_USER_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidUserName(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserName {
    type Error = InvalidUserName;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::parse(&name)
    }
}

impl From<UserName> for String {
    fn from(name: UserName) -> Self {
        name.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who a request comes from, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// May do everything.
    Admin,
    /// May use only the servers they own, within the limits of [`crate::api`]'s rules.
    User(UserName),
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::Admin)
    }

    /// Whether this caller may see and use a server owned by `owner` (`None`: the
    /// admin's).
    pub fn may_use(&self, owner: Option<&UserName>) -> bool {
        match self {
            Caller::Admin => true,
            Caller::User(name) => owner == Some(name),
        }
    }

    /// The owner a server this caller creates gets.
    pub fn owner(&self) -> Option<&UserName> {
        match self {
            Caller::Admin => None,
            Caller::User(name) => Some(name),
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Admin => f.write_str("admin"),
            Caller::User(name) => write!(f, "user {name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_follow_the_rule() {
        for good in [
            "a",
            "ada.lovelace@example.org",
            "seat-3",
            "U_1",
            &"x".repeat(64),
        ] {
            assert!(UserName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "../x", "ä", "a/b", &"x".repeat(65), "a:b"] {
            assert!(UserName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn users_use_their_own_servers_and_admins_all() {
        let ada = UserName::parse("ada").unwrap();
        let bob = UserName::parse("bob").unwrap();
        let as_ada = Caller::User(ada.clone());
        assert!(as_ada.may_use(Some(&ada)));
        assert!(!as_ada.may_use(Some(&bob)));
        assert!(!as_ada.may_use(None), "an unowned server is the admin's");
        assert!(Caller::Admin.may_use(Some(&bob)));
        assert!(Caller::Admin.may_use(None));
        assert_eq!(as_ada.owner(), Some(&ada));
        assert_eq!(Caller::Admin.owner(), None);
    }
}
