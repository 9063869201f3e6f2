//! The bookstore's gRPC protocol: the messages and services of `proto/`, compiled at build time.
//!
//! Besides the generated code this crate owns the two conventions every service shares:
//! the order id travels in gRPC metadata under [`ORDER_ID_METADATA_KEY`], and a card number is
//! never shown beyond its last four digits ([`CreditCard`]'s `Debug`, [`mask_card_number`]).
//!
//! [`etcdserverpb`] is not ours: a client for the few rpcs of etcd's v3 API that the benchmark
//! compares our queue with (`proto/etcd_kv.proto` says where it comes from).

use std::fmt;

tonic::include_proto!("bookstore");

/// etcd's KV `Put` and Maintenance `Status`, client side only, wire-compatible with etcd v3.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// The encoded descriptors of every service, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("bookstore_descriptor");

/// The gRPC metadata key that carries the order id from the orchestrator to the backends, so that
/// every log line about an order can name it.
pub const ORDER_ID_METADATA_KEY: &str = "x-order-id";

/// Wraps `message` in a request that carries `order_id` in its metadata.
pub fn request_for_order<T>(order_id: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = order_id.parse() {
        request.metadata_mut().insert(ORDER_ID_METADATA_KEY, value);
    }
    request
}

/// The order id a request carries in its metadata, or `"-"` when it carries none.
pub fn order_id_of<T>(request: &tonic::Request<T>) -> &str {
    request
        .metadata()
        .get(ORDER_ID_METADATA_KEY)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-")
}

/// A card number with every digit but the last four replaced, for logs and answers:
/// `"4111 1111 1111 1111"` becomes `"************1111"`. Non-digits are dropped, and the hidden
/// digits are shown as at most [`MAX_MASKED_DIGITS`] stars, so that a number of any length makes
/// a short log line.
pub fn mask_card_number(number: &str) -> String {
    let digits: Vec<char> = number.chars().filter(char::is_ascii_digit).collect();
    let hidden = digits.len().saturating_sub(4);
    let mut masked = "*".repeat(hidden.min(MAX_MASKED_DIGITS));
    masked.extend(&digits[hidden..]);
    masked
}

/// The most stars [`mask_card_number`] shows: more digits than any card number has.
pub const MAX_MASKED_DIGITS: usize = 28;

/// The most distinct codes [`code_counts`] names.
pub const MAX_CODES_NAMED: usize = 16;

/// The distinct rule codes among `codes`, each with its count, in code order, for a log line
/// that does not grow with the order (thousands of empty lines give two codes, not thousands):
/// `item_name_missing*50,item_quantity_out_of_range*50`. At most [`MAX_CODES_NAMED`] codes of at
/// most 64 bytes each are named, then how many more there were.
pub fn code_counts<'a>(codes: impl IntoIterator<Item = &'a str>) -> String {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for code in codes {
        *counts.entry(code).or_default() += 1;
    }
    let mut named: Vec<String> = counts
        .iter()
        .take(MAX_CODES_NAMED)
        .map(|(code, count)| {
            let mut end = code.len().min(64);
            while !code.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}*{count}", &code[..end])
        })
        .collect();
    if counts.len() > MAX_CODES_NAMED {
        named.push(format!("{} more codes", counts.len() - MAX_CODES_NAMED));
    }
    named.join(",")
}

impl Reason {
    /// A reason for the rule `code` about the REST field `field` (empty for the whole order).
    pub fn new(code: &str, field: &str, message: String) -> Self {
        Self {
            code: code.to_owned(),
            field: field.to_owned(),
            message,
        }
    }
}

impl fmt::Debug for CreditCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreditCard")
            .field("number", &mask_card_number(&self.number))
            .field("expiration_date", &self.expiration_date)
            .field("cvv", &"***")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_counts_are_short_however_many_codes_come() {
        let codes = ["b", "a", "b"].repeat(1000);
        assert_eq!(code_counts(codes.iter().copied()), "a*1000,b*2000");
        let many: Vec<String> = (0..100)
            .map(|n| format!("{n:03}{}", "x".repeat(100)))
            .collect();
        let counted = code_counts(many.iter().map(String::as_str));
        assert!(counted.len() < 17 * 70, "{counted}");
        assert!(counted.ends_with("84 more codes"), "{counted}");
        assert_eq!(code_counts([]), "");
    }

    #[test]
    fn a_long_number_is_masked_short() {
        assert_eq!(
            mask_card_number(&"4".repeat(10_000)),
            format!("{}4444", "*".repeat(MAX_MASKED_DIGITS))
        );
    }

    #[test]
    fn masking_keeps_only_the_last_four_digits() {
        assert_eq!(mask_card_number("4111 1111 1111 1111"), "************1111");
        assert_eq!(mask_card_number("123"), "123");
        assert_eq!(mask_card_number(""), "");
    }

    #[test]
    fn debug_of_an_order_never_shows_the_card_number_or_cvv() {
        let order = Order {
            credit_card: Some(CreditCard {
                number: "4111-1111-1111-1234".into(),
                expiration_date: "12/30".into(),
                cvv: "987".into(),
            }),
            ..Order::default()
        };
        let shown = format!("{order:?}");
        assert!(shown.contains("************1234"), "{shown}");
        assert!(!shown.contains("4111"), "{shown}");
        assert!(!shown.contains("987"), "{shown}");
    }

    #[test]
    fn order_id_travels_in_metadata() {
        let request = request_for_order("0b7e", ());
        assert_eq!(order_id_of(&request), "0b7e");
        assert_eq!(order_id_of(&tonic::Request::new(())), "-");
    }
}
