//! The cluster's shared secret: what a caller must present for the Raft RPCs and the membership
//! changes (`AddNode`, `RemoveNode`), so that a process without it, or with another cluster's,
//! can neither join nor disturb the cluster. The other client calls are guarded by the clients'
//! own tokens ([`crate::client_auth`]), never by this secret.
//!
//! The secret comes from a file (`--cluster-secret-file`, env `QUEUE_CLUSTER_SECRET_FILE`) or
//! from env `QUEUE_CLUSTER_SECRET`, never from a flag (a flag shows in `ps`). It travels in the
//! gRPC metadata key [`CLUSTER_SECRET_METADATA_KEY`]. The receiver compares the SHA-256 digests
//! of the presented and of its own secret in constant time, so neither the content nor the
//! length of its secret shows in how long a refusal takes. A [`ClusterSecret`] never prints
//! its value: not in `Debug`, not in an error, not in a log line.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The gRPC metadata key that carries the secret.
pub const CLUSTER_SECRET_METADATA_KEY: &str = "x-cluster-secret";
/// The environment variable holding the secret itself.
pub const CLUSTER_SECRET_ENV: &str = "QUEUE_CLUSTER_SECRET";
/// The shortest secret accepted, in bytes: anything shorter is guessable.
pub const MIN_SECRET_BYTES: usize = 16;
/// How an operator makes a secret, shown when none is given.
pub const HOW_TO_MAKE_ONE: &str = "head -c 32 /dev/urandom | base64 > data/cluster-secret";
/// The message of every refusal; it names neither what was presented nor what was expected.
pub const REFUSAL_MESSAGE: &str = "missing or wrong cluster secret";

/// Why no usable secret could be loaded. Each names where the secret came from, never its value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "no cluster secret given: pass --cluster-secret-file PATH (env QUEUE_CLUSTER_SECRET_FILE) \
         or set {CLUSTER_SECRET_ENV}; make one with `{HOW_TO_MAKE_ONE}` (and chmod 600 it)"
    )]
    Missing,
    #[error("cannot read the cluster secret file {path}: {error}")]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the cluster secret {origin} is empty; make one with `{HOW_TO_MAKE_ONE}`")]
    Empty { origin: String },
    #[error(
        "the cluster secret {origin} is too short: {length} bytes, at least {MIN_SECRET_BYTES} \
         needed; make one with `{HOW_TO_MAKE_ONE}`"
    )]
    TooShort { origin: String, length: usize },
    #[error(
        "the cluster secret {origin} has a byte at position {position} that cannot travel in gRPC \
         metadata: use printable ASCII, such as base64 (`{HOW_TO_MAKE_ONE}`)"
    )]
    NotPrintable { origin: String, position: usize },
}

/// Where the secret comes from: the `--cluster-secret-file` flag of every program that needs
/// it, or else env [`CLUSTER_SECRET_ENV`].
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterSecretSource {
    /// File holding the cluster's shared secret (one line, at least 16 bytes of printable ASCII;
    /// a trailing newline is ignored). Without it, env QUEUE_CLUSTER_SECRET holds the secret
    /// itself. Every node of a cluster needs the same secret: Raft RPCs and AddNode/RemoveNode
    /// without it are refused UNAUTHENTICATED. Make one with:
    /// head -c 32 /dev/urandom | base64 > data/cluster-secret; chmod 600 data/cluster-secret
    #[arg(long = "cluster-secret-file", env = "QUEUE_CLUSTER_SECRET_FILE")]
    pub file: Option<PathBuf>,
}

impl ClusterSecretSource {
    /// The secret from the file if one is named, else from env [`CLUSTER_SECRET_ENV`].
    pub fn load(&self) -> Result<ClusterSecret, SecretError> {
        ClusterSecret::load(self.file.as_deref(), std::env::var_os(CLUSTER_SECRET_ENV))
    }
}

/// The cluster's shared secret. Cheap to clone; `Debug` shows no part of it.
#[derive(Clone)]
pub struct ClusterSecret {
    /// The secret as sent to peers.
    value: MetadataValue<Ascii>,
    /// SHA-256 of the secret, what a presented secret's digest is compared with.
    digest: [u8; 32],
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ClusterSecret(<redacted>)")
    }
}

impl ClusterSecret {
    /// The secret in `file` if given, else `env_value` (the content of [`CLUSTER_SECRET_ENV`]).
    pub fn load(file: Option<&Path>, env_value: Option<OsString>) -> Result<Self, SecretError> {
        match (file, env_value) {
            (Some(path), _) => Self::from_file(path),
            (None, Some(value)) => Self::parse(
                value.as_encoded_bytes(),
                format!("in env {CLUSTER_SECRET_ENV}"),
            ),
            (None, None) => Err(SecretError::Missing),
        }
    }

    /// The secret in the file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let content = std::fs::read(path).map_err(|error| SecretError::Unreadable {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(&content, format!("in file {}", path.display()))
    }

    /// Checks `raw` (trailing whitespace, the file's newline, ignored); `origin` says where it
    /// came from in an error.
    fn parse(raw: &[u8], origin: String) -> Result<Self, SecretError> {
        let (value, digest) = usable_secret(raw).map_err(|problem| match problem {
            Unusable::Empty => SecretError::Empty { origin },
            Unusable::TooShort { length } => SecretError::TooShort { origin, length },
            Unusable::NotPrintable { position } => SecretError::NotPrintable { origin, position },
        })?;
        Ok(Self { value, digest })
    }

    /// Whether `presented` is this secret, in time that depends on neither.
    pub fn matches(&self, presented: &[u8]) -> bool {
        digest_of(presented).ct_eq(&self.digest).into()
    }

    /// Puts the secret into `request`'s metadata.
    pub fn attach<T>(&self, request: &mut Request<T>) {
        request
            .metadata_mut()
            .insert(CLUSTER_SECRET_METADATA_KEY, self.value.clone());
    }

    /// `Ok` if `request` presents this secret; otherwise `UNAUTHENTICATED`, with a warning that
    /// names the caller's address (never what it presented).
    pub fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let presented = request.metadata().get(CLUSTER_SECRET_METADATA_KEY);
        if presented.is_some_and(|value| self.matches(value.as_bytes())) {
            return Ok(());
        }
        tracing::warn!(
            peer = request
                .remote_addr()
                .map_or_else(|| "unknown".to_owned(), |addr| addr.to_string()),
            secret_presented = presented.is_some(),
            "refused a call: {REFUSAL_MESSAGE}"
        );
        Err(Status::unauthenticated(REFUSAL_MESSAGE))
    }
}

/// As a tonic interceptor, the secret guards a whole service: a call that does not present it
/// is refused before any handler runs.
impl Interceptor for ClusterSecret {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(&request)?;
        Ok(request)
    }
}

pub(crate) fn digest_of(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// What makes a would-be secret unusable; the caller says where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unusable {
    #[error("it is empty")]
    Empty,
    #[error("it is too short: {length} bytes, at least {MIN_SECRET_BYTES} needed")]
    TooShort { length: usize },
    #[error(
        "it has a byte at position {position} that cannot travel in gRPC metadata: use printable \
         ASCII, such as base64"
    )]
    NotPrintable { position: usize },
}

/// `raw` less trailing whitespace (a file's newline), checked to be a usable shared secret (at
/// least [`MIN_SECRET_BYTES`] of printable ASCII), as a metadata value and its SHA-256 digest.
/// The one check of the cluster secret and of the queue's client tokens.
pub(crate) fn usable_secret(raw: &[u8]) -> Result<(MetadataValue<Ascii>, [u8; 32]), Unusable> {
    let secret = raw.trim_ascii_end();
    if secret.is_empty() {
        return Err(Unusable::Empty);
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(Unusable::TooShort {
            length: secret.len(),
        });
    }
    if let Some(position) = secret
        .iter()
        .position(|byte| !(byte.is_ascii_graphic() || *byte == b' '))
    {
        return Err(Unusable::NotPrintable { position });
    }
    // Printable ASCII always makes a metadata value; this refusal only backs the check above.
    let value =
        MetadataValue::try_from(secret).map_err(|_| Unusable::NotPrintable { position: 0 })?;
    Ok((value, digest_of(secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0";

    fn secret(value: &str) -> ClusterSecret {
        ClusterSecret::parse(value.as_bytes(), "in a test".to_owned()).expect("a valid secret")
    }

    #[test]
    fn the_trailing_newline_is_not_part_of_the_secret() {
        let from_file = secret(&format!("{GOOD}\n"));
        assert!(from_file.matches(GOOD.as_bytes()));
        assert!(!from_file.matches(format!("{GOOD}\n").as_bytes()));
    }

    #[test]
    fn only_the_same_secret_matches() {
        let secret = secret(GOOD);
        assert!(secret.matches(GOOD.as_bytes()));
        assert!(!secret.matches(&GOOD.as_bytes()[1..]));
        assert!(!secret.matches(format!("{GOOD}x").as_bytes()));
        assert!(!secret.matches(b""));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", secret(GOOD));
        assert!(!shown.contains(GOOD), "{shown}");
        assert!(!shown.contains(&GOOD[..8]), "{shown}");
    }

    #[test]
    fn a_request_is_checked_by_its_metadata() {
        let secret = secret(GOOD);
        let mut request = Request::new(());
        assert_eq!(
            secret.check(&request).expect_err("no secret").code(),
            tonic::Code::Unauthenticated
        );
        self::secret("a-different-secret-of-the-same-size").attach(&mut request);
        assert_eq!(
            secret.check(&request).expect_err("a wrong secret").code(),
            tonic::Code::Unauthenticated
        );
        secret.attach(&mut request);
        secret.check(&request).expect("the right secret");
    }

    #[test]
    fn bad_secrets_are_refused_naming_the_problem_and_the_origin() {
        let refused = |raw: &[u8]| {
            ClusterSecret::parse(raw, "in file data/cluster-secret".to_owned())
                .expect_err("refused")
        };
        let empty = refused(b"\n");
        assert!(matches!(empty, SecretError::Empty { .. }));
        assert!(empty.to_string().contains("data/cluster-secret"), "{empty}");
        let short = refused(b"too-short\n");
        assert!(matches!(short, SecretError::TooShort { length: 9, .. }));
        assert!(short.to_string().contains("too short"), "{short}");
        assert!(short.to_string().contains("data/cluster-secret"), "{short}");
        assert!(!short.to_string().contains("too-short\n"), "{short}");
        let binary = refused(b"0123456789abcdef\x00\xff");
        assert!(matches!(
            binary,
            SecretError::NotPrintable { position: 16, .. }
        ));
    }

    #[test]
    fn the_file_wins_over_the_environment_and_errors_name_it() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("cluster-secret");
        std::fs::write(&path, format!("{GOOD}\n")).expect("write the secret");
        let loaded = ClusterSecret::load(Some(&path), Some("an-env-secret-value-0".into()))
            .expect("the file's secret");
        assert!(loaded.matches(GOOD.as_bytes()));

        let from_env = ClusterSecret::load(None, Some("an-env-secret-value-0".into()))
            .expect("the env secret");
        assert!(from_env.matches(b"an-env-secret-value-0"));
        let short_env = ClusterSecret::load(None, Some("short".into())).expect_err("too short");
        assert!(
            short_env.to_string().contains(CLUSTER_SECRET_ENV),
            "{short_env}"
        );

        let missing_path = dir.path().join("no-such-file");
        let missing = ClusterSecret::load(Some(&missing_path), None).expect_err("no file");
        assert!(matches!(missing, SecretError::Unreadable { .. }));
        assert!(
            missing
                .to_string()
                .contains(&missing_path.display().to_string()),
            "{missing}"
        );
        let nothing = ClusterSecret::load(None, None).expect_err("no secret at all");
        assert!(matches!(nothing, SecretError::Missing));
        assert!(nothing.to_string().contains(HOW_TO_MAKE_ONE), "{nothing}");
    }
}
