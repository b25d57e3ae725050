//! The Unix user an owner's instances run as: the one `isolation.users` names, or a
//! system user devbox creates (`useradd --system`) the first time the owner's instance
//! starts, named after the owner ([`system_user_name`]); servers without an owner (the
//! admin's) run as `devbox`. Never root. The instances of users devbox creates get a
//! home under the state dir (`homes/<user>`, made when missing; a user created by an
//! earlier devbox with another state dir still gets this devbox's); configured users
//! keep the home the password database gives them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use nix::unistd::User;

use super::IsolationError;
use crate::config::IsolationSettings;

/// The user of servers without an owner.
const ADMIN_USER: &str = "devbox";
/// Longest owner name used as it is in a system user name (`devbox-` + 24 < 32, the
/// longest name `useradd` accepts).
const PLAIN_MAX: usize = 24;
/// Characters of the owner's name kept in front of the hash otherwise.
const HASHED_PREFIX_MAX: usize = 15;

/// A Unix user instances run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// `HOME` of its instances.
    pub home: PathBuf,
    /// Whether devbox keeps [`Account::home`] (under the state dir) in existence.
    pub home_under_state_dir: bool,
    /// `SHELL` of its instances (what a VS Code terminal starts).
    pub shell: PathBuf,
}

/// Finds (and creates) the users of owners' instances.
#[derive(Debug)]
pub struct Accounts {
    users: BTreeMap<String, String>,
    /// Where the homes of the users devbox creates live.
    homes: PathBuf,
    /// One `useradd` at a time: two servers of a new owner start together.
    creating: Mutex<()>,
}

impl Accounts {
    pub fn new(settings: &IsolationSettings, state_dir: &Path) -> Self {
        Self {
            users: settings.users.clone(),
            homes: super::layout::homes_dir(state_dir),
            creating: Mutex::new(()),
        }
    }

    /// The user `owner`'s instances run as (`None`: the admin's servers), created when
    /// it does not exist yet and no existing user is configured. Blocking.
    pub fn for_owner(&self, owner: Option<&str>) -> Result<Account, IsolationError> {
        if let Some(owner) = owner
            && let Some(user) = self.users.get(owner)
        {
            return match lookup(user)? {
                Some(account) => Ok(account),
                None => Err(IsolationError::NoSuchUser {
                    owner: owner.to_owned(),
                    user: user.clone(),
                }),
            };
        }
        let name = system_user_name(owner);
        let home = self.homes.join(&name);
        let with_home = |account: Account| Account {
            home: home.clone(),
            home_under_state_dir: true,
            ..account
        };
        if let Some(account) = lookup(&name)? {
            return Ok(with_home(account));
        }
        let _one_at_a_time = self
            .creating
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(account) = lookup(&name)? {
            return Ok(with_home(account));
        }
        create_system_user(&name, owner, &home)?;
        lookup(&name)?
            .map(with_home)
            .ok_or_else(|| IsolationError::Create {
                user: name.clone(),
                detail: "useradd succeeded but the user cannot be found".into(),
            })
    }
}

/// The system user devbox creates for `owner`: `devbox-<owner>` when the owner's name
/// is a valid user name as it is (lower-case letters, digits and `-`, at most 24
/// characters), otherwise `devbox-<its first 15 such characters>_<8 hex digits of its
/// hash>`. Only the second form holds a `_`, so no owner's name can yield another's.
pub fn system_user_name(owner: Option<&str>) -> String {
    let Some(owner) = owner else {
        return ADMIN_USER.to_owned();
    };
    let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if owner.len() <= PLAIN_MAX && owner.chars().all(plain) {
        return format!("{ADMIN_USER}-{owner}");
    }
    let prefix: String = owner
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if plain(c) { c } else { '-' })
        .take(HASHED_PREFIX_MAX)
        .collect();
    let hash = crate::digest::sha256_hex(owner.as_bytes(), 4);
    format!("{ADMIN_USER}-{prefix}_{hash}")
}

fn lookup(name: &str) -> Result<Option<Account>, IsolationError> {
    let user = User::from_name(name).map_err(|source| IsolationError::Lookup {
        user: name.to_owned(),
        source,
    })?;
    let Some(user) = user else {
        return Ok(None);
    };
    if user.uid.is_root() {
        return Err(IsolationError::Root {
            user: name.to_owned(),
        });
    }
    Ok(Some(Account {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        home: user.dir,
        home_under_state_dir: false,
        shell: user.shell,
    }))
}

/// `useradd --system` with a group of its own, a shell for the IDE's terminals and a
/// home under the state dir (made by devbox, see [`super::layout::ensure_home`]).
fn create_system_user(name: &str, owner: Option<&str>, home: &Path) -> Result<(), IsolationError> {
    let failed = |detail: String| IsolationError::Create {
        user: name.to_owned(),
        detail,
    };
    let shell = ["/bin/bash", "/bin/sh"]
        .into_iter()
        .find(|shell| Path::new(shell).exists())
        .unwrap_or("/bin/sh");
    let comment = format!("devbox instances of {}", owner.unwrap_or("the admin"));
    let output = Command::new("useradd")
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            shell,
        ])
        .arg("--home-dir")
        .arg(home)
        .args(["--comment", &comment, name])
        .output()
        .map_err(|err| failed(format!("cannot run useradd: {err}")))?;
    // 9: the name exists (another devbox created it meanwhile): just as good.
    if output.status.success() || output.status.code() == Some(9) {
        tracing::info!(
            user = name,
            owner = owner.unwrap_or("-"),
            "created a system user for an owner's instances"
        );
        Ok(())
    } else {
        Err(failed(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_user_names_are_valid_and_never_collide() {
        assert_eq!(system_user_name(None), "devbox");
        assert_eq!(system_user_name(Some("seat-ws-1")), "devbox-seat-ws-1");
        let odd = system_user_name(Some("Alice@example.org"));
        assert!(odd.starts_with("devbox-alice-example-o_"), "{odd}");
        assert!(odd.len() <= 32, "{odd}");
        assert_ne!(
            system_user_name(Some("Alice")),
            system_user_name(Some("alice"))
        );
        // A plain name that spells another's hashed form cannot exist: `_` is never plain.
        let long = "a".repeat(64);
        let hashed = system_user_name(Some(&long));
        assert!(hashed.len() <= 32 && hashed.contains('_'), "{hashed}");
        for name in [odd, hashed] {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'),
                "{name}"
            );
        }
    }
}
