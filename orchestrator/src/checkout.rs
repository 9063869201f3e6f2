//! The REST bodies of `POST /checkout` (the course's `CheckoutRequest`) and of its answer, and
//! their conversion to the protobuf [`Order`] the backends receive.
//!
//! Parsing checks shapes, types and bounds ([`crate::limits`]) only; whether the order is
//! acceptable (a valid card, items present, terms accepted) is the backends' decision, which
//! comes back as reasons. A refusal names the field and what was wrong with it, never the value
//! sent: a card number sent as a JSON number would otherwise come back in the answer and the log.

use bookstore_proto as pb;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// The body of `POST /checkout`. `user`, `creditCard` and `items` are required; the rest may be
/// left out. Unknown fields are ignored, as the course's pages send extra ones.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckoutRequest {
    pub user: User,
    pub credit_card: CreditCard,
    pub items: Vec<Item>,
    #[serde(default)]
    pub user_comment: String,
    #[serde(default)]
    pub discount_code: String,
    #[serde(default)]
    pub shipping_method: String,
    #[serde(default)]
    pub gift_message: String,
    #[serde(default)]
    pub billing_address: Address,
    #[serde(default)]
    pub gift_wrapping: bool,
    #[serde(default)]
    pub terms_and_conditions_accepted: bool,
    /// The 2025 page's name for `termsAndConditionsAccepted`. A body may carry both (a field
    /// alias would refuse that as a duplicate); see [`CheckoutRequest::terms_accepted`].
    #[serde(default)]
    pub terms_accepted: bool,
    #[serde(default)]
    pub notification_preferences: Vec<String>,
    #[serde(default)]
    pub device: Device,
    #[serde(default)]
    pub browser: Browser,
    #[serde(default)]
    pub app_version: String,
    #[serde(default)]
    pub screen_resolution: String,
    #[serde(default)]
    pub referrer: String,
    #[serde(default)]
    pub device_language: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct User {
    pub name: String,
    pub contact: String,
}

/// The card as typed. Its `Debug` shows only the last four digits, so a logged request leaks
/// nothing.
#[derive(Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CreditCard {
    pub number: String,
    pub expiration_date: String,
    pub cvv: String,
}

impl std::fmt::Debug for CreditCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreditCard")
            .field("number", &pb::mask_card_number(&self.number))
            .field("expiration_date", &self.expiration_date)
            .field("cvv", &"***")
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Item {
    pub name: String,
    pub quantity: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Address {
    pub street: String,
    pub city: String,
    pub state: String,
    pub zip: String,
    pub country: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Device {
    #[serde(rename = "type")]
    pub kind: String,
    pub model: String,
    pub os: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Browser {
    pub name: String,
    pub version: String,
}

impl CheckoutRequest {
    /// Parses a body whatever its declared content type, naming the offending field on failure:
    /// `400 malformed_json` when it is not JSON, `422 invalid_field` when a field has the wrong
    /// type, a required one is missing or one is over its bound.
    pub fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let request: Self =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
                let path = error.path().to_string();
                let inner = error.into_inner();
                if inner.is_data() {
                    let problem = without_value(&inner.to_string());
                    let message = if path == "." {
                        problem
                    } else {
                        format!("{path}: {problem}")
                    };
                    ApiError::InvalidField(message)
                } else {
                    // serde_json's syntax errors are fixed texts with a position: no input.
                    ApiError::MalformedJson(inner.to_string())
                }
            })?;
        deserializer
            .end()
            .map_err(|error| ApiError::MalformedJson(error.to_string()))?;
        crate::limits::check(&request)?;
        Ok(request)
    }

    /// Whether the customer accepted the terms, under either name of the flag.
    pub fn terms_accepted(&self) -> bool {
        self.terms_and_conditions_accepted || self.terms_accepted
    }

    /// What the queue keeps of the order: no payment data, only who ordered which books.
    pub fn queued_order(&self, order_id: &str) -> pb::QueuedOrder {
        pb::QueuedOrder {
            order_id: order_id.to_owned(),
            customer: self.user.name.clone(),
            items: self
                .items
                .iter()
                .map(|item| pb::QueueItem {
                    title: item.name.clone(),
                    quantity: item.quantity,
                })
                .collect(),
        }
    }

    /// The order the backends receive, under the id the orchestrator gave it.
    pub fn into_order(self, order_id: String) -> pb::Order {
        let terms_accepted = self.terms_accepted();
        pb::Order {
            order_id,
            user: Some(pb::User {
                name: self.user.name,
                contact: self.user.contact,
            }),
            credit_card: Some(pb::CreditCard {
                number: self.credit_card.number,
                expiration_date: self.credit_card.expiration_date,
                cvv: self.credit_card.cvv,
            }),
            user_comment: self.user_comment,
            items: self
                .items
                .into_iter()
                .map(|item| pb::Item {
                    name: item.name,
                    quantity: item.quantity,
                })
                .collect(),
            discount_code: self.discount_code,
            shipping_method: self.shipping_method,
            gift_message: self.gift_message,
            billing_address: Some(pb::Address {
                street: self.billing_address.street,
                city: self.billing_address.city,
                state: self.billing_address.state,
                zip: self.billing_address.zip,
                country: self.billing_address.country,
            }),
            gift_wrapping: self.gift_wrapping,
            terms_accepted,
            notification_preferences: self.notification_preferences,
            device: Some(pb::Device {
                r#type: self.device.kind,
                model: self.device.model,
                os: self.device.os,
            }),
            browser: Some(pb::Browser {
                name: self.browser.name,
                version: self.browser.version,
            }),
            app_version: self.app_version,
            screen_resolution: self.screen_resolution,
            referrer: self.referrer,
            device_language: self.device_language,
        }
    }
}

/// serde_json's message about a value of the wrong type or out of range, without the value:
/// `invalid type: integer `4532015112830366`, expected a string at line 1 column 9` becomes
/// `invalid type: integer, expected a string at line 1 column 9`. Messages that carry no value
/// (a missing or duplicate field, a list's length) stay as they are; any other is replaced.
fn without_value(message: &str) -> String {
    for kind in ["invalid type: ", "invalid value: "] {
        let Some(unexpected) = message.strip_prefix(kind) else {
            continue;
        };
        // The value comes first (a string's, quoted, may hold anything); what was expected last.
        let Some(expected_at) = unexpected.rfind(", expected ") else {
            break;
        };
        // `integer `1``, `string "a"`, `sequence`, `map`, `null`, ...: the words before the value.
        let what = unexpected[..expected_at]
            .split(['`', '"'])
            .next()
            .unwrap_or_default()
            .trim();
        return format!("{kind}{what}{}", &unexpected[expected_at..]);
    }
    if ["missing field", "duplicate field", "invalid length"]
        .iter()
        .any(|prefix| message.starts_with(prefix))
    {
        return message.to_owned();
    }
    "invalid value".to_owned()
}

/// The answer to `POST /checkout` once the backends have decided.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CheckoutResponse {
    pub order_id: String,
    pub status: OrderDecision,
    pub suggested_books: Vec<SuggestedBook>,
    /// Why the order was rejected; empty when it was approved.
    pub reasons: Vec<RejectionReason>,
    /// Things that went wrong without changing the decision, such as suggestions being unavailable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum OrderDecision {
    #[serde(rename = "Order Approved")]
    Approved,
    #[serde(rename = "Order Rejected")]
    Rejected,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SuggestedBook {
    pub book_id: String,
    pub title: String,
    pub author: String,
}

impl From<pb::Book> for SuggestedBook {
    fn from(book: pb::Book) -> Self {
        Self {
            book_id: book.book_id,
            title: book.title,
            author: book.author,
        }
    }
}

/// One rule that rejected the order, and the backend whose rule it is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RejectionReason {
    pub service: String,
    pub code: String,
    pub field: String,
    pub message: String,
}

impl RejectionReason {
    pub fn from_backend(service: &str, reason: pb::Reason) -> Self {
        Self {
            service: service.to_owned(),
            code: reason.code,
            field: reason.field,
            message: reason.message,
        }
    }
}

/// A catalogue entry as `GET /books` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CatalogueBook {
    pub book_id: String,
    pub title: String,
    pub author: String,
    pub genres: Vec<String>,
    pub year: i32,
}

impl From<pb::Book> for CatalogueBook {
    fn from(book: pb::Book) -> Self {
        Self {
            book_id: book.book_id,
            title: book.title,
            author: book.author,
            genres: book.genres,
            year: book.year,
        }
    }
}

/// Who orders what with which card: the parts of a checkout that differ between shoppers.
#[derive(Debug, Clone, Copy)]
pub struct SampleOrder<'a> {
    pub name: &'a str,
    pub contact: &'a str,
    pub card_number: &'a str,
    pub cvv: &'a str,
    /// Titles and quantities.
    pub items: &'a [(&'a str, u32)],
}

/// A complete `POST /checkout` body as the page sends it (every field of the REST contract,
/// billed in Estonia, card valid until 12/35), for the clients that place orders without the
/// page: tests, the benchmark and the chaos run.
pub fn sample_request(order: &SampleOrder<'_>) -> serde_json::Value {
    let items: Vec<serde_json::Value> = order
        .items
        .iter()
        .map(|(name, quantity)| serde_json::json!({"name": name, "quantity": quantity}))
        .collect();
    serde_json::json!({
        "user": {"name": order.name, "contact": order.contact},
        "creditCard": {"number": order.card_number, "expirationDate": "12/35", "cvv": order.cvv},
        "userComment": "",
        "items": items,
        "discountCode": "",
        "shippingMethod": "Standard",
        "giftMessage": "",
        "billingAddress": {"street": "Raatuse 22", "city": "Tartu", "state": "Tartumaa", "zip": "51009", "country": "Estonia"},
        "giftWrapping": false,
        "termsAndConditionsAccepted": true,
        "notificationPreferences": ["email"],
        "device": {"type": "Desktop", "model": "PC", "os": "Debian 12"},
        "browser": {"name": "Chromium", "version": "120"},
        "appVersion": "1.0.0",
        "screenResolution": "1920x1080",
        "referrer": "",
        "deviceLanguage": "en-US"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"user":{"name":"Ada","contact":"ada@example.com"},
        "creditCard":{"number":"4532015112830366","expirationDate":"12/35","cvv":"123"},
        "items":[{"name":"The Hobbit","quantity":2}]}"#;

    #[test]
    fn a_minimal_body_parses_with_defaults_for_the_rest() {
        let request = CheckoutRequest::from_json(MINIMAL.as_bytes()).expect("valid body");
        assert_eq!(request.items[0].quantity, 2);
        assert!(!request.terms_accepted());
        assert!(request.billing_address.country.is_empty());
    }

    #[test]
    fn both_names_of_the_terms_flag_are_accepted() {
        for name in ["termsAccepted", "termsAndConditionsAccepted"] {
            let body = MINIMAL.replacen('{', &format!("{{\"{name}\":true,"), 1);
            let request = CheckoutRequest::from_json(body.as_bytes()).expect("valid body");
            assert!(request.terms_accepted(), "{name}");
        }
    }

    #[test]
    fn a_body_with_both_names_of_the_terms_flag_parses() {
        let body = MINIMAL.replacen(
            '{',
            r#"{"termsAndConditionsAccepted":false,"termsAccepted":true,"#,
            1,
        );
        let request = CheckoutRequest::from_json(body.as_bytes()).expect("valid body");
        assert!(request.terms_accepted());
    }

    #[test]
    fn a_wrong_type_names_the_field_path() {
        let body = MINIMAL.replace(r#""quantity":2"#, r#""quantity":"two""#);
        match CheckoutRequest::from_json(body.as_bytes()) {
            Err(ApiError::InvalidField(message)) => {
                assert!(message.starts_with("items[0].quantity:"), "{message}")
            }
            other => panic!("expected InvalidField, got {other:?}"),
        }
    }

    #[test]
    fn a_refused_value_is_never_repeated() {
        let shapes = [
            r#"4532015112830366"#,
            r#"-4532015112830366"#,
            r#"4532015112830366.5"#,
            r#""4532015112830366""#,
            r#"["4532015112830366"]"#,
            r#"{"n":4532015112830366}"#,
            r#"true"#,
        ];
        for (field, replaced) in [
            (r#""number":"4532015112830366""#, "creditCard.number"),
            (r#""quantity":2"#, "items[0].quantity"),
            (r#""cvv":"123""#, "creditCard.cvv"),
        ] {
            let key = replaced.rsplit('.').next().expect("a key");
            for shape in shapes {
                let body = MINIMAL.replace(field, &format!(r#""{key}":{shape}"#));
                let message = match CheckoutRequest::from_json(body.as_bytes()) {
                    Err(ApiError::InvalidField(message)) => message,
                    Ok(_) if shape.starts_with('"') => continue,
                    other => panic!("{replaced} = {shape}: {other:?}"),
                };
                assert!(message.starts_with(&format!("{replaced}: ")), "{message}");
                assert!(!message.contains("4532"), "{message}");
                assert!(!message.contains("true"), "{message}");
            }
        }
        let sentence = MINIMAL.replace(r#""quantity":2"#, r#""quantity":"4532, expected "x`""#);
        match CheckoutRequest::from_json(sentence.as_bytes()) {
            Err(ApiError::InvalidField(message)) => {
                assert_eq!(
                    message.split(" at line").next(),
                    Some("items[0].quantity: invalid type: string, expected u32")
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_required_field_is_named() {
        let body = r#"{"user":{},"creditCard":{}}"#;
        match CheckoutRequest::from_json(body.as_bytes()) {
            Err(ApiError::InvalidField(message)) => {
                assert!(message.contains("`items`"), "{message}")
            }
            other => panic!("expected InvalidField, got {other:?}"),
        }
    }

    #[test]
    fn negative_quantities_are_refused_by_type() {
        let body = MINIMAL.replace(r#""quantity":2"#, r#""quantity":-1"#);
        assert!(matches!(
            CheckoutRequest::from_json(body.as_bytes()),
            Err(ApiError::InvalidField(_))
        ));
    }

    #[test]
    fn text_that_is_not_json_is_malformed() {
        for body in [
            "not json",
            "{\"user\":",
            "",
            r#"{"user":{},"creditCard":{},"items":[]} trailing"#,
        ] {
            assert!(
                matches!(
                    CheckoutRequest::from_json(body.as_bytes()),
                    Err(ApiError::MalformedJson(_))
                ),
                "{body:?}"
            );
        }
    }

    #[test]
    fn the_debug_of_a_request_hides_the_card() {
        let request = CheckoutRequest::from_json(MINIMAL.as_bytes()).expect("valid body");
        let shown = format!("{request:?}");
        assert!(!shown.contains("4532015112830366"), "{shown}");
        assert!(shown.contains("0366"), "{shown}");
    }

    #[test]
    fn the_queued_order_carries_no_payment_data() {
        let request = CheckoutRequest::from_json(MINIMAL.as_bytes()).expect("valid body");
        let queued = request.queued_order("id-1");
        assert_eq!(queued.customer, "Ada");
        assert_eq!(
            queued.items,
            vec![pb::QueueItem {
                title: "The Hobbit".into(),
                quantity: 2
            }]
        );
        assert!(!format!("{queued:?}").contains("4532"));
    }

    #[test]
    fn the_order_carries_every_field() {
        let request = CheckoutRequest::from_json(MINIMAL.as_bytes()).expect("valid body");
        let order = request.into_order("id-1".into());
        assert_eq!(order.order_id, "id-1");
        assert_eq!(
            order.items,
            vec![pb::Item {
                name: "The Hobbit".into(),
                quantity: 2
            }]
        );
        assert_eq!(
            order.credit_card.map(|card| card.number).as_deref(),
            Some("4532015112830366")
        );
    }
}
