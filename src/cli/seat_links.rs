//! `devbox seat-links`: one seat link per server (or per server of a template, its
//! ready pool servers included), asked of the running devbox, printed for an instructor
//! to hand out: a table to read, CSV for a mail merge or a spreadsheet, JSON for
//! scripts.

use std::process::ExitCode;

use anyhow::bail;
use clap::ValueEnum;
use serde::Serialize;
use serde_json::Value;

use super::remote::Remote;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// One server's link.
#[derive(Debug, Serialize)]
struct SeatLink {
    server: String,
    owner: String,
    url: String,
    expires_at: String,
}

pub fn run(remote: &Remote, template: Option<&str>, format: Format) -> anyhow::Result<ExitCode> {
    // For a template, its pool's unclaimed servers too: each link takes its server out
    // of the pool, for its seat, and the pool refills.
    let listing = match template {
        Some(_) => "/servers?include_pool=true",
        None => "/servers",
    };
    let servers: Vec<Value> = remote.call("GET", listing, None)?;
    let names: Vec<String> = servers
        .iter()
        .filter(|server| template.is_none_or(|t| server["template"] == t))
        .filter_map(|server| server["slug"].as_str().map(str::to_owned))
        .collect();
    if names.is_empty() {
        match template {
            Some(t) => bail!(
                "no server on {} was made from the template `{t}`",
                remote.base()
            ),
            None => bail!("no server on {}", remote.base()),
        }
    }
    let mut links = Vec::with_capacity(names.len());
    for name in names {
        let answer: Value = remote.call("POST", &format!("/servers/{name}/seat-link"), None)?;
        let field = |key: &str| answer[key].as_str().unwrap_or_default().to_owned();
        links.push(SeatLink {
            owner: field("owner"),
            url: field("url"),
            expires_at: field("expires_at"),
            server: name,
        });
    }
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&links)?),
        Format::Csv => print!("{}", to_csv(&links)),
        Format::Table => {
            let rows: Vec<Vec<String>> = links
                .into_iter()
                .map(|l| vec![l.server, l.owner, l.url, l.expires_at])
                .collect();
            super::print_table(&["SERVER", "OWNER", "URL", "EXPIRES"], &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// RFC 4180 CSV with a header line.
fn to_csv(links: &[SeatLink]) -> String {
    let mut out = String::from("server,owner,url,expires_at\r\n");
    for link in links {
        let cells = [&link.server, &link.owner, &link.url, &link.expires_at].map(|c| csv_cell(c));
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_cell(cell: &str) -> String {
    if cell.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let links = [SeatLink {
            server: "ada".into(),
            owner: "seat-ada".into(),
            url: "http://h/seat/x,y".into(),
            expires_at: "say \"when\"".into(),
        }];
        assert_eq!(
            to_csv(&links),
            "server,owner,url,expires_at\r\nada,seat-ada,\"http://h/seat/x,y\",\"say \"\"when\"\"\"\r\n"
        );
    }
}
