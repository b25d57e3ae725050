//! `devbox schema`: JSON Schemas of the spec and the config, and the OpenAPI document
//! of the HTTP API, all generated from the Rust types.

use std::path::Path;

use anyhow::Context;

use crate::config::Config;
use crate::spec::DevServer;

/// The schema files and their contents, as committed under `schemas/`.
pub fn schemas() -> anyhow::Result<Vec<(&'static str, String)>> {
    let spec = serde_json::to_string_pretty(&schemars::schema_for!(DevServer))?;
    let config = serde_json::to_string_pretty(&schemars::schema_for!(Config))?;
    let openapi = serde_json::to_string_pretty(&crate::api::openapi())?;
    Ok(vec![
        ("devserver.schema.json", spec + "\n"),
        ("config.schema.json", config + "\n"),
        ("openapi.json", openapi + "\n"),
    ])
}

pub fn run(out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for (file, text) in schemas()? {
        let path = out.join(file);
        crate::fsutil::write_atomic(&path, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
