//! Server names as the API takes them: display names such as `My Devbox Instance`
//! (what the original web UI suggests), and the slug (`My-Devbox-Instance`) that names
//! the spec file.

use crate::http::ApiError;
use crate::spec::is_valid_name;

/// A checked display name and its slug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerName {
    pub display: String,
    pub slug: String,
}

/// Checks a display name: 1-63 characters of letters, digits, spaces, `-`, `_` and `.`,
/// starting with a letter or digit.
pub fn parse(display: &str) -> Result<ServerName, ApiError> {
    let bad = |why: &str| ApiError::BadRequest(format!("invalid server name {display:?}: {why}"));
    if display.is_empty() {
        return Err(bad("it is empty"));
    }
    if display.chars().count() > 63 {
        return Err(bad("it is longer than 63 characters"));
    }
    if !display.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(bad("it must start with a letter or a digit"));
    }
    if let Some(c) = display
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.')))
    {
        return Err(bad(&format!(
            "{c:?} is not allowed (use letters, digits, spaces, '-', '_', '.')"
        )));
    }
    let slug = display.trim_end().replace(' ', "-");
    if !is_valid_name(&slug) {
        return Err(bad("it does not make a valid file name"));
    }
    Ok(ServerName {
        display: display.trim_end().to_owned(),
        slug,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_and_slugs() {
        let name = parse("My Devbox Instance").unwrap();
        assert_eq!(name.slug, "My-Devbox-Instance");
        assert_eq!(name.display, "My Devbox Instance");
        assert_eq!(parse("web-1.dev_x").unwrap().slug, "web-1.dev_x");
        for bad in [
            "",
            " x",
            "a/b",
            "..",
            "../x",
            "a\0b",
            "tab\there",
            "-x",
            &"a".repeat(64),
            "é",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must be rejected");
        }
        assert!(parse(&"a".repeat(63)).is_ok());
    }
}
