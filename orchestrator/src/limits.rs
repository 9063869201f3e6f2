//! The bounds of a checkout: how long each text may be and how many entries each list may hold,
//! checked once the body has parsed (the body itself is at most `routes::BODY_LIMIT` bytes, and
//! JSON nested deeper than serde_json's 128 levels does not parse). `openapi.yaml` states the
//! same numbers (`maxLength`, `maxItems`, `maximum`); a body over one is `422 invalid_field`,
//! naming the field and the bound, never the value sent.
//!
//! Texts are counted in characters, as JSON Schema counts `maxLength`. What the queue keeps of an
//! order (the customer's name, each line's title and quantity) has bounds of its own in
//! queue-raft, in bytes; the ones here are within them, so an order accepted here is never
//! refused by the queue.

use queue_raft::state_machine::{MAX_LINE_QUANTITY, MAX_ORDER_LINES, MAX_ORDER_TEXT_BYTES};

use crate::checkout::CheckoutRequest;
use crate::error::ApiError;

/// The most lines an order may have.
pub const MAX_ITEMS: usize = MAX_ORDER_LINES;
/// The most copies one line may ask for.
pub const MAX_QUANTITY: u32 = MAX_LINE_QUANTITY;
/// The most notification preferences.
pub const MAX_NOTIFICATION_PREFERENCES: usize = 10;

/// The longest customer name and book title, in characters; the queue keeps both.
const KEPT_NAME_CHARS: usize = 128;
// A character is at most four bytes of UTF-8.
const _: () = assert!(4 * KEPT_NAME_CHARS <= MAX_ORDER_TEXT_BYTES);

/// The longest text of each field, in characters, by its path in the body (`[]` stands for
/// every element of a list).
pub const TEXT_LIMITS: &[(&str, usize)] = &[
    ("user.name", KEPT_NAME_CHARS),
    ("user.contact", 254),
    ("creditCard.number", 32),
    ("creditCard.expirationDate", 16),
    ("creditCard.cvv", 8),
    ("userComment", 1000),
    ("items[].name", KEPT_NAME_CHARS),
    ("discountCode", 64),
    ("shippingMethod", 64),
    ("giftMessage", 500),
    ("billingAddress.street", 200),
    ("billingAddress.city", 100),
    ("billingAddress.state", 100),
    ("billingAddress.zip", 32),
    ("billingAddress.country", 100),
    ("notificationPreferences[]", 32),
    ("device.type", 64),
    ("device.model", 100),
    ("device.os", 100),
    ("browser.name", 64),
    ("browser.version", 64),
    ("appVersion", 64),
    ("screenResolution", 32),
    ("referrer", 2048),
    ("deviceLanguage", 64),
];

/// The bound of the text field `pattern` in [`TEXT_LIMITS`].
fn max_chars(pattern: &str) -> usize {
    TEXT_LIMITS
        .iter()
        .find(|(path, _)| *path == pattern)
        .map(|&(_, max)| max)
        // Only this module names patterns, each one of the table (a test checks them all).
        .unwrap_or(0)
}

/// `Err` naming `path` when `text` is longer than the bound of `pattern`.
fn check_text(path: &str, pattern: &str, text: &str) -> Result<(), ApiError> {
    let max = max_chars(pattern);
    // Counting stops past the bound: a long text costs no more than a short one.
    if text.chars().nth(max).is_some() {
        return Err(ApiError::InvalidField(format!(
            "{path}: at most {max} characters, got {}",
            text.chars().count()
        )));
    }
    Ok(())
}

fn check_count(path: &str, count: usize, max: usize) -> Result<(), ApiError> {
    if count > max {
        return Err(ApiError::InvalidField(format!(
            "{path}: at most {max} entries, got {count}"
        )));
    }
    Ok(())
}

/// Checks every bound of `request`; the first one exceeded is the error.
pub fn check(request: &CheckoutRequest) -> Result<(), ApiError> {
    check_count("items", request.items.len(), MAX_ITEMS)?;
    check_count(
        "notificationPreferences",
        request.notification_preferences.len(),
        MAX_NOTIFICATION_PREFERENCES,
    )?;
    let fields = [
        ("user.name", &request.user.name),
        ("user.contact", &request.user.contact),
        ("creditCard.number", &request.credit_card.number),
        (
            "creditCard.expirationDate",
            &request.credit_card.expiration_date,
        ),
        ("creditCard.cvv", &request.credit_card.cvv),
        ("userComment", &request.user_comment),
        ("discountCode", &request.discount_code),
        ("shippingMethod", &request.shipping_method),
        ("giftMessage", &request.gift_message),
        ("billingAddress.street", &request.billing_address.street),
        ("billingAddress.city", &request.billing_address.city),
        ("billingAddress.state", &request.billing_address.state),
        ("billingAddress.zip", &request.billing_address.zip),
        ("billingAddress.country", &request.billing_address.country),
        ("device.type", &request.device.kind),
        ("device.model", &request.device.model),
        ("device.os", &request.device.os),
        ("browser.name", &request.browser.name),
        ("browser.version", &request.browser.version),
        ("appVersion", &request.app_version),
        ("screenResolution", &request.screen_resolution),
        ("referrer", &request.referrer),
        ("deviceLanguage", &request.device_language),
    ];
    for (path, text) in fields {
        check_text(path, path, text)?;
    }
    for (index, item) in request.items.iter().enumerate() {
        check_text(&format!("items[{index}].name"), "items[].name", &item.name)?;
        if item.quantity > MAX_QUANTITY {
            return Err(ApiError::InvalidField(format!(
                "items[{index}].quantity: at most {MAX_QUANTITY}, got {}",
                item.quantity
            )));
        }
    }
    for (index, preference) in request.notification_preferences.iter().enumerate() {
        check_text(
            &format!("notificationPreferences[{index}]"),
            "notificationPreferences[]",
            preference,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkout::{Item, SampleOrder, sample_request};

    fn sample() -> CheckoutRequest {
        let body = sample_request(&SampleOrder {
            name: "Ada",
            contact: "ada@example.com",
            card_number: "4532015112830366",
            cvv: "123",
            items: &[("Emma", 1)],
        });
        serde_json::from_value(body).expect("the sample parses")
    }

    #[test]
    fn every_pattern_checked_is_in_the_table_with_a_bound() {
        for (pattern, max) in TEXT_LIMITS {
            assert_eq!(max_chars(pattern), *max);
            assert!(*max > 0, "{pattern}");
        }
    }

    #[test]
    fn texts_are_counted_in_characters_and_refused_naming_the_path_not_the_value() {
        let mut request = sample();
        request.user.name = "é".repeat(KEPT_NAME_CHARS);
        check(&request).expect("at the bound");
        request.user.name.push('é');
        let Err(ApiError::InvalidField(message)) = check(&request) else {
            panic!("over the bound is refused")
        };
        assert_eq!(message, "user.name: at most 128 characters, got 129");

        let mut request = sample();
        request.credit_card.number = "4532015112830366".repeat(3);
        let Err(ApiError::InvalidField(message)) = check(&request) else {
            panic!("over the bound is refused")
        };
        assert!(message.starts_with("creditCard.number:"), "{message}");
        assert!(!message.contains("4532"), "{message}");
    }

    #[test]
    fn lists_and_quantities_are_bounded() {
        let line = |quantity| Item {
            name: "Emma".into(),
            quantity,
        };
        let mut request = sample();
        request.items = vec![line(MAX_QUANTITY); MAX_ITEMS];
        check(&request).expect("at the bounds");
        request.items.push(line(1));
        assert!(
            matches!(check(&request), Err(ApiError::InvalidField(m)) if m.starts_with("items:"))
        );
        request.items = vec![line(1), line(MAX_QUANTITY + 1)];
        assert!(
            matches!(check(&request), Err(ApiError::InvalidField(m)) if m.starts_with("items[1].quantity:"))
        );
        request.items = vec![line(1)];
        request.notification_preferences = vec!["email".into(); MAX_NOTIFICATION_PREFERENCES + 1];
        assert!(
            matches!(check(&request), Err(ApiError::InvalidField(m)) if m.starts_with("notificationPreferences:"))
        );
    }
}
