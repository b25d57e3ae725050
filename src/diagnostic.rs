//! One problem found in a spec or config file: where it is and what is wrong.
//!
//! Shared by `devbox validate`, the controller (which shows it in a server's status) and
//! the API, so that all three word an error the same way:
//! `specs/alice.yaml:7:9: spec.port: port 9000 is outside the range 8010-8100`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::yaml::{self, YamlError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl Diagnostic {
    /// A problem with the file as a whole (unreadable, wrong kind of document).
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: None,
            column: None,
            field: None,
            message: message.into(),
        }
    }

    /// A problem with one field, located in `text` (the file's contents) when possible.
    pub fn field(
        file: &Path,
        text: &str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let field = field.into();
        let (line, column) =
            yaml::locate(text, &field).map_or((None, None), |(l, c)| (Some(l), Some(c)));
        Self {
            file: file.to_owned(),
            line,
            column,
            field: Some(field),
            message: message.into(),
        }
    }

    /// A parse error reported by the YAML layer.
    pub fn from_yaml(file: &Path, err: YamlError) -> Self {
        Self {
            file: file.to_owned(),
            line: err.line,
            column: err.column,
            field: err.field,
            message: err.message,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Several diagnostics joined one per line, for error messages.
pub fn join(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
