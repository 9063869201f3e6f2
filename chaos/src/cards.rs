//! The card check: no card number or CVV the clients sent may appear anywhere the system wrote
//! (queue data and snapshots, logs at info and at debug level, ledgers) or in any answer it
//! gave (`responses.jsonl`), in any encoding a process might use.
//!
//! A card number is searched for, in text or binary (sled) files, as:
//! - its digits inside any run of digits, the run allowed single separators between digits
//!   (`4532 0151 1283 0366`, `4532-0151-1283-0366`, `4.532.015`...);
//! - the hex of its digits, as a `Debug` of bytes or a hex dump writes it;
//! - the base64 of its digits at each of the three alignments it can have inside a longer
//!   base64 text (only the characters its own bytes decide are compared);
//! - its value as a 64-bit integer, little- and big-endian (bincode, a binary protobuf).
//!
//! A CVV is a few digits that any number may contain, so it is searched for only where it would
//! mean a leak: as a whole run of digits within a few bytes after a field or key named like one
//! ([`CVV_NAMES`]: `cvv`, `cvc`, `securityCode`, ...), in the file itself and inside every long
//! run of base64 or hex in it, decoded.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use aho_corasick::AhoCorasick;
use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

/// The shortest card number a client sends.
const MIN_CARD_DIGITS: usize = 13;
/// Characters that may stand between two digits of a card number written in groups.
const DIGIT_SEPARATORS: &[u8] = b" -._/";
/// How many bytes after a CVV field's name its value may start.
const CVV_VALUE_WINDOW: usize = 24;
/// What may stand between a field's name and its value.
const VALUE_PUNCTUATION: &[u8] = b"\"':= \\({[";
/// Words that may wrap a value (`Some("123")`, `{"value": 123}`), lower case.
const CVV_WRAPPERS: &[&str] = &["some", "value", "secret", "string"];
/// Names a field holding a CVV goes by, lower case; matched case-insensitively as whole words
/// (a camelCase boundary counts: `cardCvv`).
const CVV_NAMES: &[&str] = &[
    "cvv",
    "cvv2",
    "cvc",
    "cvc2",
    "csc",
    "cid",
    "cvn",
    "securitycode",
    "security_code",
    "security-code",
    "security code",
    "cardcode",
    "card_code",
    "verificationvalue",
    "verification_value",
    "verificationcode",
    "verification_code",
];
/// Runs of base64 or hex shorter than this are not decoded for the CVV search.
const MIN_ENCODED_RUN: usize = 16;

/// One leak: which file, what was found (a card's last four digits only), at which byte.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Leak {
    pub file: PathBuf,
    pub what: String,
    pub offset: usize,
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let kind = entry.file_type().context("cannot read a file type")?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Searches every file under `dir` for `cards` and for `cvv` as a CVV field's value.
pub fn scan(dir: &Path, cards: &HashSet<String>, cvv: &str) -> anyhow::Result<Vec<Leak>> {
    let searcher = Searcher::new(cards, cvv)?;
    let mut leaks = Vec::new();
    for file in files_under(dir)? {
        let bytes =
            std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        for (offset, what) in searcher.find(&bytes) {
            leaks.push(Leak {
                file: file.clone(),
                what,
                offset,
            });
        }
    }
    Ok(leaks)
}

/// Every encoding of every card, and the CVV, ready to search many files.
struct Searcher {
    /// The cards' digits, searched in the digit runs of a file (separators taken out).
    digits: AhoCorasick,
    /// What each pattern of `digits` is: the card's last four digits.
    digit_names: Vec<String>,
    /// The other encodings, searched in the raw bytes.
    encoded: AhoCorasick,
    encoded_names: Vec<String>,
    cvv: Vec<u8>,
    cvv_names: AhoCorasick,
}

impl Searcher {
    fn new(cards: &HashSet<String>, cvv: &str) -> anyhow::Result<Searcher> {
        let mut cards: Vec<&String> = cards.iter().collect();
        cards.sort();
        let last_four = |card: &str| card[card.len().saturating_sub(4)..].to_owned();
        let digit_names = cards.iter().map(|card| last_four(card)).collect();
        let digits = AhoCorasick::new(&cards).context("cannot build the card search")?;
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut encoded_names = Vec::new();
        for card in &cards {
            for (encoding, pattern) in encodings(card) {
                patterns.push(pattern);
                encoded_names.push(format!("{} ({encoding})", last_four(card)));
            }
        }
        let encoded = AhoCorasick::new(&patterns).context("cannot build the card search")?;
        let cvv_names = aho_corasick::AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .build(CVV_NAMES)
            .context("cannot build the CVV search")?;
        Ok(Searcher {
            digits,
            digit_names,
            encoded,
            encoded_names,
            cvv: cvv.as_bytes().to_vec(),
            cvv_names,
        })
    }

    /// Byte offsets and descriptions of every card and CVV found in `bytes`.
    fn find(&self, bytes: &[u8]) -> Vec<(usize, String)> {
        let mut found = Vec::new();
        let (stream, offsets) = digit_stream(bytes);
        for hit in self.digits.find_iter(&stream) {
            found.push((
                offsets[hit.start()],
                format!("card ending {}", self.digit_names[hit.pattern().as_usize()]),
            ));
        }
        for hit in self.encoded.find_iter(bytes) {
            found.push((
                hit.start(),
                format!(
                    "card ending {}",
                    self.encoded_names[hit.pattern().as_usize()]
                ),
            ));
        }
        found.extend(self.find_cvv_fields(bytes, "the CVV"));
        for (start, decoded) in decoded_runs(bytes) {
            found.extend(
                self.find_cvv_fields(&decoded, "the CVV (encoded)")
                    .into_iter()
                    .map(|(_, what)| (start, what)),
            );
        }
        found
    }

    /// Offsets of the CVV standing as the value of a CVV field: the first run of digits after
    /// the field's name, within [`CVV_VALUE_WINDOW`] bytes, with nothing between them but
    /// quotes, colons, `=`, brackets, spaces and wrappers such as `Some(` ([`CVV_WRAPPERS`]).
    fn find_cvv_fields(&self, bytes: &[u8], what: &str) -> Vec<(usize, String)> {
        let mut offsets = std::collections::BTreeSet::new();
        for name in self.cvv_names.find_overlapping_iter(bytes) {
            if !is_whole_word(bytes, name.start(), name.end()) {
                continue;
            }
            let Some(value_at) = value_after(bytes, name.end()) else {
                continue;
            };
            let value_end = bytes[value_at..]
                .iter()
                .position(|byte| !byte.is_ascii_digit())
                .map_or(bytes.len(), |length| value_at + length);
            if bytes[value_at..value_end] == self.cvv[..] {
                offsets.insert(value_at);
            }
        }
        offsets
            .into_iter()
            .map(|offset| (offset, what.to_owned()))
            .collect()
    }
}

/// Where the value of a field whose name ends at `from` begins: its first digit, when only
/// punctuation and wrappers stand between.
fn value_after(bytes: &[u8], from: usize) -> Option<usize> {
    let end = (from + CVV_VALUE_WINDOW).min(bytes.len());
    let mut at = from;
    while at < end {
        let byte = bytes[at];
        if byte.is_ascii_digit() {
            return Some(at);
        }
        if byte.is_ascii_alphabetic() {
            let word_end = bytes[at..end]
                .iter()
                .position(|byte| !byte.is_ascii_alphabetic())
                .map_or(end, |length| at + length);
            let word = bytes[at..word_end].to_ascii_lowercase();
            if !CVV_WRAPPERS
                .iter()
                .any(|wrapper| wrapper.as_bytes() == word)
            {
                return None;
            }
            at = word_end;
            continue;
        }
        if !VALUE_PUNCTUATION.contains(&byte) {
            return None;
        }
        at += 1;
    }
    None
}

/// Every encoding of `card` searched in raw bytes, by name.
fn encodings(card: &str) -> Vec<(&'static str, Vec<u8>)> {
    let digits = card.as_bytes();
    let hex: String = digits.iter().map(|byte| format!("{byte:02x}")).collect();
    // Digits' hex has no letters, so upper and lower case are the same.
    let mut found = vec![("hex", hex.into_bytes())];
    for skip in 0..3 {
        let whole_groups = (digits.len() - skip) / 3 * 3;
        let aligned = &digits[skip..skip + whole_groups];
        found.push(("base64", STANDARD.encode(aligned).into_bytes()));
        let url_safe = URL_SAFE.encode(aligned).into_bytes();
        if !found.iter().any(|(_, pattern)| *pattern == url_safe) {
            found.push(("base64url", url_safe));
        }
    }
    if let Ok(value) = card.parse::<u64>() {
        found.push(("u64 little-endian", value.to_le_bytes().to_vec()));
        found.push(("u64 big-endian", value.to_be_bytes().to_vec()));
    }
    found
}

/// The digits of `bytes`, runs of at least [`MIN_CARD_DIGITS`] digits (single separators
/// between digits taken out) each followed by a `|`, and the offset in `bytes` of each digit.
fn digit_stream(bytes: &[u8]) -> (Vec<u8>, Vec<usize>) {
    let mut stream = Vec::new();
    let mut offsets = Vec::new();
    let mut run_start = 0;
    let mut at = 0;
    let close_run = |stream: &mut Vec<u8>, offsets: &mut Vec<usize>, run_start: usize| {
        if stream.len() - run_start < MIN_CARD_DIGITS {
            stream.truncate(run_start);
            offsets.truncate(run_start);
        } else {
            stream.push(b'|');
            offsets.push(usize::MAX);
        }
    };
    while at < bytes.len() {
        let byte = bytes[at];
        if byte.is_ascii_digit() {
            stream.push(byte);
            offsets.push(at);
        } else {
            let joins = DIGIT_SEPARATORS.contains(&byte)
                && stream.len() > run_start
                && bytes.get(at + 1).is_some_and(u8::is_ascii_digit);
            if !joins && stream.len() > run_start {
                close_run(&mut stream, &mut offsets, run_start);
                run_start = stream.len();
            }
        }
        at += 1;
    }
    if stream.len() > run_start {
        close_run(&mut stream, &mut offsets, run_start);
    }
    (stream, offsets)
}

/// Whether `bytes[start..end]` stands as a word of its own: no letter just before it (unless
/// it begins a camelCase part) and no letter just after it.
fn is_whole_word(bytes: &[u8], start: usize, end: usize) -> bool {
    let before_ok = match start.checked_sub(1).map(|before| bytes[before]) {
        Some(before) if before.is_ascii_alphabetic() => {
            before.is_ascii_lowercase() && bytes[start].is_ascii_uppercase()
        }
        _ => true,
    };
    let after_ok = !bytes.get(end).is_some_and(u8::is_ascii_alphabetic);
    before_ok && after_ok
}

/// Every run of at least [`MIN_ENCODED_RUN`] base64 or hex characters, decoded, with where it
/// starts.
fn decoded_runs(bytes: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let is_base64 =
        |byte: &u8| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'-' | b'_');
    let mut decoded = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if !is_base64(&bytes[at]) {
            at += 1;
            continue;
        }
        let end = bytes[at..]
            .iter()
            .position(|byte| !is_base64(byte))
            .map_or(bytes.len(), |length| at + length);
        let run = &bytes[at..end];
        if run.len() >= MIN_ENCODED_RUN {
            if run.iter().all(u8::is_ascii_hexdigit) && run.len().is_multiple_of(2) {
                decoded.push((at, decode_hex(run)));
            }
            let trimmed = &run[..run.len() / 4 * 4];
            for engine in [&STANDARD, &URL_SAFE] {
                if let Ok(bytes) = engine.decode(trimmed) {
                    decoded.push((at, bytes));
                }
            }
        }
        at = end;
    }
    decoded
}

fn decode_hex(run: &[u8]) -> Vec<u8> {
    run.chunks(2)
        .filter_map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = "4532015112830366";

    fn leaks(text: &[u8]) -> Vec<String> {
        let cards: HashSet<String> = [CARD.to_owned()].into();
        let searcher = Searcher::new(&cards, "9073").expect("searcher");
        let mut found: Vec<String> = searcher
            .find(text)
            .into_iter()
            .map(|(_, what)| what)
            .collect();
        found.sort();
        found
    }

    #[test]
    fn a_card_is_found_in_text_and_inside_longer_digit_runs() {
        assert_eq!(
            leaks(b"{\"card\":\"4532015112830366\"}"),
            ["card ending 0366"]
        );
        assert_eq!(
            leaks(b"\x00\x0177453201511283036600\xff"),
            ["card ending 0366"]
        );
        assert!(leaks(b"card ending 0366, 453201511283036").is_empty());
    }

    #[test]
    fn a_card_in_groups_is_found() {
        assert_eq!(leaks(b"card 4532 0151 1283 0366."), ["card ending 0366"]);
        assert_eq!(leaks(b"card=4532-0151-1283-0366"), ["card ending 0366"]);
        assert_eq!(
            leaks(b"4 5 3 2 0 1 5 1 1 2 8 3 0 3 6 6"),
            ["card ending 0366"]
        );
        // Two separators in a row end the run.
        assert!(leaks(b"4532  0151 1283 0366").is_empty());
    }

    #[test]
    fn a_card_in_hex_base64_or_binary_is_found() {
        let hex: String = CARD.bytes().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(leaks(hex.as_bytes()), ["card ending 0366 (hex)"]);
        // Inside a longer base64 text, at every alignment.
        for prefix in ["", "x", "xy"] {
            let text = STANDARD.encode(format!("{prefix}{{\"number\":\"{CARD}\"}}"));
            let found = leaks(text.as_bytes());
            assert!(
                found.iter().any(|what| what == "card ending 0366 (base64)"),
                "{prefix:?}: {found:?}"
            );
        }
        let value: u64 = CARD.parse().expect("a card number is a number");
        assert_eq!(
            leaks(&[b"\x01\x02".as_slice(), &value.to_le_bytes(), b"\x03"].concat()),
            ["card ending 0366 (u64 little-endian)"]
        );
        assert_eq!(
            leaks(&value.to_be_bytes()),
            ["card ending 0366 (u64 big-endian)"]
        );
    }

    #[test]
    fn a_cvv_is_found_only_as_a_cvv_value() {
        assert_eq!(leaks(br#"{"cvv":"9073"}"#), ["the CVV"]);
        assert_eq!(leaks(b"creditCard.CVV = 9073 and"), ["the CVV"]);
        assert_eq!(leaks(br#"{\"cvv\":\"9073\"}"#), ["the CVV"]);
        assert_eq!(leaks(br#"cvv: Some("9073")"#), ["the CVV"]);
        assert!(leaks(br#"{"cvv":"90731"} order 9073 {"cvv_format":"x"} 9073"#).is_empty());
        assert!(leaks(br#"{"cvv_checked":true,"index":9073}"#).is_empty());
        assert!(leaks(b"the order was decided at index 9073").is_empty());
        assert!(leaks(b"cvv checked\nindex 9073").is_empty());
    }

    #[test]
    fn a_cvv_under_any_name_that_holds_one_is_found() {
        for text in [
            &br#"{"securityCode":"9073"}"#[..],
            br#"security_code=9073"#,
            br#"{"cardCvc": 9073}"#,
            br#"CVC2: 9073"#,
            br#"csc 9073"#,
            br#"{"card_verification_value":"9073"}"#,
        ] {
            assert_eq!(
                leaks(text),
                ["the CVV"],
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn a_cvv_inside_base64_or_hex_is_found() {
        let body = br#"{"creditCard":{"cvv":"9073"}}"#;
        let text = format!("payload={} end", STANDARD.encode(body));
        assert!(
            leaks(text.as_bytes()).contains(&"the CVV (encoded)".to_owned()),
            "{text}"
        );
        let hex: String = body.iter().map(|byte| format!("{byte:02x}")).collect();
        assert!(leaks(hex.as_bytes()).contains(&"the CVV (encoded)".to_owned()));
    }

    #[test]
    fn every_file_under_a_directory_is_scanned() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let dir = dir.path();
        std::fs::create_dir_all(dir.join("logs")).expect("logs directory");
        std::fs::write(dir.join("clean.log"), "nothing here").expect("clean file written");
        std::fs::write(dir.join("logs").join("leak.log"), "x 4532 0151 1283 0366 y")
            .expect("leaking file written");
        let cards = [CARD.to_owned()].into();
        let found = scan(dir, &cards, "9073").expect("the directory is readable");
        assert_eq!(found.len(), 1);
        assert!(found[0].file.ends_with("logs/leak.log"));
        assert_eq!(found[0].offset, 2);
    }
}
