//! Who may call the queue's client API: every caller presents a token of its role, distinct from
//! the cluster secret ([`crate::auth`]), so that reaching a queue port is not enough to resign
//! the executors' lease, take it, or acknowledge orders nobody executed.
//!
//! Three roles, each with a token of its own that the nodes read from a file
//! ([`ClientTokenFiles`]):
//! - `orchestrator`: records checkout decisions and enqueues (`Enqueue`, `EnqueueBatch`,
//!   `Decide`) and reads (`GetOrder`, `ListQueue`, `ClusterStatus`);
//! - `executor`: the lease and the execution (`Campaign`, `RenewLease`, `Resign`, `Dequeue`,
//!   `RecordExecution`, `Acknowledge`) and the reads;
//! - `admin`: the operator's (queuectl, test and chaos harnesses): every call.
//!
//! A client presents its token in the metadata key [`QUEUE_TOKEN_METADATA_KEY`]; it never says
//! its role, the node finds it by which token matches. A call without a known token is refused
//! `UNAUTHENTICATED`, a known token's call its role may not make `PERMISSION_DENIED`. Tokens are
//! compared as SHA-256 digests in constant time, against every role's each time.
//!
//! The lease's fencing token is what the holder proves itself with, so answers carry it only to
//! the roles that work the lease ([`Role::sees_lease_tokens`]): an orchestrator, and so any page
//! it serves, never learns it.
//!
//! A client's token comes from a file (`--queue-token-file`, env `QUEUE_TOKEN_FILE`) or from env
//! `QUEUE_TOKEN`, never from a flag (a flag shows in `ps`); like the cluster secret, a token never
//! prints its value.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::auth::{ClusterSecret, digest_of, usable_secret};

/// The gRPC metadata key that carries a client's token.
pub const QUEUE_TOKEN_METADATA_KEY: &str = "x-queue-token";
/// The environment variable holding a client's token itself.
pub const QUEUE_TOKEN_ENV: &str = "QUEUE_TOKEN";
/// How an operator makes a token, shown when none is given.
pub const HOW_TO_MAKE_A_TOKEN: &str = "head -c 32 /dev/urandom | base64 > data/queue-tokens/ROLE";
/// The message of every refusal of an unknown caller; it names nothing presented or expected.
pub const UNAUTHENTICATED_MESSAGE: &str = "missing or wrong queue token";

/// A caller's part, known by the token it presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Orchestrator,
    Executor,
    Admin,
}

/// A call of the client API that a role may or may not make. `AddNode` and `RemoveNode` are not
/// among them: they require the cluster secret instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Enqueue,
    EnqueueBatch,
    Decide,
    Campaign,
    RenewLease,
    Resign,
    Dequeue,
    RecordExecution,
    Acknowledge,
    GetOrder,
    ListQueue,
    ClusterStatus,
}

impl Call {
    fn is_read(self) -> bool {
        matches!(self, Call::GetOrder | Call::ListQueue | Call::ClusterStatus)
    }

    fn works_the_lease(self) -> bool {
        matches!(
            self,
            Call::Campaign
                | Call::RenewLease
                | Call::Resign
                | Call::Dequeue
                | Call::RecordExecution
                | Call::Acknowledge
        )
    }
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Orchestrator, Role::Executor, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Orchestrator => "orchestrator",
            Role::Executor => "executor",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may make `call`.
    pub fn may(self, call: Call) -> bool {
        match self {
            Role::Admin => true,
            Role::Executor => call.is_read() || call.works_the_lease(),
            Role::Orchestrator => !call.works_the_lease(),
        }
    }

    /// Whether answers to this role carry lease tokens (fencing tokens of the lease in force, of
    /// an order's execution and acknowledgement); to other roles they are 0.
    pub fn sees_lease_tokens(self) -> bool {
        matches!(self, Role::Executor | Role::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// Why no usable token could be loaded. Each names where the token came from, never its value.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "no queue token given: pass --queue-token-file PATH (env QUEUE_TOKEN_FILE) or set \
         {QUEUE_TOKEN_ENV}; the queue nodes' --{{orchestrator,executor,admin}}-token-file name \
         the tokens they accept (make one with `{HOW_TO_MAKE_A_TOKEN}` and chmod 600 it)"
    )]
    Missing,
    #[error("cannot read the queue token file {path}: {error}")]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "the queue token {origin} is unusable: {problem}; make one with `{HOW_TO_MAKE_A_TOKEN}`"
    )]
    Unusable { origin: String, problem: String },
    /// Two roles with one token could not be told apart.
    #[error("the {first} and {second} tokens are the same: each role needs a token of its own")]
    Shared { first: Role, second: Role },
    /// A token that is the cluster secret would let a client act as a node, or a node's secret
    /// act as a client.
    #[error("the {role} token is the cluster secret: client tokens must differ from it")]
    IsClusterSecret { role: Role },
}

/// A client's token: presented with every call as a tonic interceptor. `Debug` shows no part of
/// it.
#[derive(Clone)]
pub struct QueueToken {
    value: MetadataValue<Ascii>,
    digest: [u8; 32],
}

impl fmt::Debug for QueueToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("QueueToken(<redacted>)")
    }
}

impl QueueToken {
    /// The token in `file` if given, else `env_value` (the content of [`QUEUE_TOKEN_ENV`]).
    pub fn load(file: Option<&Path>, env_value: Option<OsString>) -> Result<Self, TokenError> {
        match (file, env_value) {
            (Some(path), _) => Self::from_file(path),
            (None, Some(value)) => Self::parse(
                value.as_encoded_bytes(),
                format!("in env {QUEUE_TOKEN_ENV}"),
            ),
            (None, None) => Err(TokenError::Missing),
        }
    }

    /// The token in the file at `path` (a trailing newline is ignored).
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let content = std::fs::read(path).map_err(|error| TokenError::Unreadable {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(&content, format!("in file {}", path.display()))
    }

    fn parse(raw: &[u8], origin: String) -> Result<Self, TokenError> {
        let (value, digest) = usable_secret(raw).map_err(|problem| TokenError::Unusable {
            origin,
            problem: problem.to_string(),
        })?;
        Ok(Self { value, digest })
    }

    /// Puts the token into `request`'s metadata.
    pub fn attach<T>(&self, request: &mut Request<T>) {
        request
            .metadata_mut()
            .insert(QUEUE_TOKEN_METADATA_KEY, self.value.clone());
    }
}

/// As a tonic interceptor on a client's channel, the token goes with every call.
impl Interceptor for QueueToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        self.attach(&mut request);
        Ok(request)
    }
}

/// Where a client's token comes from: the `--queue-token-file` flag of every program that calls
/// the queue, or else env [`QUEUE_TOKEN_ENV`].
#[derive(Debug, Clone, clap::Args)]
pub struct QueueTokenSource {
    /// File holding this client's queue token (one line, at least 16 bytes of printable ASCII):
    /// the token of its role (orchestrator, executor or admin) that the queue nodes were given.
    /// Without it, env QUEUE_TOKEN holds the token itself. Calls without a known token are
    /// refused UNAUTHENTICATED.
    #[arg(long = "queue-token-file", env = "QUEUE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

impl QueueTokenSource {
    /// The token from the file if one is named, else from env [`QUEUE_TOKEN_ENV`].
    pub fn load(&self) -> Result<QueueToken, TokenError> {
        QueueToken::load(
            self.token_file.as_deref(),
            std::env::var_os(QUEUE_TOKEN_ENV),
        )
    }
}

/// The `queue-node` flags naming the token file of each role.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientTokenFiles {
    /// File holding the orchestrators' queue token (enqueue, decide, read).
    /// Make one with: head -c 32 /dev/urandom | base64 > data/queue-tokens/orchestrator
    #[arg(long, env = "QUEUE_ORCHESTRATOR_TOKEN_FILE")]
    pub orchestrator_token_file: PathBuf,
    /// File holding the executors' queue token (campaign, renew, resign, dequeue, record,
    /// acknowledge, read).
    #[arg(long, env = "QUEUE_EXECUTOR_TOKEN_FILE")]
    pub executor_token_file: PathBuf,
    /// File holding the operators' queue token (queuectl): every client call.
    #[arg(long, env = "QUEUE_ADMIN_TOKEN_FILE")]
    pub admin_token_file: PathBuf,
}

impl ClientTokenFiles {
    /// The three tokens, checked apart from each other and from `secret`.
    pub fn load(&self, secret: &ClusterSecret) -> Result<ClientRoles, TokenError> {
        ClientRoles::new(
            [
                (
                    Role::Orchestrator,
                    QueueToken::from_file(&self.orchestrator_token_file)?,
                ),
                (
                    Role::Executor,
                    QueueToken::from_file(&self.executor_token_file)?,
                ),
                (Role::Admin, QueueToken::from_file(&self.admin_token_file)?),
            ],
            secret,
        )
    }
}

/// What a node accepts: each role's token digest. Cheap to clone; `Debug` shows no token.
#[derive(Clone)]
pub struct ClientRoles {
    tokens: Arc<[(Role, [u8; 32])]>,
}

impl fmt::Debug for ClientRoles {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ClientRoles(<redacted>)")
    }
}

impl ClientRoles {
    /// Accepts `tokens`, each for its role; refused if two are the same or one is `secret`.
    pub fn new(
        tokens: [(Role, QueueToken); 3],
        secret: &ClusterSecret,
    ) -> Result<Self, TokenError> {
        for (at, (role, token)) in tokens.iter().enumerate() {
            if secret.matches(token.value.as_bytes()) {
                return Err(TokenError::IsClusterSecret { role: *role });
            }
            if let Some((other, _)) = tokens[..at]
                .iter()
                .find(|(_, earlier)| earlier.digest == token.digest)
            {
                return Err(TokenError::Shared {
                    first: *other,
                    second: *role,
                });
            }
        }
        Ok(Self {
            tokens: tokens
                .iter()
                .map(|(role, token)| (*role, token.digest))
                .collect(),
        })
    }

    /// The role whose token `presented` is, compared with every role's in constant time.
    fn role_of(&self, presented: &[u8]) -> Option<Role> {
        let digest = digest_of(presented);
        let mut found = None;
        for (role, expected) in self.tokens.iter() {
            if bool::from(digest.ct_eq(expected)) {
                found = Some(*role);
            }
        }
        found
    }

    /// The caller's role if `request` presents a known token and that role may make `call`;
    /// otherwise `UNAUTHENTICATED` or `PERMISSION_DENIED`, with a warning naming the caller's
    /// address (never what it presented).
    pub fn authorize<T>(&self, request: &Request<T>, call: Call) -> Result<Role, Status> {
        let peer = || {
            request
                .remote_addr()
                .map_or_else(|| "unknown".to_owned(), |addr| addr.to_string())
        };
        let presented = request.metadata().get(QUEUE_TOKEN_METADATA_KEY);
        let Some(role) = presented.and_then(|value| self.role_of(value.as_bytes())) else {
            tracing::warn!(
                peer = peer(),
                call = ?call,
                token_presented = presented.is_some(),
                "refused a call: {UNAUTHENTICATED_MESSAGE}"
            );
            return Err(Status::unauthenticated(UNAUTHENTICATED_MESSAGE));
        };
        if !role.may(call) {
            tracing::warn!(peer = peer(), call = ?call, %role, "refused a call its role may not make");
            return Err(Status::permission_denied(format!(
                "the {role} role may not call {call:?}"
            )));
        }
        Ok(role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORCHESTRATOR: &str = "b3JjaGVzdHJhdG9yLXRva2VuLTAwMDE=";
    const EXECUTOR: &str = "ZXhlY3V0b3ItdG9rZW4tMDAwMDAwMDE=";
    const ADMIN: &str = "YWRtaW4tdG9rZW4tMDAwMDAwMDAwMDE=";
    const SECRET: &str = "Y2x1c3Rlci1zZWNyZXQtMDAwMDAwMDE=";

    fn token(value: &str) -> QueueToken {
        QueueToken::parse(value.as_bytes(), "in a test".to_owned()).expect("a valid token")
    }

    fn secret() -> ClusterSecret {
        ClusterSecret::load(None, Some(SECRET.into())).expect("a valid secret")
    }

    fn roles() -> ClientRoles {
        ClientRoles::new(
            [
                (Role::Orchestrator, token(ORCHESTRATOR)),
                (Role::Executor, token(EXECUTOR)),
                (Role::Admin, token(ADMIN)),
            ],
            &secret(),
        )
        .expect("three distinct tokens")
    }

    fn presenting(value: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = value {
            token(value).attach(&mut request);
        }
        request
    }

    #[test]
    fn each_role_makes_only_its_calls() {
        let roles = roles();
        let code = |value, call| {
            roles
                .authorize(&presenting(Some(value)), call)
                .map_err(|status| status.code())
        };
        assert_eq!(code(ORCHESTRATOR, Call::Decide), Ok(Role::Orchestrator));
        assert_eq!(
            code(ORCHESTRATOR, Call::ClusterStatus),
            Ok(Role::Orchestrator)
        );
        for lease_call in [
            Call::Campaign,
            Call::RenewLease,
            Call::Resign,
            Call::Dequeue,
            Call::RecordExecution,
            Call::Acknowledge,
        ] {
            assert_eq!(
                code(ORCHESTRATOR, lease_call),
                Err(tonic::Code::PermissionDenied)
            );
            assert_eq!(code(EXECUTOR, lease_call), Ok(Role::Executor));
            assert_eq!(code(ADMIN, lease_call), Ok(Role::Admin));
        }
        for write in [Call::Enqueue, Call::EnqueueBatch, Call::Decide] {
            assert_eq!(code(EXECUTOR, write), Err(tonic::Code::PermissionDenied));
        }
        assert_eq!(code(EXECUTOR, Call::GetOrder), Ok(Role::Executor));
    }

    #[test]
    fn an_unknown_or_missing_token_is_unauthenticated() {
        let roles = roles();
        for request in [
            presenting(None),
            presenting(Some("an-unknown-token-of-some-length")),
            presenting(Some(SECRET)),
        ] {
            let refused = roles
                .authorize(&request, Call::ClusterStatus)
                .expect_err("refused");
            assert_eq!(refused.code(), tonic::Code::Unauthenticated);
            assert_eq!(refused.message(), UNAUTHENTICATED_MESSAGE);
        }
    }

    #[test]
    fn lease_tokens_are_shown_only_to_the_roles_that_work_the_lease() {
        assert!(!Role::Orchestrator.sees_lease_tokens());
        assert!(Role::Executor.sees_lease_tokens());
        assert!(Role::Admin.sees_lease_tokens());
    }

    #[test]
    fn roles_need_tokens_of_their_own_apart_from_the_cluster_secret() {
        let shared = ClientRoles::new(
            [
                (Role::Orchestrator, token(ORCHESTRATOR)),
                (Role::Executor, token(ORCHESTRATOR)),
                (Role::Admin, token(ADMIN)),
            ],
            &secret(),
        )
        .expect_err("one token for two roles");
        assert!(matches!(
            shared,
            TokenError::Shared {
                first: Role::Orchestrator,
                second: Role::Executor
            }
        ));
        let is_secret = ClientRoles::new(
            [
                (Role::Orchestrator, token(ORCHESTRATOR)),
                (Role::Executor, token(EXECUTOR)),
                (Role::Admin, token(SECRET)),
            ],
            &secret(),
        )
        .expect_err("the cluster secret as a token");
        assert!(matches!(
            is_secret,
            TokenError::IsClusterSecret { role: Role::Admin }
        ));
        assert!(!is_secret.to_string().contains(SECRET), "{is_secret}");
    }

    /// A program takes the cluster secret's flag and a token's beside each other (queuectl
    /// does): their argument ids must differ, which clap checks only when the command is built.
    #[test]
    fn the_token_flag_sits_beside_the_cluster_secret_flag() {
        use clap::{CommandFactory, Parser};

        #[derive(Debug, Parser)]
        struct Both {
            #[command(flatten)]
            secret: crate::auth::ClusterSecretSource,
            #[command(flatten)]
            token: QueueTokenSource,
        }
        Both::command().debug_assert();
        let parsed = Both::parse_from(["both", "--queue-token-file=t", "--cluster-secret-file=s"]);
        assert_eq!(parsed.token.token_file, Some(PathBuf::from("t")));
        assert_eq!(parsed.secret.file, Some(PathBuf::from("s")));
    }

    #[test]
    fn tokens_load_from_a_file_or_the_environment_and_never_print() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("executor");
        std::fs::write(&path, format!("{EXECUTOR}\n")).expect("write the token");
        let loaded = QueueToken::load(Some(&path), Some(ORCHESTRATOR.into())).expect("the file's");
        assert_eq!(loaded.digest, token(EXECUTOR).digest);
        let shown = format!("{loaded:?} {:?}", roles());
        assert!(!shown.contains(&EXECUTOR[..8]), "{shown}");
        let from_env = QueueToken::load(None, Some(ADMIN.into())).expect("the env's");
        assert_eq!(from_env.digest, token(ADMIN).digest);
        let short = QueueToken::load(None, Some("short".into())).expect_err("too short");
        assert!(short.to_string().contains(QUEUE_TOKEN_ENV), "{short}");
        assert!(short.to_string().contains("too short"), "{short}");
        let missing = dir.path().join("no-such-token");
        let unreadable = QueueToken::load(Some(&missing), None).expect_err("no file");
        assert!(
            unreadable.to_string().contains("no-such-token"),
            "{unreadable}"
        );
        assert!(matches!(
            QueueToken::load(None, None),
            Err(TokenError::Missing)
        ));
    }
}
