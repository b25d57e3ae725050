//! Syntax of marketplace extension ids (`publisher.name[@version]`), checked when specs
//! and API requests are validated, long before anything is installed.

/// `publisher.name[@version]` syntax check used by spec validation. Publisher and name
/// follow VS Code's identifier rule (a letter or digit, then letters, digits and '-');
/// the version is semver (`1.2.3`, optionally `-pre.1` / `+build`).
pub fn is_valid_extension_id(s: &str) -> bool {
    if s.len() > 256 {
        return false;
    }
    let (id, version) = match s.split_once('@') {
        Some((id, v)) => (id, Some(v)),
        None => (s, None),
    };
    let Some((publisher, name)) = id.split_once('.') else {
        return false;
    };
    is_identifier_part(publisher) && is_identifier_part(name) && version.is_none_or(is_semver)
}

fn is_identifier_part(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn is_semver(v: &str) -> bool {
    let (rest, build) = match v.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (v, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let dotted_ok = |s: &str| {
        !s.is_empty()
            && s.split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()))
        && pre.is_none_or(dotted_ok)
        && build.is_none_or(dotted_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_id_syntax() {
        for ok in [
            "ms-python.python",
            "ms-toolsai.jupyter@2024.1.0",
            "redhat.vscode-yaml",
            "13xforever.language-x86-64-assembly",
            "esbenp.prettier-vscode@10.4.0-beta.1",
            "a.b@1.2.3+build.5",
            "MS-Python.Python",
        ] {
            assert!(is_valid_extension_id(ok), "{ok}");
        }
        for bad in [
            "",
            "python",
            ".python",
            "ms-python.",
            "ms-python.python.extra",
            "-ms.python",
            "ms_python.python",
            "ms-python.python@",
            "ms-python.python@1.2",
            "ms-python.python@latest",
            "ms-python.python@1.2.3@4",
            "ms python.python",
            "../evil.vsix",
            "ms-python.python@1.2.3-",
        ] {
            assert!(!is_valid_extension_id(bad), "{bad}");
        }
    }
}
