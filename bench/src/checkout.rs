//! The whole checkout path under load: `POST /checkout` through the orchestrator, which calls the
//! three backends at once and, for an approved order, answers only once the queue cluster has
//! committed it. What a shopper waits for.
//!
//! Every request is a valid order of its own: a card number never used before in the run (a
//! Luhn-valid number from the demo card's Estonian range, billed in Estonia) and its own user,
//! so that fraud detection's card-velocity rule, which rejects a card used more than a few times
//! in ten minutes, has no reason to fire. An answer counts as acknowledged only when it is a 2xx
//! with `"status": "Order Approved"`: a rejected order skips the queue, so it would measure a
//! shorter path than the one asked for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backends::verification::passes_luhn;
use orchestrator::checkout::{SampleOrder, sample_request};
use serde_json::Value;

use crate::{BenchError, Operation};

/// The card range the orders use: the bookstore's demo card prefix, whose issuer fraud
/// detection places in Estonia, the billing country of every order.
const CARD_PREFIX: &str = "453201";
/// Digits after the prefix and before the check digit: 6 + 12 + 1 = 19, the most a card has.
const CARD_SERIAL_DIGITS: u32 = 12;
/// How long one checkout may take before the client gives up on it (counted as an error).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an error answer's body an error message repeats.
const ERROR_BODY_CHARS: usize = 300;

/// A checkout answered with anything but an approval.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("request failed: {0}")]
    Request(#[from] reqwest::Error),
    #[error("HTTP {status}: {body}")]
    NotApproved {
        status: reqwest::StatusCode,
        body: String,
    },
}

/// Posts new orders to one orchestrator over a pool of HTTP/1.1 connections.
pub struct Checkout {
    /// Keeps up to one idle connection per closed loop alive between checkouts; they close when
    /// the client is dropped at the end of the run.
    http: reqwest::Client,
    /// The orchestrator's `/checkout` URL.
    url: String,
    /// Where this run's card serials start: random, so that runs against the same
    /// fraud-detection process do not reuse each other's cards.
    first_serial: u64,
    /// Orders made so far; the next order's serial offset.
    made: AtomicU64,
}

impl Checkout {
    /// Checkouts to the orchestrator at `base_url` over up to `connections` kept-alive
    /// connections (one per closed loop: each keeps one request in flight).
    pub fn new(base_url: &str, connections: usize) -> Result<Self, BenchError> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .tcp_nodelay(true)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(BenchError::HttpClient)?;
        let serials = 10u64.pow(CARD_SERIAL_DIGITS);
        Ok(Self {
            http,
            url: format!("{}/checkout", base_url.trim_end_matches('/')),
            // Leaves room for a billion orders after the start before serials wrap around.
            first_serial: rand::random_range(0..serials - 1_000_000_000),
            made: AtomicU64::new(0),
        })
    }
}

impl Operation for Checkout {
    type Error = CheckoutError;

    fn payload_bytes(&self) -> usize {
        order_body(self.first_serial).to_string().len()
    }

    async fn call(&self, _client: usize, _sequence: u64) -> Result<(), CheckoutError> {
        let serial = self.first_serial + self.made.fetch_add(1, Ordering::Relaxed);
        let response = self
            .http
            .post(&self.url)
            .json(&order_body(serial))
            .send()
            .await?;
        let status = response.status();
        // Read to the end either way, so that the connection goes back to the pool.
        let body = response.text().await?;
        if status.is_success() && is_approved(&body) {
            Ok(())
        } else {
            Err(CheckoutError::NotApproved {
                status,
                body: body.chars().take(ERROR_BODY_CHARS).collect(),
            })
        }
    }
}

fn is_approved(body: &str) -> bool {
    serde_json::from_str::<Value>(body)
        .is_ok_and(|answer| answer["status"].as_str() == Some("Order Approved"))
}

/// The checkout request of order `serial`: valid, with a card and a user of its own.
fn order_body(serial: u64) -> Value {
    sample_request(&SampleOrder {
        name: &format!("Bench Shopper {serial}"),
        contact: &format!("shopper-{serial}@example.com"),
        card_number: &card_number(serial),
        cvv: "123",
        items: &[("The Hobbit", 1), ("Emma", 2)],
    })
}

/// A 19-digit card number: the prefix, `serial` (modulo 10^12) in 12 digits, the Luhn check.
pub fn card_number(serial: u64) -> String {
    let serials = 10u64.pow(CARD_SERIAL_DIGITS);
    let payload = format!(
        "{CARD_PREFIX}{:0width$}",
        serial % serials,
        width = CARD_SERIAL_DIGITS as usize
    );
    let check = luhn_check_digit(&payload);
    format!("{payload}{check}")
}

/// The digit that, appended to `digits` (ASCII digits only), makes the number pass the Luhn
/// check, as transaction verification applies it.
fn luhn_check_digit(digits: &str) -> u32 {
    (0..10)
        .find(|digit| passes_luhn(&format!("{digits}{digit}")))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digits_agree_with_published_card_numbers() {
        assert_eq!(luhn_check_digit("453201511283036"), 6);
        assert_eq!(luhn_check_digit("424242424242424"), 2);
        assert_eq!(luhn_check_digit("7992739871"), 3);
    }

    #[test]
    fn cards_are_valid_distinct_and_from_the_estonian_range() {
        let cards: std::collections::BTreeSet<String> = (0..2000).map(card_number).collect();
        assert_eq!(cards.len(), 2000);
        for card in &cards {
            assert_eq!(card.len(), 19, "{card}");
            assert!(card.starts_with(CARD_PREFIX), "{card}");
            assert!(passes_luhn(card), "{card}");
        }
        assert!(passes_luhn(&card_number(10u64.pow(12) - 1)));
    }

    #[test]
    fn each_order_has_its_own_card_and_user_and_is_billed_in_estonia() {
        let (first, second) = (order_body(7), order_body(8));
        assert_ne!(
            first["creditCard"]["number"],
            second["creditCard"]["number"]
        );
        assert_ne!(first["user"]["name"], second["user"]["name"]);
        assert_eq!(first["billingAddress"]["country"], "Estonia");
        assert_eq!(first["termsAndConditionsAccepted"], true);
    }

    #[test]
    fn only_an_approval_counts() {
        assert!(is_approved(r#"{"orderId":"x","status":"Order Approved"}"#));
        assert!(!is_approved(r#"{"orderId":"x","status":"Order Rejected"}"#));
        assert!(!is_approved("not json"));
    }
}
