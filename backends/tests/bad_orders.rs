//! Orders with arbitrary field values through everything the backends do with an incoming
//! request: taking the order out of it, the verification rules, the fraud rules and the
//! suggestions. Whatever the values (empty or long strings, any text, quantities up to
//! `u32::MAX` whose sum overflows a u32, many items), the rules answer without panicking, every
//! reason names a REST field of the order, and an approval implies what it promises.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use backends::catalogue::Catalogue;
use backends::fraud::{FraudConfig, FraudEngine, MAX_SCORE, REJECT_THRESHOLD};
use backends::incoming::received_order;
use backends::suggestions::suggest;
use backends::verification::{MAX_QUANTITY, card_digits, passes_luhn, verify};
use bookstore_proto::{Address, CreditCard, FraudDecision, Item, Order, User};
use chrono::NaiveDate;
use proptest::prelude::*;

/// Text as a client may send it: empty, blank, digits with separators, or anything.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("   ".to_owned()),
        "[0-9 -]{0,24}",
        "\\PC{0,24}",
        "[a-z]{1,4}".prop_map(|word| word.repeat(1000)),
    ]
}

fn quantity() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0), 1..=MAX_QUANTITY, Just(u32::MAX), any::<u32>()]
}

fn order() -> impl Strategy<Value = Order> {
    let user =
        proptest::option::of((text(), text()).prop_map(|(name, contact)| User { name, contact }));
    let card = proptest::option::of(
        (
            prop_oneof![text(), Just("4111 1111 1111 1111".to_owned())],
            prop_oneof![text(), "[0-9]{2}/[0-9]{2,4}", Just("12/99".to_owned())],
            text(),
        )
            .prop_map(|(number, expiration_date, cvv)| CreditCard {
                number,
                expiration_date,
                cvv,
            }),
    );
    let items = prop_oneof![
        proptest::collection::vec((text(), quantity()), 0..8),
        // Many lines, each of the largest quantity: the total overflows a u32 many times over.
        (1000..2000usize).prop_map(|lines| vec![("Dune".to_owned(), u32::MAX); lines]),
    ]
    .prop_map(|items| {
        items
            .into_iter()
            .map(|(name, quantity)| Item { name, quantity })
            .collect::<Vec<_>>()
    });
    let address = proptest::option::of((text(), text(), text(), text(), text()).prop_map(
        |(street, city, state, zip, country)| Address {
            street,
            city,
            state,
            zip,
            country,
        },
    ));
    (user, card, items, address, any::<bool>(), text()).prop_map(
        |(user, credit_card, items, billing_address, terms_accepted, order_id)| Order {
            order_id,
            user,
            credit_card,
            items,
            billing_address,
            terms_accepted,
            ..Order::default()
        },
    )
}

/// The REST fields a reason may name (`items[3].quantity` counts as `items`).
const FIELDS: &[&str] = &[
    "",
    "user",
    "creditCard",
    "items",
    "billingAddress",
    "termsAndConditionsAccepted",
];

fn names_a_field(field: &str) -> bool {
    let top = field.split(['.', '[']).next().unwrap_or_default();
    FIELDS.contains(&top)
}

fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| Catalogue::embedded().expect("the embedded catalogue"))
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 27).expect("a real date")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn verification_names_a_field_for_each_refusal_and_approves_only_sound_orders(order in order()) {
        let received = received_order("verification", "VerifyTransactionRequest", "o-1", Some(order.clone()))
            .expect("a request with an order is taken");
        prop_assert_eq!(&received, &order);
        let reasons = verify(&order, today());
        for reason in &reasons {
            prop_assert!(names_a_field(&reason.field), "{:?}", reason);
            prop_assert!(!reason.code.is_empty() && !reason.message.is_empty());
        }
        if reasons.is_empty() {
            prop_assert!(!order.items.is_empty());
            prop_assert!(order.items.iter().all(|item| (1..=MAX_QUANTITY).contains(&item.quantity)));
            prop_assert!(order.terms_accepted);
            let number = &order.credit_card.as_ref().expect("a card").number;
            let digits = card_digits(number).expect("card digits");
            prop_assert!(passes_luhn(&digits));
        }
    }

    #[test]
    fn fraud_scores_any_order_within_bounds(orders in proptest::collection::vec(order(), 1..4)) {
        let mut engine = FraudEngine::new(FraudConfig {
            max_orders: 1,
            window: Duration::from_secs(60),
            max_tracked_cards: 2,
        });
        let start = Instant::now();
        for (offset, order) in orders.iter().enumerate() {
            let assessment = engine.check(order, start + Duration::from_secs(offset as u64));
            prop_assert!(assessment.score <= MAX_SCORE);
            let rejected = assessment.score >= REJECT_THRESHOLD;
            prop_assert_eq!(assessment.decision == FraudDecision::Reject, rejected);
            for reason in &assessment.reasons {
                prop_assert!(names_a_field(&reason.field), "{:?}", reason);
            }
            prop_assert!(engine.tracked_cards() <= 2);
        }
    }

    #[test]
    fn suggestions_stay_within_the_limit_and_the_catalogue(order in order(), limit in any::<u32>()) {
        let catalogue = catalogue();
        let books = suggest(catalogue, &order.items, limit);
        let wanted = if limit == 0 { 3 } else { limit as usize };
        prop_assert!(books.len() <= wanted.min(catalogue.books().len()));
        let ids: std::collections::HashSet<&str> = books.iter().map(|book| book.id.as_str()).collect();
        prop_assert_eq!(ids.len(), books.len(), "no book twice");
    }
}

#[test]
fn a_request_without_an_order_is_an_invalid_argument_naming_it() {
    let status = received_order("fraud", "CheckOrderRequest", "o-1", None).expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("CheckOrderRequest.order"),
        "{}",
        status.message()
    );
}
