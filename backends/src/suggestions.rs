//! Which books to suggest for an order's items.
//!
//! Pure and deterministic: the same items give the same suggestions. Items are matched to
//! catalogue titles ignoring case and surrounding whitespace. Books by an author of an ordered
//! book come first, then books sharing the most genres with the ordered books; ties go by title,
//! then id. A book that was ordered is never suggested. When fewer related books exist than were
//! asked for (no item matched the catalogue, say), the rest is filled from a fallback that walks
//! the catalogue from a position chosen by a stable hash of the item names, so an order always
//! gets its suggestions, and always the same ones.

use std::cmp::Reverse;
use std::collections::HashSet;

use bookstore_proto::Item;

use crate::catalogue::{Book, Catalogue};

/// How many books to suggest when the request asks for 0.
pub const DEFAULT_LIMIT: usize = 3;

/// Up to `limit` books (0 means [`DEFAULT_LIMIT`]) to suggest for an order of `items`.
pub fn suggest<'c>(catalogue: &'c Catalogue, items: &[Item], limit: u32) -> Vec<&'c Book> {
    let limit = match usize::try_from(limit) {
        Ok(0) => DEFAULT_LIMIT,
        Ok(limit) => limit,
        // A limit beyond the address space asks for everything.
        Err(_) => usize::MAX,
    };
    let ordered: Vec<&Book> = items
        .iter()
        .filter_map(|item| catalogue.find_by_title(&item.name))
        .collect();
    let ordered_ids: HashSet<&str> = ordered.iter().map(|book| book.id.as_str()).collect();
    let authors: HashSet<&str> = ordered.iter().map(|book| book.author.as_str()).collect();
    let genres: HashSet<&str> = ordered
        .iter()
        .flat_map(|book| book.genres.iter().map(String::as_str))
        .collect();

    let mut related: Vec<(bool, usize, &Book)> = catalogue
        .books()
        .iter()
        .filter(|book| !ordered_ids.contains(book.id.as_str()))
        .map(|book| {
            let same_author = authors.contains(book.author.as_str());
            let shared = book
                .genres
                .iter()
                .filter(|genre| genres.contains(genre.as_str()))
                .count();
            (same_author, shared, book)
        })
        .filter(|(same_author, shared, _)| *same_author || *shared > 0)
        .collect();
    // The catalogue is in title order (titles are unique), and the sort is stable: ties stay in
    // title order without building a key string per comparison.
    related.sort_by_key(|(same_author, shared, _)| (Reverse(*same_author), Reverse(*shared)));

    let mut chosen: Vec<&Book> = related
        .into_iter()
        .map(|(_, _, book)| book)
        .take(limit)
        .collect();
    if chosen.len() < limit {
        let books = catalogue.books();
        let start = usize::try_from(stable_hash(items) % books.len() as u64).unwrap_or(0);
        let fallback = books[start..]
            .iter()
            .chain(&books[..start])
            .filter(|book| !ordered_ids.contains(book.id.as_str()));
        for book in fallback {
            if chosen.len() >= limit {
                break;
            }
            if !chosen.iter().any(|picked| picked.id == book.id) {
                chosen.push(book);
            }
        }
    }
    chosen
}

/// FNV-1a over the normalised item names. Unlike std's `DefaultHasher`, whose algorithm may
/// change between Rust releases, this stays the same, so the fallback does too.
fn stable_hash(items: &[Item]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    items
        .iter()
        .flat_map(|item| {
            item.name
                .trim()
                .to_lowercase()
                .into_bytes()
                .into_iter()
                .chain([0])
        })
        .fold(OFFSET, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(PRIME)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(names: &[&str]) -> Vec<Item> {
        names
            .iter()
            .map(|name| Item {
                name: (*name).into(),
                quantity: 1,
            })
            .collect()
    }

    fn titles(books: &[&Book]) -> Vec<String> {
        books.iter().map(|book| book.title.clone()).collect()
    }

    fn catalogue() -> Catalogue {
        Catalogue::embedded().expect("the embedded catalogue is valid")
    }

    fn book(id: &str, title: &str, author: &str, genres: &[&str]) -> Book {
        Book {
            id: id.into(),
            title: title.into(),
            author: author.into(),
            genres: genres.iter().map(|genre| (*genre).into()).collect(),
            year: 2000,
        }
    }

    #[test]
    fn the_hobbit_suggests_more_tolkien() {
        let catalogue = catalogue();
        let suggested = suggest(&catalogue, &items(&["The Hobbit"]), 0);
        assert_eq!(suggested.len(), 3);
        for book in &suggested {
            assert_eq!(book.author, "J.R.R. Tolkien", "{book:?}");
        }
        // Same author, then the most shared genres: the Silmarillion shares only "fantasy".
        assert_eq!(
            titles(&suggested),
            [
                "The Fellowship of the Ring",
                "The Return of the King",
                "The Two Towers"
            ]
        );
    }

    #[test]
    fn same_author_comes_before_shared_genres_then_title_then_id() {
        let catalogue = Catalogue::new(vec![
            book("b1", "Ordered", "Ann", &["a", "b"]),
            book("b2", "Zeta by Ann", "Ann", &["x"]),
            book("b3", "Alpha shares two", "Bob", &["a", "b"]),
            book("b4", "Beta shares one", "Cid", &["b"]),
            book("b5", "Aardvark shares one", "Dee", &["a"]),
            book("b6", "Unrelated", "Eve", &["z"]),
        ])
        .expect("valid");
        let suggested = suggest(&catalogue, &items(&["ordered"]), 4);
        assert_eq!(
            titles(&suggested),
            [
                "Zeta by Ann",
                "Alpha shares two",
                "Aardvark shares one",
                "Beta shares one"
            ]
        );
    }

    #[test]
    fn ordered_books_are_never_suggested() {
        let catalogue = catalogue();
        let ordered = [
            "The Fellowship of the Ring",
            "The Two Towers",
            "The Return of the King",
        ];
        let suggested = suggest(&catalogue, &items(&ordered), 10);
        assert_eq!(suggested.len(), 10);
        for book in &suggested {
            assert!(!ordered.contains(&book.title.as_str()), "{book:?}");
        }
        assert_eq!(suggested[0].title, "The Hobbit");
    }

    #[test]
    fn titles_match_ignoring_case_and_surrounding_whitespace() {
        let catalogue = catalogue();
        let exact = suggest(&catalogue, &items(&["The Hobbit"]), 3);
        let loose = suggest(&catalogue, &items(&["  the HOBBIT "]), 3);
        assert_eq!(titles(&exact), titles(&loose));
    }

    #[test]
    fn unknown_titles_still_get_three_deterministic_suggestions() {
        let catalogue = catalogue();
        let order = items(&["A Book Nobody Wrote"]);
        let first = suggest(&catalogue, &order, 0);
        assert_eq!(first.len(), 3);
        assert_eq!(titles(&first), titles(&suggest(&catalogue, &order, 0)));
        let other = suggest(&catalogue, &items(&["Another Missing Book"]), 0);
        assert_eq!(other.len(), 3);
    }

    #[test]
    fn an_order_without_items_gets_the_fallback() {
        let catalogue = catalogue();
        assert_eq!(suggest(&catalogue, &[], 0).len(), 3);
    }

    #[test]
    fn the_fallback_fills_up_when_few_books_are_related() {
        let catalogue = Catalogue::new(vec![
            book("b1", "Ordered", "Ann", &["a"]),
            book("b2", "Related", "Bob", &["a"]),
            book("b3", "Other one", "Cid", &["x"]),
            book("b4", "Other two", "Dee", &["y"]),
        ])
        .expect("valid");
        let suggested = suggest(&catalogue, &items(&["Ordered"]), 3);
        assert_eq!(suggested[0].title, "Related");
        let mut ids: Vec<&str> = suggested.iter().map(|book| book.id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["b2", "b3", "b4"]);
    }

    #[test]
    fn a_limit_larger_than_the_catalogue_returns_every_other_book_once() {
        let catalogue = Catalogue::new(vec![
            book("b1", "Ordered", "Ann", &["a"]),
            book("b2", "Related", "Bob", &["a"]),
            book("b3", "Other", "Cid", &["x"]),
        ])
        .expect("valid");
        let suggested = suggest(&catalogue, &items(&["Ordered"]), u32::MAX);
        assert_eq!(titles(&suggested), ["Related", "Other"]);
    }

    #[test]
    fn the_limit_is_respected() {
        let catalogue = catalogue();
        assert_eq!(suggest(&catalogue, &items(&["Emma"]), 1).len(), 1);
        assert_eq!(suggest(&catalogue, &items(&["Emma"]), 5).len(), 5);
        let austen = suggest(&catalogue, &items(&["Emma"]), 5);
        assert!(austen.iter().all(|book| book.author == "Jane Austen"));
    }

    #[test]
    fn the_stable_hash_does_not_change() {
        // Names are normalised before hashing, and no items hash to FNV-1a's offset basis.
        assert_eq!(
            stable_hash(&items(&[" Dune "])),
            stable_hash(&items(&["dune"]))
        );
        assert_eq!(stable_hash(&[]), 0xcbf2_9ce4_8422_2325);
    }
}
