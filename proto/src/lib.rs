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
/// `"4111 1111 1111 1111"` becomes `"************1111"`. Non-digits are dropped.
pub fn mask_card_number(number: &str) -> String {
    let digits: Vec<char> = number.chars().filter(char::is_ascii_digit).collect();
    let shown = digits.len().saturating_sub(4);
    digits
        .iter()
        .enumerate()
        .map(|(position, digit)| if position < shown { '*' } else { *digit })
        .collect()
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
