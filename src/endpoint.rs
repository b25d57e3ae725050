//! Where a code-server instance listens, and connecting to it.
//!
//! With `code_server.listen: socket` (the default) an instance serves on a Unix socket
//! in `<state_dir>/sockets/`, a directory only devbox's user may enter, and holds no TCP
//! port: no other local user, and no participant's terminal, reaches an IDE but through
//! devbox. With `listen: tcp` it serves on `127.0.0.1:<port>` as the original tool did.
//! Either way the port stays the route number of `/vscode/<port>/`; only the connection
//! behind it differs. Health checks, the proxy and its WebSocket tunnels all connect
//! through [`Endpoint::connect`].

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::header::HeaderValue;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// The longest path a Unix socket address holds on Linux: `sun_path` is 108 bytes,
/// its terminating NUL included.
pub const SOCKET_PATH_MAX: usize = 107;
/// The socket file's mode, for code-server's `--socket-mode`.
const SOCKET_MODE: &str = "600";
/// Hex digits of SHA-256 in a shortened socket name: 64 bits, no collision among the
/// servers of one devbox in practice.
const HASHED_NAME_HEX: usize = 16;

/// Where one instance listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `127.0.0.1:<port>` (`listen: tcp`, and instances started by a devbox from before
    /// sockets).
    Tcp(u16),
    /// A Unix socket file in the socket directory.
    Unix(PathBuf),
    /// A port on another machine (a Slurm job's node): reachable by anyone on that
    /// network, so such an instance always asks for a password (see `runtime::slurm`).
    Remote { host: String, port: u16 },
}

/// Opens (without following a symbolic link) the socket at `path`, when it is one and
/// belongs to the user its folder belongs to. The folder may be an instance user's
/// (`isolation.run_as: owner`), who could otherwise put a link there to another
/// owner's socket, or to any socket only root may open, and have devbox connect to it.
fn open_own_socket(path: &Path) -> io::Result<OwnedFd> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::{Mode, SFlag, fstat};
    let fd = nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let stat = fstat(&fd)?;
    let refused = |why: &str| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{}: {why}", path.display()),
        )
    };
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(refused("not a socket"));
    }
    let folder = path.parent().unwrap_or(Path::new("/"));
    if std::fs::symlink_metadata(folder)?.uid() != stat.st_uid {
        return Err(refused("the socket is not its folder's user's"));
    }
    Ok(fd)
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("cannot prepare the socket directory {path}: {source}")]
    SocketDir { path: PathBuf, source: io::Error },
    #[error(
        "the socket directory {path} is not a directory of devbox's own user (a file, a symbolic link, or another user's directory)"
    )]
    NotOwnDirectory { path: PathBuf },
    #[error(
        "the socket path {path} is {len} bytes, longer than a Unix socket address holds ({SOCKET_PATH_MAX}): use a shorter controller.state_dir, or code_server.listen: tcp"
    )]
    PathTooLong { path: PathBuf, len: usize },
    #[error("cannot remove the stale socket {path}: {source}")]
    Stale { path: PathBuf, source: io::Error },
}

impl Endpoint {
    /// A connection to the instance. TCP connections have Nagle's algorithm off: small
    /// requests and answers must leave at once (see `cli::serve`).
    pub async fn connect(&self) -> io::Result<EndpointStream> {
        match self {
            Endpoint::Tcp(port) => {
                let stream =
                    TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, *port))).await?;
                stream.set_nodelay(true)?;
                Ok(EndpointStream::Tcp(stream))
            }
            Endpoint::Unix(path) => {
                let socket = open_own_socket(path)?;
                // Connecting through the descriptor reaches the very socket checked.
                let checked = format!("/proc/self/fd/{}", socket.as_raw_fd());
                Ok(EndpointStream::Unix(UnixStream::connect(checked).await?))
            }
            Endpoint::Remote { host, port } => {
                let stream = TcpStream::connect((host.as_str(), *port)).await?;
                stream.set_nodelay(true)?;
                Ok(EndpointStream::Tcp(stream))
            }
        }
    }

    /// The `Host` an instance is sent when the client sent none (HTTP/1.1 wants one):
    /// its own address on TCP; `localhost` on a socket, which has no host name.
    pub fn default_host(&self) -> HeaderValue {
        match self {
            Endpoint::Tcp(port) => HeaderValue::from_str(&format!("127.0.0.1:{port}"))
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            Endpoint::Unix(_) => HeaderValue::from_static("localhost"),
            Endpoint::Remote { host, port } => HeaderValue::from_str(&format!("{host}:{port}"))
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
        }
    }

    /// The code-server arguments that make it listen here (a remote port: on every
    /// address of its machine).
    pub fn code_server_args(&self) -> Vec<String> {
        match self {
            Endpoint::Tcp(port) => vec!["--bind-addr".into(), format!("127.0.0.1:{port}")],
            Endpoint::Unix(path) => vec![
                "--socket".into(),
                path.to_string_lossy().into_owned(),
                "--socket-mode".into(),
                SOCKET_MODE.into(),
            ],
            Endpoint::Remote { port, .. } => vec!["--bind-addr".into(), format!("0.0.0.0:{port}")],
        }
    }

    /// The socket file, if this is one.
    pub fn socket(&self) -> Option<&Path> {
        match self {
            Endpoint::Tcp(_) | Endpoint::Remote { .. } => None,
            Endpoint::Unix(path) => Some(path),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(port) => write!(f, "http://127.0.0.1:{port}/"),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Remote { host, port } => write!(f, "http://{host}:{port}/"),
        }
    }
}

/// `<state_dir>/sockets`, absolute: code-server runs in its workspace, not in devbox's
/// working directory, and a restarted devbox may start from another one.
pub fn socket_dir(state_dir: &Path) -> PathBuf {
    std::path::absolute(state_dir)
        .unwrap_or_else(|_| state_dir.to_owned())
        .join("sockets")
}

/// Creates the socket directory with mode 0700 (only devbox's user may enter it:
/// connecting to a socket needs search permission on its directory, so nobody else
/// reaches an instance whatever the socket file's own mode, and code-server sets
/// `--socket-mode` only after it has created the file with the umask's mode), or brings an existing one back to
/// 0700; refuses anything that is not a directory of devbox's own user (a symbolic link
/// could point the sockets somewhere others can enter).
pub fn prepare_socket_dir(state_dir: &Path) -> Result<PathBuf, EndpointError> {
    let dir = socket_dir(state_dir);
    let failed = |source| EndpointError::SocketDir {
        path: dir.clone(),
        source,
    };
    match std::fs::symlink_metadata(&dir) {
        Ok(metadata) => {
            if !metadata.is_dir() || metadata.uid() != nix::unistd::geteuid().as_raw() {
                return Err(EndpointError::NotOwnDirectory { path: dir });
            }
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(failed(err)),
    }
    crate::fsutil::private_dir(&dir).map_err(failed)?;
    Ok(dir)
}

/// Where server `name`'s instance listens in socket mode: `<socket dir>/<name>.sock`;
/// when that is too long for a socket address, `<socket dir>/~<hash>.sock`, the hash
/// of the name (stable, so every start of a server uses the same path; `~` is never
/// in a server name, so no server's own name can equal another's hashed one).
pub fn socket_path(dir: &Path, name: &str) -> Result<PathBuf, EndpointError> {
    let plain = dir.join(format!("{name}.sock"));
    if plain.as_os_str().len() <= SOCKET_PATH_MAX {
        return Ok(plain);
    }
    let hash = crate::digest::sha256_hex(name.as_bytes(), HASHED_NAME_HEX / 2);
    let hashed = dir.join(format!("~{hash}.sock"));
    let len = hashed.as_os_str().len();
    if len <= SOCKET_PATH_MAX {
        Ok(hashed)
    } else {
        Err(EndpointError::PathTooLong { path: hashed, len })
    }
}

/// Removes what a crashed instance left at `path` (code-server removes its socket on a
/// clean exit, not when killed). Nothing there is fine.
pub fn remove_stale_socket(path: &Path) -> Result<(), EndpointError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(EndpointError::Stale {
            path: path.to_owned(),
            source,
        }),
    }
}

/// A connection to an instance, over TCP or a Unix socket; hyper drives it through
/// `hyper_util::rt::TokioIo`.
#[derive(Debug)]
pub enum EndpointStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for EndpointStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            EndpointStream::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            EndpointStream::Unix(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for EndpointStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            EndpointStream::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            EndpointStream::Unix(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            EndpointStream::Tcp(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            EndpointStream::Unix(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            EndpointStream::Tcp(stream) => stream.is_write_vectored(),
            EndpointStream::Unix(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            EndpointStream::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            EndpointStream::Unix(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            EndpointStream::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            EndpointStream::Unix(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn short_names_keep_their_name_and_long_paths_get_a_stable_hash() {
        let state = Path::new("/var/lib/devbox");
        assert_eq!(
            socket_path(&socket_dir(state), "alice").unwrap(),
            Path::new("/var/lib/devbox/sockets/alice.sock")
        );
        let deep = PathBuf::from(format!("/{}", "d".repeat(40)));
        let long_name = "n".repeat(63);
        let hashed = socket_path(&deep, &long_name).unwrap();
        assert!(hashed.as_os_str().len() <= SOCKET_PATH_MAX, "{hashed:?}");
        assert!(
            hashed
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with('~')
        );
        assert_eq!(hashed, socket_path(&deep, &long_name).unwrap(), "stable");
        assert_ne!(hashed, socket_path(&deep, &"m".repeat(63)).unwrap());
        let too_deep = PathBuf::from(format!("/{}", "d".repeat(100)));
        assert!(matches!(
            socket_path(&too_deep, "a"),
            Err(EndpointError::PathTooLong { .. })
        ));
    }

    #[test]
    fn the_socket_dir_is_made_private_and_kept_private() {
        let state = tempfile::tempdir().unwrap();
        let dir = prepare_socket_dir(state.path()).unwrap();
        let mode = |dir: &Path| std::fs::metadata(dir).unwrap().mode() & 0o7777;
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(prepare_socket_dir(state.path()).unwrap(), dir);
        assert_eq!(mode(&dir), 0o700, "an opened-up directory is closed again");

        let linked = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(state.path(), linked.path().join("sockets")).unwrap();
        assert!(matches!(
            prepare_socket_dir(linked.path()),
            Err(EndpointError::NotOwnDirectory { .. })
        ));
    }

    #[tokio::test]
    async fn connects_over_a_socket_and_says_localhost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sock");
        std::fs::write(&path, "stale").unwrap();
        remove_stale_socket(&path).unwrap();
        remove_stale_socket(&path).unwrap();
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let endpoint = Endpoint::Unix(path.clone());
        let (connected, accepted) = tokio::join!(endpoint.connect(), listener.accept());
        assert!(matches!(connected.unwrap(), EndpointStream::Unix(_)));
        accepted.unwrap();
        // A link to a socket, even a good one, is not connected to; nor is a file.
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let Err(refused) = Endpoint::Unix(link).connect().await else {
            panic!("a link to a socket was connected to");
        };
        assert!(refused.to_string().contains("not a socket"), "{refused}");
        let file = dir.path().join("file.sock");
        std::fs::write(&file, "").unwrap();
        assert!(Endpoint::Unix(file).connect().await.is_err());
        assert_eq!(endpoint.default_host(), "localhost");
        assert_eq!(Endpoint::Tcp(8010).default_host(), "127.0.0.1:8010");
        assert_eq!(
            endpoint.code_server_args()[..2],
            ["--socket".to_owned(), path.display().to_string()]
        );
    }
}
