//! Checkout idempotency, as payment APIs do it: every checkout has a key, its order id follows
//! from the key, and the first decision taken for that order id is kept in the replicated queue
//! with a digest of the request it was taken on ([`RequestDigest`]). A retry with the key and the
//! same body is answered from that record; the same key with another body is refused.
//!
//! - The key: the client's `Idempotency-Key` header, or, for a client that sent none, a fresh key
//!   the orchestrator makes and gives back in the answer's `Idempotency-Key` header, so that even
//!   such a client can retry an ambiguous answer without placing a second order
//!   ([`CheckoutKey`]). The order id is a version-5 UUID of the key ([`order_id_from_key`]), so
//!   a client knows its order id before it posts, and can look the order up after any answer.
//! - The digest ([`RequestDigester`]): what the queue's record holds of the request. Anyone who
//!   reads the replicated state (a queue node's disk, a snapshot, `queuectl`) must not learn the
//!   card from it: a card number is short enough to brute-force from a plain hash of the body. So
//!   the body is digested (SHA-256) with the card's number cut to its last four digits and the
//!   CVV left out, and the number and CVV enter only an HMAC-SHA256 under a secret that only the
//!   orchestrators hold (`--idempotency-secret-file`, env `IDEMPOTENCY_SECRET_FILE`, or env
//!   `IDEMPOTENCY_SECRET`). Orchestrators that answer each other's retries must share it.
//!   Without a secret there is no card digest: a retry that changes only the card's hidden
//!   digits (same last four) is then taken for the same request and answered with the first
//!   decision, which places nothing new; the orchestrator warns at start.
//!
//! The canonical form digested is the body as parsed JSON, re-encoded with object keys sorted
//! (serde_json's map), so spacing and key order do not matter; any other difference does.

use std::fmt;
use std::path::{Path, PathBuf};

use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use queue_raft::RequestDigest;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ApiError;

/// The header that makes a retried checkout land on the same order id.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The longest idempotency key accepted.
pub const IDEMPOTENCY_KEY_MAX_LEN: usize = 200;

/// Order ids derived from idempotency keys are version-5 UUIDs in this namespace.
const ORDER_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5d1c_8f0e_2b4a_4c3e_9a7f_6e21_b0d4_3c88);

/// Where the digests' domain begins: a digest of another kind of message can never equal one.
const BODY_DOMAIN: &[u8] = b"bookstore checkout request v1\0";
const CARD_DOMAIN: &[u8] = b"bookstore checkout card v1\0";

/// The environment variable holding the secret itself.
pub const SECRET_ENV: &str = "IDEMPOTENCY_SECRET";
/// The shortest secret accepted, in bytes.
const MIN_SECRET_BYTES: usize = 16;

/// The order id an `Idempotency-Key` always gives: clients (the chaos run's) know an order's id
/// before they post it, so they can follow an order whose answer was lost.
pub fn order_id_from_key(key: &str) -> String {
    Uuid::new_v5(&ORDER_ID_NAMESPACE, key.as_bytes()).to_string()
}

/// The key of one checkout: the one the client sent, or one made for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutKey {
    key: String,
    /// Whether the client sent it (else the orchestrator made it, and a record for it cannot
    /// exist yet).
    sent: bool,
}

impl CheckoutKey {
    /// The client's `Idempotency-Key`, checked, or a fresh key when it sent none.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let Some(key) = headers.get(IDEMPOTENCY_KEY) else {
            return Ok(Self {
                key: Uuid::new_v4().to_string(),
                sent: false,
            });
        };
        let key = key
            .to_str()
            .ok()
            .filter(|key| !key.is_empty() && key.len() <= IDEMPOTENCY_KEY_MAX_LEN)
            .ok_or_else(|| {
                ApiError::InvalidHeader(format!(
                    "{IDEMPOTENCY_KEY} must be 1 to {IDEMPOTENCY_KEY_MAX_LEN} visible ASCII \
                     characters"
                ))
            })?;
        Ok(Self {
            key: key.to_owned(),
            sent: true,
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether the client sent the key.
    pub fn sent(&self) -> bool {
        self.sent
    }

    /// The order id the key gives.
    pub fn order_id(&self) -> String {
        order_id_from_key(&self.key)
    }
}

/// Why the idempotency secret could not be loaded; names where it came from, never its value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the idempotency secret file {path}: {error}")]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "the idempotency secret {origin} is too short: {length} bytes, at least \
         {MIN_SECRET_BYTES} needed; make one with `head -c 32 /dev/urandom | base64`"
    )]
    TooShort { origin: String, length: usize },
}

/// The orchestrators' shared secret for card digests. `Debug` shows no part of it.
#[derive(Clone)]
pub struct IdempotencySecret(Vec<u8>);

impl fmt::Debug for IdempotencySecret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("IdempotencySecret(<redacted>)")
    }
}

impl IdempotencySecret {
    /// The secret in `file` if given, else in env [`SECRET_ENV`] (`env_value`), else none.
    pub fn load(
        file: Option<&Path>,
        env_value: Option<std::ffi::OsString>,
    ) -> Result<Option<Self>, SecretError> {
        let (raw, origin) = match (file, env_value) {
            (Some(path), _) => (
                std::fs::read(path).map_err(|error| SecretError::Unreadable {
                    path: path.to_owned(),
                    error,
                })?,
                format!("in file {}", path.display()),
            ),
            (None, Some(value)) => (
                value.as_encoded_bytes().to_vec(),
                format!("in env {SECRET_ENV}"),
            ),
            (None, None) => return Ok(None),
        };
        let secret = raw.trim_ascii_end();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort {
                origin,
                length: secret.len(),
            });
        }
        Ok(Some(Self(secret.to_vec())))
    }
}

/// Digests checkout requests for the queue's record (see the module's doc).
#[derive(Debug, Clone)]
pub struct RequestDigester {
    secret: Option<IdempotencySecret>,
}

impl RequestDigester {
    pub fn new(secret: Option<IdempotencySecret>) -> Self {
        Self { secret }
    }

    /// Whether card numbers enter the digest (under the secret).
    pub fn digests_cards(&self) -> bool {
        self.secret.is_some()
    }

    /// The digest of the checkout body `body`, which has parsed as a checkout request already.
    pub fn digest(&self, body: &[u8]) -> Result<RequestDigest, ApiError> {
        let mut request: serde_json::Value = serde_json::from_slice(body)
            .map_err(|error| ApiError::MalformedJson(error.to_string()))?;
        let (number, cvv) = take_card_secrets(&mut request);
        let canonical = serde_json::to_vec(&request)
            .map_err(|error| ApiError::MalformedJson(error.to_string()))?;
        let body = Sha256::new()
            .chain_update(BODY_DOMAIN)
            .chain_update(&canonical)
            .finalize()
            .into();
        let card = self.secret.as_ref().map(|secret| {
            // HMAC takes a key of any length: this cannot fail.
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&secret.0)
                .expect("HMAC accepts keys of any length");
            mac.update(CARD_DOMAIN);
            mac.update(number.as_bytes());
            mac.update(b"\0");
            mac.update(cvv.as_bytes());
            mac.finalize().into_bytes().into()
        });
        Ok(RequestDigest { body, card })
    }
}

/// Takes the card's number (its digits) and CVV out of `request`, leaving the number's last four
/// digits in its place: what may be shown of a card.
fn take_card_secrets(request: &mut serde_json::Value) -> (String, String) {
    let Some(card) = request
        .get_mut("creditCard")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return (String::new(), String::new());
    };
    let digits: String = card
        .get("number")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let last_four = digits[digits.len().saturating_sub(4)..].to_owned();
    card.insert("number".to_owned(), serde_json::Value::String(last_four));
    let cvv = card
        .remove("cvv")
        .and_then(|cvv| cvv.as_str().map(str::to_owned))
        .unwrap_or_default();
    (digits, cvv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkout::{SampleOrder, sample_request};

    const CARD: &str = "4532 0151 1283 0366";

    fn body(card_number: &str, cvv: &str) -> Vec<u8> {
        serde_json::to_vec(&sample_request(&SampleOrder {
            name: "Ada Lovelace",
            contact: "ada@example.com",
            card_number,
            cvv,
            items: &[("The Hobbit", 1)],
        }))
        .expect("JSON")
    }

    fn with_secret() -> RequestDigester {
        RequestDigester::new(Some(IdempotencySecret(b"0123456789abcdef-secret".to_vec())))
    }

    #[test]
    fn the_same_request_gives_the_same_digest_whatever_its_layout() {
        let compact = body(CARD, "123");
        let value: serde_json::Value = serde_json::from_slice(&compact).expect("JSON");
        let pretty = serde_json::to_vec_pretty(&value).expect("JSON");
        let digester = with_secret();
        assert_eq!(
            digester.digest(&compact).expect("digest"),
            digester.digest(&pretty).expect("digest")
        );
        // The page sends the number as digits; any grouping is the same card.
        assert_eq!(
            digester
                .digest(&body("4532015112830366", "123"))
                .expect("digest")
                .card,
            digester.digest(&compact).expect("digest").card
        );
    }

    #[test]
    fn another_body_card_or_cvv_gives_another_digest() {
        let digester = with_secret();
        let first = digester.digest(&body(CARD, "123")).expect("digest");
        for (what, other) in [
            ("card", body("4556 7375 8689 0366", "123")),
            ("cvv", body(CARD, "124")),
        ] {
            let other = digester.digest(&other).expect("digest");
            assert_eq!(
                other.body, first.body,
                "{what}: the body part hides the card"
            );
            assert!(!first.matches(&other), "{what} changed unnoticed");
        }
        let mut value: serde_json::Value =
            serde_json::from_slice(&body(CARD, "123")).expect("JSON");
        value["items"][0]["quantity"] = serde_json::json!(2);
        let other = digester
            .digest(&serde_json::to_vec(&value).expect("JSON"))
            .expect("digest");
        assert!(!first.matches(&other));
    }

    /// The stored digest does not reveal the card: neither part changes with the card unless the
    /// secret is known (the body part does not change with the hidden digits at all), and the
    /// digest taken without a secret has no card part.
    #[test]
    fn the_card_enters_the_digest_only_under_the_secret() {
        let without = RequestDigester::new(None);
        let plain = without.digest(&body(CARD, "123")).expect("digest");
        assert_eq!(plain.card, None);
        let other_digits = without
            .digest(&body("4556 7375 8689 0366", "999"))
            .expect("digest");
        assert_eq!(plain.body, other_digits.body);
        let other_secret =
            RequestDigester::new(Some(IdempotencySecret(b"another-secret-of-16".to_vec())));
        let keyed = with_secret().digest(&body(CARD, "123")).expect("digest");
        assert_ne!(
            keyed.card,
            other_secret
                .digest(&body(CARD, "123"))
                .expect("digest")
                .card
        );
        // With and without a secret, the bodies agree: orchestrators configured differently
        // still recognise each other's retries by the body.
        assert!(keyed.matches(&plain));
    }

    #[test]
    fn a_checkout_key_is_the_clients_or_a_fresh_one() {
        let mut headers = HeaderMap::new();
        let made = CheckoutKey::from_headers(&headers).expect("no key");
        assert!(!made.sent());
        assert_ne!(
            made.key(),
            CheckoutKey::from_headers(&headers).expect("no key").key()
        );
        headers.insert(IDEMPOTENCY_KEY, "attempt-1".parse().expect("header"));
        let sent = CheckoutKey::from_headers(&headers).expect("valid key");
        assert!(sent.sent());
        assert_eq!(sent.order_id(), order_id_from_key("attempt-1"));
        Uuid::parse_str(&sent.order_id()).expect("a UUID");
        assert_eq!(made.order_id(), order_id_from_key(made.key()));
    }

    #[test]
    fn a_secret_is_read_from_a_file_or_the_environment_and_must_be_long() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("secret");
        std::fs::write(&path, "0123456789abcdef\n").expect("write");
        assert!(
            IdempotencySecret::load(Some(&path), None)
                .expect("valid")
                .is_some()
        );
        assert!(
            IdempotencySecret::load(None, Some("0123456789abcdefXY".into()))
                .expect("valid")
                .is_some()
        );
        assert!(IdempotencySecret::load(None, None).expect("none").is_none());
        assert!(matches!(
            IdempotencySecret::load(None, Some("short".into())),
            Err(SecretError::TooShort { length: 5, .. })
        ));
        let shown = format!("{:?}", IdempotencySecret(b"0123456789abcdef".to_vec()));
        assert!(!shown.contains("0123"), "{shown}");
    }
}
