//! The card check: no card number or CVV the clients sent may appear anywhere the system wrote
//! (queue data and snapshots, logs, ledgers) or in any answer it gave (`responses.jsonl`).
//!
//! Card numbers are found as their full digits inside any run of digits, in text or binary
//! (sled) files. A CVV is a few digits that any number may contain, so it is searched for only
//! where it would mean a leak: as the value of a field or key named like `cvv`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The shortest card number a client sends.
const MIN_CARD_DIGITS: usize = 13;
/// How many bytes after a `cvv` name its value may start (quotes, colon, `=`, spaces).
const CVV_VALUE_GAP: usize = 6;

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
    let lengths: HashSet<usize> = cards.iter().map(String::len).collect();
    let mut leaks = Vec::new();
    for file in files_under(dir)? {
        let bytes =
            std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        for (offset, what) in find_leaks(&bytes, cards, &lengths, cvv) {
            leaks.push(Leak {
                file: file.clone(),
                what,
                offset,
            });
        }
    }
    Ok(leaks)
}

/// Byte offsets and descriptions of every card and CVV found in `bytes`.
fn find_leaks(
    bytes: &[u8],
    cards: &HashSet<String>,
    lengths: &HashSet<usize>,
    cvv: &str,
) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        if !bytes[start].is_ascii_digit() {
            start += 1;
            continue;
        }
        let end = bytes[start..]
            .iter()
            .position(|byte| !byte.is_ascii_digit())
            .map_or(bytes.len(), |length| start + length);
        if end - start >= MIN_CARD_DIGITS {
            for &length in lengths {
                for window in start..=end.saturating_sub(length) {
                    // Digits only, so the bytes are ASCII.
                    let digits = std::str::from_utf8(&bytes[window..window + length]).unwrap_or("");
                    if cards.contains(digits) {
                        found.push((window, format!("card ending {}", &digits[length - 4..])));
                    }
                }
            }
        }
        start = end;
    }
    found.extend(find_cvv_fields(bytes, cvv));
    found
}

/// Offsets of `cvv` standing as the whole value right after a name containing `cvv`.
fn find_cvv_fields(bytes: &[u8], cvv: &str) -> Vec<(usize, String)> {
    let lower = bytes.to_ascii_lowercase();
    let value = cvv.as_bytes();
    let mut found = Vec::new();
    for name_at in lower
        .windows(3)
        .enumerate()
        .filter(|(_, window)| *window == b"cvv")
        .map(|(at, _)| at)
    {
        let after_name = name_at + 3;
        let gap_end = (after_name + CVV_VALUE_GAP).min(bytes.len());
        let Some(value_at) = (after_name..gap_end).find(|&at| bytes[at].is_ascii_digit()) else {
            continue;
        };
        // Only separators between the name and the value: `"cvv":"123"`, `cvv=123`, `cvv: 123`.
        if !bytes[after_name..value_at]
            .iter()
            .all(|byte| matches!(byte, b'"' | b'\'' | b':' | b'=' | b' ' | b'\\'))
        {
            continue;
        }
        let value_end = value_at + value.len();
        let whole = bytes.get(value_at..value_end) == Some(value)
            && !bytes.get(value_end).is_some_and(u8::is_ascii_digit);
        if whole {
            found.push((value_at, "the CVV".to_owned()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaks(text: &[u8]) -> Vec<String> {
        let cards: HashSet<String> = ["4532015112830366".to_owned()].into();
        let lengths = cards.iter().map(String::len).collect();
        find_leaks(text, &cards, &lengths, "9073")
            .into_iter()
            .map(|(_, what)| what)
            .collect()
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
    fn a_cvv_is_found_only_as_a_cvv_value() {
        assert_eq!(leaks(br#"{"cvv":"9073"}"#), ["the CVV"]);
        assert_eq!(leaks(b"creditCard.CVV = 9073 and"), ["the CVV"]);
        assert_eq!(leaks(br#"{\"cvv\":\"9073\"}"#), ["the CVV"]);
        assert!(leaks(br#"{"cvv":"90731"} order 9073 {"cvv_format":"9073"}"#).is_empty());
    }

    #[test]
    fn every_file_under_a_directory_is_scanned() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let dir = dir.path();
        std::fs::create_dir_all(dir.join("logs")).expect("logs directory");
        std::fs::write(dir.join("clean.log"), "nothing here").expect("clean file written");
        std::fs::write(dir.join("logs").join("leak.log"), "x 4532015112830366 y")
            .expect("leaking file written");
        let cards = ["4532015112830366".to_owned()].into();
        let found = scan(dir, &cards, "9073").expect("the directory is readable");
        assert_eq!(found.len(), 1);
        assert!(found[0].file.ends_with("logs/leak.log"));
    }
}
