//! One health probe for every service, for container healthchecks where the image holds no shell
//! and no curl (images built `FROM scratch`): `queuectl probe TARGET` runs it.
//!
//! - `http://HOST:PORT/PATH`: a `GET`, healthy on a `2xx` status.
//! - `grpc://HOST:PORT` (or a bare `HOST:PORT`): the standard `grpc.health.v1.Health/Check` of the
//!   whole server (service `""`), healthy when it answers `SERVING`. Every gRPC server in the
//!   workspace serves it ([`crate::grpc::serve`]).
//!
//! Every probe is bounded by a timeout, connection and answer together.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// What a probe checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `GET path` on `authority` (`host:port`), healthy on `2xx`.
    Http { authority: String, path: String },
    /// The gRPC health service on `authority` (`host:port`), healthy on `SERVING`.
    Grpc { authority: String },
}

/// Why a probe did not find its target healthy.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot probe '{target}': {reason}")]
    BadTarget {
        target: String,
        reason: &'static str,
    },
    #[error("no healthy answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("HTTP exchange failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("unhealthy HTTP answer: {0}")]
    HttpStatus(String),
    #[error("gRPC health check failed: {0}")]
    Grpc(String),
    #[error("gRPC health status is {0}")]
    NotServing(String),
}

impl Target {
    /// Reads `http://host:port[/path]`, `grpc://host:port` or `host:port` (gRPC).
    pub fn parse(target: &str) -> Result<Self, ProbeError> {
        let bad = |reason| ProbeError::BadTarget {
            target: target.to_owned(),
            reason,
        };
        let parsed = if let Some(rest) = target.strip_prefix("http://") {
            let (authority, path) = match rest.find('/') {
                Some(slash) => (&rest[..slash], &rest[slash..]),
                None => (rest, "/"),
            };
            Target::Http {
                authority: authority.to_owned(),
                path: path.to_owned(),
            }
        } else if target.contains("://") && !target.starts_with("grpc://") {
            return Err(bad("expected http://HOST:PORT/PATH or grpc://HOST:PORT"));
        } else {
            let authority = target.strip_prefix("grpc://").unwrap_or(target);
            if authority.contains('/') {
                return Err(bad("a gRPC target has no path"));
            }
            Target::Grpc {
                authority: authority.to_owned(),
            }
        };
        let authority = match &parsed {
            Target::Http { authority, .. } | Target::Grpc { authority } => authority,
        };
        match authority.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(parsed),
            _ => Err(bad("expected HOST:PORT")),
        }
    }
}

/// Probes `target` once, within `timeout`; on success, says what answered.
pub async fn probe(target: &Target, timeout: Duration) -> Result<String, ProbeError> {
    let attempt = async {
        match target {
            Target::Http { authority, path } => probe_http(authority, path).await,
            Target::Grpc { authority } => probe_grpc(authority).await,
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| ProbeError::Timeout(timeout))?
}

async fn probe_http(authority: &str, path: &str) -> Result<String, ProbeError> {
    let mut stream = TcpStream::connect(authority)
        .await
        .map_err(|error| ProbeError::Connect(format!("{authority}: {error}")))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut status_line = String::new();
    BufReader::new(stream).read_line(&mut status_line).await?;
    let status_line = status_line.trim_end().to_owned();
    // "HTTP/1.1 200 OK"
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok());
    match code {
        Some(200..=299) if status_line.starts_with("HTTP/") => Ok(status_line),
        _ => Err(ProbeError::HttpStatus(if status_line.is_empty() {
            "no status line".to_owned()
        } else {
            status_line
        })),
    }
}

async fn probe_grpc(authority: &str) -> Result<String, ProbeError> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|error| ProbeError::Connect(format!("{authority}: {error}")))?
        .connect()
        .await
        .map_err(|error| ProbeError::Connect(format!("{authority}: {error}")))?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|status| ProbeError::Grpc(status.to_string()))?
        .into_inner();
    match ServingStatus::try_from(answer.status) {
        Ok(ServingStatus::Serving) => Ok("SERVING".to_owned()),
        Ok(other) => Err(ProbeError::NotServing(other.as_str_name().to_owned())),
        Err(_) => Err(ProbeError::NotServing(format!(
            "unknown ({})",
            answer.status
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn parses_targets() {
        assert_eq!(
            Target::parse("http://orchestrator:8081/health").expect("a valid target"),
            Target::Http {
                authority: "orchestrator:8081".into(),
                path: "/health".into()
            }
        );
        assert_eq!(
            Target::parse("http://127.0.0.1:8081").expect("a valid target"),
            Target::Http {
                authority: "127.0.0.1:8081".into(),
                path: "/".into()
            }
        );
        for grpc in ["grpc://queue-1:50061", "queue-1:50061"] {
            assert_eq!(
                Target::parse(grpc).expect("a valid target"),
                Target::Grpc {
                    authority: "queue-1:50061".into()
                }
            );
        }
        for bad in [
            "https://a:1/",
            "grpc://a:1/x",
            "a",
            "http://a/health",
            ":1",
            "a:99999",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    /// Serves one HTTP connection with `answer`, returning the server's address.
    async fn http_server(answer: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let addr = listener.local_addr().expect("bound address").to_string();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("a connection");
            let mut buffer = [0u8; 1024];
            let _ = socket.read(&mut buffer).await;
            let _ = socket.write_all(answer.as_bytes()).await;
        });
        addr
    }

    #[tokio::test]
    async fn http_probe_wants_a_2xx() {
        let ok = http_server("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        let target = Target::parse(&format!("http://{ok}/health")).expect("a valid target");
        assert_eq!(
            probe(&target, TIMEOUT).await.expect("healthy"),
            "HTTP/1.1 200 OK"
        );

        let down = http_server("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let target = Target::parse(&format!("http://{down}/health")).expect("a valid target");
        assert!(matches!(
            probe(&target, TIMEOUT).await,
            Err(ProbeError::HttpStatus(line)) if line.contains("503")
        ));
    }

    #[tokio::test]
    async fn probe_fails_when_nothing_listens_or_nothing_answers() {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let addr = listener.local_addr().expect("bound address");
        // Accepts (in the backlog) but never answers: the timeout ends the probe.
        let silent = Target::parse(&format!("http://{addr}/health")).expect("a valid target");
        assert!(matches!(
            probe(&silent, Duration::from_millis(200)).await,
            Err(ProbeError::Timeout(_))
        ));
        drop(listener);
        let closed = Target::parse(&format!("http://{addr}/health")).expect("a valid target");
        assert!(probe(&closed, TIMEOUT).await.is_err());
        let closed = Target::parse(&format!("grpc://{addr}")).expect("a valid target");
        assert!(probe(&closed, TIMEOUT).await.is_err());
    }

    #[tokio::test]
    async fn grpc_probe_asks_the_health_service() {
        let listener = crate::grpc::bind("127.0.0.1:0".parse().expect("an address"))
            .await
            .expect("bind a free port");
        let addr = listener.local_addr().expect("bound address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::grpc::serve(
            listener,
            "bookstore.Probe",
            tonic::service::Routes::default(),
            async {
                let _ = stopped.await;
            },
        ));
        let target = Target::parse(&format!("grpc://{addr}")).expect("a valid target");
        assert_eq!(probe(&target, TIMEOUT).await.expect("healthy"), "SERVING");
        stop.send(()).expect("the server still runs");
        server
            .await
            .expect("server task")
            .expect("server stops cleanly");
        assert!(probe(&target, TIMEOUT).await.is_err());
    }
}
