//! The fraud rules: weighted, summed, and a decision at a threshold.
//!
//! Pure but stateful: [`FraudEngine::check`] is told the time (`now`) rather than reading a
//! clock, and the only state it keeps is the bounded card-velocity table. Each rule that fires
//! adds its weight; the score is capped at [`MAX_SCORE`] and the order is rejected at
//! [`REJECT_THRESHOLD`] or more.
//!
//! | code | weight | fires when |
//! |---|---|---|
//! | `known_fraud_card` | 100 | the card is one of [`KNOWN_FRAUD_CARDS`] |
//! | `card_velocity` | 60 | the card was used more than `max_orders` times within `window` (this order and rejected orders included) |
//! | `large_order` | 50 | the order asks for more than [`LARGE_ORDER_BOOKS`] books in total |
//! | `country_mismatch` | 30 | the card's issuing country and the billing country are both known and differ |
//!
//! # Known fraud cards
//! Published test numbers that payment processors use to simulate fraud, so that a demo can
//! trigger a rejection: Stripe's `4100 0000 0000 0019` ("always blocked", risk level highest),
//! `4000 0000 0000 4954` (risk level highest), `4000 0000 0000 9979` (declined as stolen),
//! `4000 0000 0000 9987` (declined as lost) and `4000 0000 0000 0259` (disputed as fraudulent).
//!
//! # Issuing countries
//! [`ISSUER_COUNTRIES`] is an illustrative table of card-number prefixes (IIN ranges) and the
//! ISO 3166-1 alpha-2 code of the issuer's country; it is not a real BIN database. It holds
//! Stripe's country test cards (`400000` followed by the ISO 3166-1 numeric code, for example
//! `4000 0023 3000 0009` for Estonia, 233), Stripe's US card `4242...`, and `453201` for the
//! bookstore's demo card, issued in Estonia. The longest matching prefix wins. The billing
//! country is read as an alpha-2 code or an English name, ignoring case ([`country_code`]); a
//! prefix or a country that is not in the tables never fires the rule.
//!
//! # Bounded memory
//! The velocity table never holds a card number: cards are keyed by a keyed SipHash of their
//! digits (the key is random per process). It tracks at most `max_tracked_cards` cards, evicting
//! the least recently used, and keeps at most `max_orders + 1` timestamps per card, which is all
//! the rule needs to know whether `max_orders` was exceeded.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use bookstore_proto::{FraudDecision, Order, Reason};

use crate::verification::card_digits;

/// The score at or above which an order is rejected.
pub const REJECT_THRESHOLD: u32 = 50;

/// The highest score an order can get, however many rules fire.
pub const MAX_SCORE: u32 = 100;

/// An order with more books than this (sum of quantities) is unusually large.
pub const LARGE_ORDER_BOOKS: u64 = 50;

const KNOWN_FRAUD_WEIGHT: u32 = 100;
const VELOCITY_WEIGHT: u32 = 60;
const LARGE_ORDER_WEIGHT: u32 = 50;
const COUNTRY_MISMATCH_WEIGHT: u32 = 30;

/// Published test card numbers that simulate fraud (see the module docs), digits only.
pub const KNOWN_FRAUD_CARDS: &[&str] = &[
    "4100000000000019",
    "4000000000004954",
    "4000000000009979",
    "4000000000009987",
    "4000000000000259",
];

/// Illustrative card-number prefixes and their issuers' countries (see the module docs).
pub const ISSUER_COUNTRIES: &[(&str, &str)] = &[
    ("453201", "EE"),
    ("424242", "US"),
    ("400000040", "AT"),
    ("400000056", "BE"),
    ("400000076", "BR"),
    ("400000124", "CA"),
    ("400000208", "DK"),
    ("400000233", "EE"),
    ("400000246", "FI"),
    ("400000250", "FR"),
    ("400000276", "DE"),
    ("400000372", "IE"),
    ("400000380", "IT"),
    ("400000428", "LV"),
    ("400000440", "LT"),
    ("400000528", "NL"),
    ("400000578", "NO"),
    ("400000616", "PL"),
    ("400000724", "ES"),
    ("400000752", "SE"),
    ("400000826", "GB"),
];

/// English names (lower case) of the countries the rule knows, with their alpha-2 codes.
const COUNTRY_NAMES: &[(&str, &str)] = &[
    ("australia", "AU"),
    ("austria", "AT"),
    ("belgium", "BE"),
    ("brazil", "BR"),
    ("canada", "CA"),
    ("china", "CN"),
    ("denmark", "DK"),
    ("estonia", "EE"),
    ("finland", "FI"),
    ("france", "FR"),
    ("germany", "DE"),
    ("great britain", "GB"),
    ("india", "IN"),
    ("ireland", "IE"),
    ("italy", "IT"),
    ("japan", "JP"),
    ("latvia", "LV"),
    ("lithuania", "LT"),
    ("mexico", "MX"),
    ("netherlands", "NL"),
    ("the netherlands", "NL"),
    ("norway", "NO"),
    ("poland", "PL"),
    ("portugal", "PT"),
    ("spain", "ES"),
    ("sweden", "SE"),
    ("switzerland", "CH"),
    ("uk", "GB"),
    ("united kingdom", "GB"),
    ("united states", "US"),
    ("united states of america", "US"),
    ("usa", "US"),
];

/// The ISO 3166-1 alpha-2 code of a country written as a code or an English name, ignoring
/// case and surrounding whitespace; `None` for a country the tables do not know.
pub fn country_code(country: &str) -> Option<&'static str> {
    let country = country.trim();
    COUNTRY_NAMES
        .iter()
        .find(|(name, code)| {
            country.eq_ignore_ascii_case(name) || country.eq_ignore_ascii_case(code)
        })
        .map(|(_, code)| *code)
}

/// The issuing country of a card (digits only), by the longest prefix in [`ISSUER_COUNTRIES`].
pub fn issuer_country(digits: &str) -> Option<&'static str> {
    ISSUER_COUNTRIES
        .iter()
        .filter(|(prefix, _)| digits.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, country)| *country)
}

/// The knobs of the velocity rule and of its memory bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FraudConfig {
    /// A card used more than this many times within `window` fires the velocity rule.
    pub max_orders: usize,
    /// How far back the velocity rule looks.
    pub window: Duration,
    /// The most cards the velocity table remembers; the least recently used is forgotten.
    pub max_tracked_cards: usize,
}

impl Default for FraudConfig {
    fn default() -> Self {
        Self {
            max_orders: 5,
            window: Duration::from_secs(10 * 60),
            max_tracked_cards: 10_000,
        }
    }
}

/// What the rules concluded about one order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    /// Reject when `score` reached [`REJECT_THRESHOLD`], else approve.
    pub decision: FraudDecision,
    /// The sum of the weights of the rules that fired, capped at [`MAX_SCORE`].
    pub score: u32,
    /// One reason per rule that fired.
    pub reasons: Vec<Reason>,
}

/// One card's recent uses: its newest timestamps, and its place in the eviction order.
#[derive(Debug)]
struct CardUses {
    /// Times the card was used, oldest first; at most `max_orders + 1` of them.
    times: VecDeque<Instant>,
    /// The key of this card in [`FraudEngine::recency`].
    last_touch: u64,
}

/// The fraud rules and the card-velocity table they keep.
#[derive(Debug)]
pub struct FraudEngine {
    config: FraudConfig,
    /// Hashes card digits with a per-process random key, so the table holds no card numbers.
    hasher: RandomState,
    /// Recent uses per card digest; never more than `max_tracked_cards` entries.
    cards: HashMap<u64, CardUses>,
    /// Card digests by the counter value of their last use: the first entry is the least
    /// recently used card. Always holds exactly the keys of `cards`.
    recency: BTreeMap<u64, u64>,
    /// Counts uses, to order `recency`.
    touches: u64,
}

impl FraudEngine {
    /// An engine that remembers no card yet.
    pub fn new(config: FraudConfig) -> Self {
        Self {
            config,
            hasher: RandomState::new(),
            cards: HashMap::new(),
            recency: BTreeMap::new(),
            touches: 0,
        }
    }

    /// How many cards the velocity table holds now.
    pub fn tracked_cards(&self) -> usize {
        self.cards.len()
    }

    /// Scores `order` received at `now`, and remembers the use of its card for the velocity
    /// rule (a rejected order counts too: a card being tried again and again is the signal).
    pub fn check(&mut self, order: &Order, now: Instant) -> Assessment {
        let mut fired: Vec<(u32, Reason)> = Vec::new();
        let card = order
            .credit_card
            .as_ref()
            .and_then(|card| card_digits(&card.number))
            .filter(|digits| !digits.is_empty());

        if let Some(digits) = &card {
            if KNOWN_FRAUD_CARDS.contains(&digits.as_str()) {
                fired.push((
                    KNOWN_FRAUD_WEIGHT,
                    Reason::new(
                        "known_fraud_card",
                        "creditCard.number",
                        "The card is on the list of cards known to be used for fraud.".into(),
                    ),
                ));
            }
            let uses = self.record_use(digits, now);
            if uses > self.config.max_orders {
                fired.push((
                    VELOCITY_WEIGHT,
                    Reason::new(
                        "card_velocity",
                        "creditCard.number",
                        format!(
                            "The card was used for {uses} orders within {} seconds; at most {} are allowed.",
                            self.config.window.as_secs(),
                            self.config.max_orders
                        ),
                    ),
                ));
            }
        }

        let books: u64 = order
            .items
            .iter()
            .map(|item| u64::from(item.quantity))
            .sum();
        if books > LARGE_ORDER_BOOKS {
            fired.push((
                LARGE_ORDER_WEIGHT,
                Reason::new(
                    "large_order",
                    "items",
                    format!(
                        "The order asks for {books} books; more than {LARGE_ORDER_BOOKS} is unusually large."
                    ),
                ),
            ));
        }

        let issuer = card.as_deref().and_then(issuer_country);
        let billing = order
            .billing_address
            .as_ref()
            .and_then(|address| country_code(&address.country));
        if let (Some(issuer), Some(billing)) = (issuer, billing)
            && issuer != billing
        {
            fired.push((
                COUNTRY_MISMATCH_WEIGHT,
                Reason::new(
                    "country_mismatch",
                    "billingAddress.country",
                    format!(
                        "The card was issued in {issuer} but the billing address is in {billing}."
                    ),
                ),
            ));
        }

        let score = fired
            .iter()
            .map(|(weight, _)| weight)
            .sum::<u32>()
            .min(MAX_SCORE);
        let decision = if score >= REJECT_THRESHOLD {
            FraudDecision::Reject
        } else {
            FraudDecision::Approve
        };
        Assessment {
            decision,
            score,
            reasons: fired.into_iter().map(|(_, reason)| reason).collect(),
        }
    }

    /// Records a use of the card at `now` and answers how many uses fall within the window
    /// (capped at `max_orders + 1`, the most the rule needs).
    fn record_use(&mut self, digits: &str, now: Instant) -> usize {
        if self.config.max_tracked_cards == 0 {
            // Nothing may be remembered, so every use is the card's first.
            return 1;
        }
        let key = self.hasher.hash_one(digits);
        if !self.cards.contains_key(&key)
            && self.cards.len() >= self.config.max_tracked_cards
            && let Some((_, evicted)) = self.recency.pop_first()
        {
            self.cards.remove(&evicted);
        }
        self.touches += 1;
        let touch = self.touches;
        let uses = self.cards.entry(key).or_insert_with(|| CardUses {
            times: VecDeque::new(),
            last_touch: touch,
        });
        self.recency.remove(&uses.last_touch);
        uses.last_touch = touch;
        self.recency.insert(touch, key);

        while uses
            .times
            .front()
            .is_some_and(|&first| now.saturating_duration_since(first) >= self.config.window)
        {
            uses.times.pop_front();
        }
        uses.times.push_back(now);
        if uses.times.len() > self.config.max_orders.saturating_add(1) {
            uses.times.pop_front();
        }
        uses.times.len()
    }
}

#[cfg(test)]
mod tests {
    use bookstore_proto::{Address, CreditCard, Item};

    use super::*;

    const DEMO_CARD: &str = "4532 0151 1283 0366";

    fn order(card: &str, country: &str, quantity: u32) -> Order {
        Order {
            credit_card: Some(CreditCard {
                number: card.into(),
                expiration_date: "12/35".into(),
                cvv: "123".into(),
            }),
            items: vec![Item {
                name: "The Hobbit".into(),
                quantity,
            }],
            billing_address: Some(Address {
                street: "Raatuse 22".into(),
                city: "Tartu".into(),
                zip: "51009".into(),
                country: country.into(),
                ..Address::default()
            }),
            ..Order::default()
        }
    }

    fn codes(assessment: &Assessment) -> Vec<&str> {
        assessment.reasons.iter().map(|r| r.code.as_str()).collect()
    }

    fn engine() -> FraudEngine {
        FraudEngine::new(FraudConfig::default())
    }

    #[test]
    fn the_demo_order_is_approved_with_no_reasons() {
        let assessment = engine().check(&order(DEMO_CARD, "Estonia", 1), Instant::now());
        assert_eq!(assessment.decision, FraudDecision::Approve);
        assert_eq!(assessment.score, 0);
        assert!(assessment.reasons.is_empty());
    }

    #[test]
    fn known_fraud_cards_are_rejected_however_they_are_written() {
        let now = Instant::now();
        for card in [
            "4100000000000019",
            "4100 0000 0000 0019",
            "4100-0000-0000-0019",
            "4000 0000 0000 4954",
        ] {
            let assessment = engine().check(&order(card, "", 1), now);
            assert_eq!(assessment.decision, FraudDecision::Reject, "{card}");
            assert_eq!(assessment.score, 100);
            assert_eq!(codes(&assessment), ["known_fraud_card"]);
            assert_eq!(assessment.reasons[0].field, "creditCard.number");
        }
    }

    #[test]
    fn common_test_cards_are_not_on_the_fraud_list() {
        assert!(!KNOWN_FRAUD_CARDS.contains(&"4532015112830366"));
        assert!(!KNOWN_FRAUD_CARDS.contains(&"4111111111111111"));
        let assessment = engine().check(&order("4111 1111 1111 1111", "", 1), Instant::now());
        assert_eq!(assessment.score, 0);
    }

    #[test]
    fn the_fraud_list_holds_luhn_valid_numbers() {
        for card in KNOWN_FRAUD_CARDS {
            assert!(crate::verification::passes_luhn(card), "{card}");
        }
    }

    #[test]
    fn the_sixth_use_within_ten_minutes_fires_velocity() {
        let mut engine = engine();
        let start = Instant::now();
        for minute in 0..5 {
            let at = start + Duration::from_secs(minute * 60);
            assert_eq!(engine.check(&order(DEMO_CARD, "EE", 1), at).score, 0);
        }
        let sixth = engine.check(&order(DEMO_CARD, "EE", 1), start + Duration::from_secs(300));
        assert_eq!(codes(&sixth), ["card_velocity"]);
        assert_eq!(sixth.score, 60);
        assert_eq!(sixth.decision, FraudDecision::Reject);
        assert!(sixth.reasons[0].message.contains("6 orders"), "{sixth:?}");
    }

    #[test]
    fn the_velocity_window_slides() {
        let mut engine = FraudEngine::new(FraudConfig {
            max_orders: 2,
            window: Duration::from_secs(60),
            max_tracked_cards: 10,
        });
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        let check = |engine: &mut FraudEngine, seconds| {
            engine.check(&order(DEMO_CARD, "", 1), at(seconds)).score
        };
        assert_eq!(check(&mut engine, 0), 0);
        assert_eq!(check(&mut engine, 30), 0);
        assert_eq!(check(&mut engine, 59), 60, "third use within 60 s");
        // At 60 s the use at 0 s has left the window: uses at 30, 59, 60.
        assert_eq!(check(&mut engine, 60), 60);
        // At 120 s every earlier use is a full window old or more.
        assert_eq!(check(&mut engine, 120), 0);
        assert_eq!(check(&mut engine, 121), 0);
        assert_eq!(check(&mut engine, 122), 60);
    }

    #[test]
    fn the_same_card_written_differently_is_one_card() {
        let mut engine = FraudEngine::new(FraudConfig {
            max_orders: 1,
            ..FraudConfig::default()
        });
        let now = Instant::now();
        assert_eq!(
            engine.check(&order("4532015112830366", "", 1), now).score,
            0
        );
        assert_eq!(
            engine
                .check(&order("4532-0151-1283-0366", "", 1), now)
                .score,
            60
        );
        assert_eq!(engine.tracked_cards(), 1);
    }

    #[test]
    fn different_cards_are_counted_apart() {
        let mut engine = FraudEngine::new(FraudConfig {
            max_orders: 1,
            ..FraudConfig::default()
        });
        let now = Instant::now();
        assert_eq!(
            engine.check(&order("4111111111111111", "", 1), now).score,
            0
        );
        assert_eq!(
            engine.check(&order("5555555555554444", "", 1), now).score,
            0
        );
        assert_eq!(engine.tracked_cards(), 2);
    }

    #[test]
    fn the_table_never_tracks_more_cards_than_its_bound() {
        let mut engine = FraudEngine::new(FraudConfig {
            max_orders: 1,
            window: Duration::from_secs(600),
            max_tracked_cards: 3,
        });
        let now = Instant::now();
        for card in 0..100u64 {
            engine.check(&order(&format!("4000{card:012}"), "", 1), now);
            assert!(engine.tracked_cards() <= 3);
        }
        assert_eq!(engine.tracked_cards(), 3);
        assert_eq!(engine.recency.len(), 3);
    }

    #[test]
    fn the_least_recently_used_card_is_evicted_first() {
        let mut engine = FraudEngine::new(FraudConfig {
            max_orders: 1,
            window: Duration::from_secs(600),
            max_tracked_cards: 2,
        });
        let now = Instant::now();
        let (a, b, c) = ("4111111111111111", "5555555555554444", "378282246310005");
        engine.check(&order(a, "", 1), now);
        engine.check(&order(b, "", 1), now);
        // Using `a` again makes `b` the least recently used; `c` then evicts `b`.
        assert_eq!(engine.check(&order(a, "", 1), now).score, 60);
        engine.check(&order(c, "", 1), now);
        assert_eq!(
            engine.check(&order(a, "", 1), now).score,
            60,
            "a is remembered"
        );
        assert_eq!(
            engine.check(&order(b, "", 1), now).score,
            0,
            "b was forgotten"
        );
    }

    #[test]
    fn timestamps_per_card_are_bounded() {
        let mut engine = engine();
        let now = Instant::now();
        for _ in 0..1_000 {
            engine.check(&order(DEMO_CARD, "", 1), now);
        }
        let uses = engine.cards.values().next().expect("one card tracked");
        assert_eq!(uses.times.len(), FraudConfig::default().max_orders + 1);
    }

    #[test]
    fn a_zero_card_bound_remembers_nothing() {
        let mut engine = FraudEngine::new(FraudConfig {
            max_orders: 0,
            window: Duration::from_secs(600),
            max_tracked_cards: 0,
        });
        let assessment = engine.check(&order(DEMO_CARD, "", 1), Instant::now());
        assert_eq!(codes(&assessment), ["card_velocity"]);
        assert_eq!(engine.tracked_cards(), 0);
        assert!(engine.recency.is_empty());
    }

    #[test]
    fn the_table_holds_no_card_numbers() {
        let mut engine = engine();
        engine.check(&order(DEMO_CARD, "", 1), Instant::now());
        let shown = format!("{engine:?}");
        assert!(!shown.contains("4532015112830366"), "{shown}");
    }

    #[test]
    fn more_than_fifty_books_is_a_large_order() {
        let now = Instant::now();
        assert_eq!(engine().check(&order(DEMO_CARD, "EE", 50), now).score, 0);
        let mut two_lines = order(DEMO_CARD, "EE", 30);
        two_lines.items.push(Item {
            name: "Dune".into(),
            quantity: 21,
        });
        let assessment = engine().check(&two_lines, now);
        assert_eq!(codes(&assessment), ["large_order"]);
        assert_eq!(assessment.score, 50);
        assert_eq!(assessment.decision, FraudDecision::Reject);
        assert!(assessment.reasons[0].message.contains("51 books"));
    }

    #[test]
    fn a_card_from_another_country_scores_30_and_is_approved() {
        let assessment = engine().check(&order(DEMO_CARD, "Germany", 1), Instant::now());
        assert_eq!(codes(&assessment), ["country_mismatch"]);
        assert_eq!(assessment.score, 30);
        assert_eq!(assessment.decision, FraudDecision::Approve);
        assert_eq!(assessment.reasons[0].field, "billingAddress.country");
    }

    #[test]
    fn countries_match_by_code_or_name_ignoring_case() {
        for country in ["EE", "ee", "Estonia", " ESTONIA "] {
            let assessment = engine().check(&order(DEMO_CARD, country, 1), Instant::now());
            assert_eq!(assessment.score, 0, "{country}");
        }
        assert_eq!(country_code("United Kingdom"), Some("GB"));
        assert_eq!(country_code("gb"), Some("GB"));
        assert_eq!(country_code("Atlantis"), None);
        assert_eq!(country_code("ZZ"), None);
    }

    #[test]
    fn an_unknown_country_or_prefix_never_fires() {
        let now = Instant::now();
        assert_eq!(
            engine().check(&order(DEMO_CARD, "Atlantis", 1), now).score,
            0
        );
        assert_eq!(engine().check(&order(DEMO_CARD, "", 1), now).score, 0);
        assert_eq!(
            engine()
                .check(&order("5555555555554444", "Estonia", 1), now)
                .score,
            0
        );
    }

    #[test]
    fn the_longest_prefix_decides_the_issuer() {
        assert_eq!(issuer_country("4000002330000009"), Some("EE"));
        assert_eq!(issuer_country("4000008260000000"), Some("GB"));
        assert_eq!(issuer_country("4532015112830366"), Some("EE"));
        assert_eq!(issuer_country("4242424242424242"), Some("US"));
        assert_eq!(issuer_country("4111111111111111"), None);
    }

    #[test]
    fn the_score_is_capped_at_100() {
        let mut engine = FraudEngine::new(FraudConfig {
            max_orders: 0,
            ..FraudConfig::default()
        });
        let assessment = engine.check(&order("4100000000000019", "EE", 60), Instant::now());
        assert_eq!(
            codes(&assessment),
            ["known_fraud_card", "card_velocity", "large_order"]
        );
        assert_eq!(assessment.score, 100);
    }

    #[test]
    fn an_order_without_a_card_is_scored_on_the_rest() {
        let mut bare = order("", "", 51);
        bare.credit_card = None;
        let mut engine = engine();
        let assessment = engine.check(&bare, Instant::now());
        assert_eq!(codes(&assessment), ["large_order"]);
        assert_eq!(engine.tracked_cards(), 0);
    }
}
