//! The rules of transaction verification: is the order complete, and is the card usable?
//!
//! Pure: [`verify`] reads the order and the date it is told is today, and answers with every
//! rule that fails, not only the first, so the user can fix everything in one go. Each failure is
//! a [`Reason`] whose `field` is the JSON path of the REST body (`creditCard.number`,
//! `items[1].quantity`) and whose `code` is stable:
//!
//! | code | field | fails when |
//! |---|---|---|
//! | `items_missing` | `items` | the order has no items |
//! | `item_name_missing` | `items[i].name` | an item's name is blank |
//! | `item_quantity_out_of_range` | `items[i].quantity` | a quantity is outside 1 to 100 |
//! | `user_name_missing` | `user.name` | the user's name is blank |
//! | `user_contact_missing` | `user.contact` | the user's contact is blank |
//! | `card_number_missing` | `creditCard.number` | no card number |
//! | `card_number_format` | `creditCard.number` | anything but digits, or spaces and dashes between digits |
//! | `card_number_length` | `creditCard.number` | fewer than 12 or more than 19 digits |
//! | `card_luhn` | `creditCard.number` | the Luhn check digit is wrong |
//! | `card_expiry_missing` | `creditCard.expirationDate` | no expiry date |
//! | `card_expiry_format` | `creditCard.expirationDate` | not `MM/YY` or `MM/YYYY`, or the month is not 01 to 12 |
//! | `card_expired` | `creditCard.expirationDate` | the last day of the expiry month is before today |
//! | `card_cvv_format` | `creditCard.cvv` | the CVV is not 3 or 4 digits |
//! | `billing_street_missing`, `billing_city_missing`, `billing_zip_missing`, `billing_country_missing` | `billingAddress.*` | that part of the address is blank |
//! | `terms_not_accepted` | `termsAndConditionsAccepted` | the terms were not accepted |
//!
//! A missing `user`, `creditCard` or `billingAddress` counts as one with every field blank.

use bookstore_proto::{Address, CreditCard, Item, Order, Reason, User};
use chrono::{Datelike, NaiveDate};

/// The most copies of one book a single order line may ask for.
pub const MAX_QUANTITY: u32 = 100;

/// The fewest digits a card number may have (ISO/IEC 7812 allows 8, but no network issues
/// cards that short for payments).
pub const MIN_CARD_DIGITS: usize = 12;

/// The most digits a card number may have (ISO/IEC 7812).
pub const MAX_CARD_DIGITS: usize = 19;

/// Checks `order` as of `today`; an empty answer means the order is approved.
pub fn verify(order: &Order, today: NaiveDate) -> Vec<Reason> {
    let mut reasons = Vec::new();
    check_items(&order.items, &mut reasons);
    check_user(
        order.user.as_ref().unwrap_or(&User::default()),
        &mut reasons,
    );
    check_card(
        order.credit_card.as_ref().unwrap_or(&CreditCard::default()),
        today,
        &mut reasons,
    );
    check_billing_address(
        order
            .billing_address
            .as_ref()
            .unwrap_or(&Address::default()),
        &mut reasons,
    );
    if !order.terms_accepted {
        reasons.push(Reason::new(
            "terms_not_accepted",
            "termsAndConditionsAccepted",
            "The terms and conditions must be accepted.".into(),
        ));
    }
    reasons
}

/// Whether `digits` (ASCII digits only) passes the Luhn check.
pub fn passes_luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(position, byte)| {
            let digit = u32::from(byte - b'0');
            if position % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The digits of a card number written with optional spaces or dashes between digits, or
/// `None` when it holds anything else or a separator is not between two digits.
pub fn card_digits(number: &str) -> Option<String> {
    let number = number.trim();
    let starts_and_ends_with_digit = number.starts_with(|c: char| c.is_ascii_digit())
        && number.ends_with(|c: char| c.is_ascii_digit());
    let only_digits_and_separators = number
        .chars()
        .all(|c| c.is_ascii_digit() || c == ' ' || c == '-');
    (starts_and_ends_with_digit && only_digits_and_separators)
        .then(|| number.chars().filter(char::is_ascii_digit).collect())
}

fn check_items(items: &[Item], reasons: &mut Vec<Reason>) {
    if items.is_empty() {
        reasons.push(Reason::new(
            "items_missing",
            "items",
            "The order must contain at least one item.".into(),
        ));
    }
    for (index, item) in items.iter().enumerate() {
        if item.name.trim().is_empty() {
            reasons.push(Reason::new(
                "item_name_missing",
                &format!("items[{index}].name"),
                format!("Item {} has no book name.", index + 1),
            ));
        }
        if !(1..=MAX_QUANTITY).contains(&item.quantity) {
            reasons.push(Reason::new(
                "item_quantity_out_of_range",
                &format!("items[{index}].quantity"),
                format!(
                    "Item {} asks for {} copies; the quantity must be between 1 and {MAX_QUANTITY}.",
                    index + 1,
                    item.quantity
                ),
            ));
        }
    }
}

fn check_user(user: &User, reasons: &mut Vec<Reason>) {
    if user.name.trim().is_empty() {
        reasons.push(Reason::new(
            "user_name_missing",
            "user.name",
            "The user's name is missing.".into(),
        ));
    }
    if user.contact.trim().is_empty() {
        reasons.push(Reason::new(
            "user_contact_missing",
            "user.contact",
            "The user's contact (e-mail or phone) is missing.".into(),
        ));
    }
}

fn check_card(card: &CreditCard, today: NaiveDate, reasons: &mut Vec<Reason>) {
    check_card_number(&card.number, reasons);
    check_expiry(&card.expiration_date, today, reasons);
    let cvv = card.cvv.trim();
    if !((3..=4).contains(&cvv.len()) && cvv.bytes().all(|byte| byte.is_ascii_digit())) {
        reasons.push(Reason::new(
            "card_cvv_format",
            "creditCard.cvv",
            "The card's CVV must be 3 or 4 digits.".into(),
        ));
    }
}

fn check_card_number(number: &str, reasons: &mut Vec<Reason>) {
    const FIELD: &str = "creditCard.number";
    if number.trim().is_empty() {
        reasons.push(Reason::new(
            "card_number_missing",
            FIELD,
            "The card number is missing.".into(),
        ));
        return;
    }
    let Some(digits) = card_digits(number) else {
        reasons.push(Reason::new(
            "card_number_format",
            FIELD,
            "The card number may hold only digits, with spaces or dashes between them.".into(),
        ));
        return;
    };
    if !(MIN_CARD_DIGITS..=MAX_CARD_DIGITS).contains(&digits.len()) {
        reasons.push(Reason::new(
            "card_number_length",
            FIELD,
            format!(
                "The card number has {} digits; it must have {MIN_CARD_DIGITS} to {MAX_CARD_DIGITS}.",
                digits.len()
            ),
        ));
    } else if !passes_luhn(&digits) {
        reasons.push(Reason::new(
            "card_luhn",
            FIELD,
            "The card number is not valid: its check digit is wrong (Luhn).".into(),
        ));
    }
}

/// The expiry as (year, month), or the reason it cannot be read.
fn parse_expiry(expiry: &str) -> Result<(i32, u32), &'static str> {
    const SHAPE: &str = "The card's expiry date must be written MM/YY or MM/YYYY.";
    let (month, year) = expiry.split_once('/').ok_or(SHAPE)?;
    let all_digits = |text: &str| text.bytes().all(|byte| byte.is_ascii_digit());
    if month.len() != 2 || !(year.len() == 2 || year.len() == 4) {
        return Err(SHAPE);
    }
    if !all_digits(month) || !all_digits(year) {
        return Err(SHAPE);
    }
    // Both are two to four ASCII digits, so they parse.
    let month: u32 = month.parse().map_err(|_| SHAPE)?;
    let year: i32 = year.parse().map_err(|_| SHAPE)?;
    if !(1..=12).contains(&month) {
        return Err("The card's expiry month must be between 01 and 12.");
    }
    let year = if year < 100 { 2000 + year } else { year };
    Ok((year, month))
}

fn check_expiry(expiry: &str, today: NaiveDate, reasons: &mut Vec<Reason>) {
    const FIELD: &str = "creditCard.expirationDate";
    let expiry = expiry.trim();
    if expiry.is_empty() {
        reasons.push(Reason::new(
            "card_expiry_missing",
            FIELD,
            "The card's expiry date is missing.".into(),
        ));
        return;
    }
    match parse_expiry(expiry) {
        Err(message) => reasons.push(Reason::new("card_expiry_format", FIELD, message.into())),
        // A card is valid through the last day of its expiry month.
        Ok((year, month)) if (year, month) < (today.year(), today.month()) => {
            reasons.push(Reason::new(
                "card_expired",
                FIELD,
                format!("The card expired at the end of {month:02}/{year}."),
            ));
        }
        Ok(_) => {}
    }
}

fn check_billing_address(address: &Address, reasons: &mut Vec<Reason>) {
    let parts = [
        ("billing_street_missing", "street", &address.street),
        ("billing_city_missing", "city", &address.city),
        ("billing_zip_missing", "zip", &address.zip),
        ("billing_country_missing", "country", &address.country),
    ];
    for (code, part, value) in parts {
        if value.trim().is_empty() {
            reasons.push(Reason::new(
                code,
                &format!("billingAddress.{part}"),
                format!("The billing address has no {part}."),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).expect("a real date")
    }

    fn today() -> NaiveDate {
        date(2026, 11, 27)
    }

    /// The demo order every backend approves.
    fn valid_order() -> Order {
        Order {
            order_id: "demo".into(),
            user: Some(User {
                name: "Ada Lovelace".into(),
                contact: "ada@example.com".into(),
            }),
            credit_card: Some(CreditCard {
                number: "4532 0151 1283 0366".into(),
                expiration_date: "12/35".into(),
                cvv: "123".into(),
            }),
            items: vec![Item {
                name: "The Hobbit".into(),
                quantity: 1,
            }],
            billing_address: Some(Address {
                street: "Raatuse 22".into(),
                city: "Tartu".into(),
                state: "Tartumaa".into(),
                zip: "51009".into(),
                country: "Estonia".into(),
            }),
            terms_accepted: true,
            ..Order::default()
        }
    }

    fn codes(order: &Order, today: NaiveDate) -> Vec<String> {
        verify(order, today).into_iter().map(|r| r.code).collect()
    }

    fn with_card_number(number: &str) -> Order {
        let mut order = valid_order();
        order.credit_card.as_mut().expect("set above").number = number.into();
        order
    }

    fn with_expiry(expiry: &str) -> Order {
        let mut order = valid_order();
        order
            .credit_card
            .as_mut()
            .expect("set above")
            .expiration_date = expiry.into();
        order
    }

    fn with_cvv(cvv: &str) -> Order {
        let mut order = valid_order();
        order.credit_card.as_mut().expect("set above").cvv = cvv.into();
        order
    }

    #[test]
    fn the_demo_order_is_approved() {
        assert_eq!(verify(&valid_order(), today()), vec![]);
    }

    #[test]
    fn an_order_without_items_is_refused() {
        let mut order = valid_order();
        order.items.clear();
        let reasons = verify(&order, today());
        assert_eq!(reasons.len(), 1);
        assert_eq!(reasons[0].code, "items_missing");
        assert_eq!(reasons[0].field, "items");
    }

    #[test]
    fn quantities_must_be_between_1_and_100() {
        let mut order = valid_order();
        order.items = [0, 1, 100, 101]
            .into_iter()
            .map(|quantity| Item {
                name: "The Hobbit".into(),
                quantity,
            })
            .collect();
        let fields: Vec<String> = verify(&order, today())
            .into_iter()
            .map(|r| {
                assert_eq!(r.code, "item_quantity_out_of_range");
                r.field
            })
            .collect();
        assert_eq!(fields, ["items[0].quantity", "items[3].quantity"]);
    }

    #[test]
    fn item_names_must_not_be_blank() {
        let mut order = valid_order();
        order.items.push(Item {
            name: "  ".into(),
            quantity: 2,
        });
        let reasons = verify(&order, today());
        assert_eq!(reasons.len(), 1);
        assert_eq!(reasons[0].code, "item_name_missing");
        assert_eq!(reasons[0].field, "items[1].name");
        assert!(reasons[0].message.contains("Item 2"), "{:?}", reasons[0]);
    }

    #[test]
    fn user_name_and_contact_must_be_present() {
        let mut order = valid_order();
        order.user = Some(User {
            name: " ".into(),
            contact: String::new(),
        });
        assert_eq!(
            codes(&order, today()),
            ["user_name_missing", "user_contact_missing"]
        );
        order.user = None;
        let fields: Vec<String> = verify(&order, today())
            .into_iter()
            .map(|r| r.field)
            .collect();
        assert_eq!(fields, ["user.name", "user.contact"]);
    }

    #[test]
    fn card_numbers_may_hold_spaces_and_dashes_between_digits() {
        for number in [
            "4532015112830366",
            "4532 0151 1283 0366",
            "4532-0151-1283-0366",
            " 4532 0151-1283 0366 ",
        ] {
            assert_eq!(
                codes(&with_card_number(number), today()),
                Vec::<String>::new()
            );
        }
    }

    #[test]
    fn letters_and_stray_separators_are_refused() {
        for number in [
            "4532 0151 1283 O366",
            "4532015112830366x",
            "-4532015112830366",
            "4532015112830366-",
            "4532.0151.1283.0366",
        ] {
            let reasons = verify(&with_card_number(number), today());
            assert_eq!(reasons.len(), 1, "{number}: {reasons:?}");
            assert_eq!(reasons[0].code, "card_number_format", "{number}");
            assert_eq!(reasons[0].field, "creditCard.number");
        }
    }

    #[test]
    fn a_missing_card_number_is_named_as_missing() {
        assert_eq!(
            codes(&with_card_number(""), today()),
            ["card_number_missing"]
        );
    }

    #[test]
    fn card_lengths_from_12_to_19_digits_are_allowed() {
        // Luhn-valid numbers of each boundary length; the 19-digit one is Stripe's UnionPay
        // test card.
        let valid = Vec::<String>::new();
        assert_eq!(codes(&with_card_number("1234 5678 9015"), today()), valid);
        assert_eq!(
            codes(&with_card_number("6205500000000000004"), today()),
            valid
        );
        assert_eq!(
            codes(&with_card_number("4000-0000-0000-0000-006"), today()),
            valid
        );
        assert_eq!(
            codes(&with_card_number("12345678903"), today()),
            ["card_number_length"]
        );
        assert_eq!(
            codes(&with_card_number("62055000000000000042"), today()),
            ["card_number_length"]
        );
    }

    #[test]
    fn the_length_message_says_how_many_digits() {
        let reasons = verify(&with_card_number("4111 1111 1111 1111 1111"), today());
        assert_eq!(reasons[0].code, "card_number_length");
        assert!(reasons[0].message.contains("20 digits"), "{:?}", reasons[0]);
    }

    #[test]
    fn luhn_failures_are_refused() {
        let reasons = verify(&with_card_number("4532 0151 1283 0367"), today());
        assert_eq!(reasons.len(), 1);
        assert_eq!(reasons[0].code, "card_luhn");
        assert_eq!(reasons[0].field, "creditCard.number");
    }

    #[test]
    fn luhn_agrees_with_published_test_numbers() {
        assert!(passes_luhn("4111111111111111"));
        assert!(passes_luhn("5555555555554444"));
        assert!(passes_luhn("378282246310005"));
        assert!(passes_luhn("4532015112830366"));
        assert!(!passes_luhn("4111111111111112"));
    }

    #[test]
    fn expiry_is_valid_through_the_last_day_of_its_month() {
        assert_eq!(
            codes(&with_expiry("02/28"), date(2028, 2, 29)),
            Vec::<String>::new()
        );
        assert_eq!(
            codes(&with_expiry("02/28"), date(2028, 3, 1)),
            ["card_expired"]
        );
        assert_eq!(
            codes(&with_expiry("11/26"), date(2026, 11, 1)),
            Vec::<String>::new()
        );
        assert_eq!(
            codes(&with_expiry("11/26"), date(2026, 11, 30)),
            Vec::<String>::new()
        );
        assert_eq!(
            codes(&with_expiry("10/26"), date(2026, 11, 1)),
            ["card_expired"]
        );
        assert_eq!(
            codes(&with_expiry("12/25"), date(2026, 1, 1)),
            ["card_expired"]
        );
    }

    #[test]
    fn expiry_with_a_four_digit_year_is_accepted() {
        assert_eq!(
            codes(&with_expiry("12/2035"), today()),
            Vec::<String>::new()
        );
        assert_eq!(codes(&with_expiry("10/2026"), today()), ["card_expired"]);
    }

    #[test]
    fn malformed_expiry_dates_are_refused() {
        for expiry in [
            "13/30", "00/30", "1/30", "12/3", "12/203", "1230", "ab/cd", "12-30", "12/30/1",
        ] {
            let reasons = verify(&with_expiry(expiry), today());
            assert_eq!(reasons.len(), 1, "{expiry}: {reasons:?}");
            assert_eq!(reasons[0].code, "card_expiry_format", "{expiry}");
            assert_eq!(reasons[0].field, "creditCard.expirationDate");
        }
        let month = verify(&with_expiry("13/30"), today());
        assert!(month[0].message.contains("01 and 12"), "{month:?}");
        assert_eq!(codes(&with_expiry(" "), today()), ["card_expiry_missing"]);
    }

    #[test]
    fn cvv_must_be_3_or_4_digits() {
        for cvv in ["123", "1234", " 123 "] {
            assert_eq!(
                codes(&with_cvv(cvv), today()),
                Vec::<String>::new(),
                "{cvv}"
            );
        }
        for cvv in ["", "12", "12345", "12a", "１２３"] {
            assert_eq!(codes(&with_cvv(cvv), today()), ["card_cvv_format"], "{cvv}");
        }
    }

    #[test]
    fn every_billing_address_part_but_state_is_required() {
        let mut order = valid_order();
        order.billing_address = Some(Address::default());
        let fields: Vec<String> = verify(&order, today())
            .into_iter()
            .map(|r| r.field)
            .collect();
        assert_eq!(
            fields,
            [
                "billingAddress.street",
                "billingAddress.city",
                "billingAddress.zip",
                "billingAddress.country"
            ]
        );
    }

    #[test]
    fn terms_must_be_accepted() {
        let mut order = valid_order();
        order.terms_accepted = false;
        let reasons = verify(&order, today());
        assert_eq!(reasons.len(), 1);
        assert_eq!(reasons[0].code, "terms_not_accepted");
        assert_eq!(reasons[0].field, "termsAndConditionsAccepted");
    }

    #[test]
    fn every_failing_rule_is_reported() {
        let order = Order::default();
        assert_eq!(
            codes(&order, today()),
            [
                "items_missing",
                "user_name_missing",
                "user_contact_missing",
                "card_number_missing",
                "card_expiry_missing",
                "card_cvv_format",
                "billing_street_missing",
                "billing_city_missing",
                "billing_zip_missing",
                "billing_country_missing",
                "terms_not_accepted",
            ]
        );
    }

    #[test]
    fn messages_never_repeat_the_card_number_or_cvv() {
        let mut order = with_card_number("4532 0151 1283 0367");
        order.credit_card.as_mut().expect("set above").cvv = "98765".into();
        for reason in verify(&order, today()) {
            assert!(!reason.message.contains("0367"), "{reason:?}");
            assert!(!reason.message.contains("98765"), "{reason:?}");
        }
    }
}
