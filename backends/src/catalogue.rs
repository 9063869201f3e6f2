//! The book catalogue the suggestions come from.
//!
//! The default catalogue, `data/books.json`, is compiled into the binary so that it runs from
//! anywhere; `--catalogue PATH` replaces it with a file of the same shape: a JSON array of
//! `{"id", "title", "author", "genres": [..], "year"}`. Whatever its source, a [`Catalogue`]
//! holds only valid books: at least one, every field non-empty, genres in lower case, ids unique
//! and titles unique ignoring case. Books are kept in title order, the order `ListBooks` answers in.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The catalogue compiled into the binary.
pub const EMBEDDED_BOOKS: &str = include_str!("../data/books.json");

/// A book of the catalogue.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Book {
    /// A stable id, for example `"b017"`.
    pub id: String,
    pub title: String,
    pub author: String,
    /// Lower-case genre names.
    pub genres: Vec<String>,
    /// The year of first publication; negative for BCE.
    pub year: i32,
}

impl From<&Book> for bookstore_proto::Book {
    fn from(book: &Book) -> Self {
        Self {
            book_id: book.id.clone(),
            title: book.title.clone(),
            author: book.author.clone(),
            genres: book.genres.clone(),
            year: book.year,
        }
    }
}

/// Why a catalogue was refused; each variant names the offending entry.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("cannot read the catalogue {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the catalogue is not a JSON array of books: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("the catalogue holds no books")]
    Empty,
    #[error("book {index} (id {id:?}) has an empty {field}")]
    EmptyField {
        index: usize,
        id: String,
        field: &'static str,
    },
    #[error("book {id:?} has the genre {genre:?}, which is not in lower case")]
    GenreNotLowercase { id: String, genre: String },
    #[error("the id {id:?} is used by more than one book")]
    DuplicateId { id: String },
    #[error("the title {title:?} is used by books {first_id:?} and {second_id:?}")]
    DuplicateTitle {
        title: String,
        first_id: String,
        second_id: String,
    },
}

/// A validated catalogue, in title order.
#[derive(Clone, Debug)]
pub struct Catalogue {
    books: Vec<Book>,
}

impl Catalogue {
    /// The catalogue compiled into the binary.
    pub fn embedded() -> Result<Self, CatalogueError> {
        Self::from_json(EMBEDDED_BOOKS)
    }

    /// The catalogue in the file at `path`.
    pub fn load(path: &Path) -> Result<Self, CatalogueError> {
        let json = std::fs::read_to_string(path).map_err(|source| CatalogueError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&json)
    }

    /// The file at `path` when one is given, else the embedded catalogue.
    pub fn load_or_embedded(path: Option<&Path>) -> Result<Self, CatalogueError> {
        path.map_or_else(Self::embedded, Self::load)
    }

    /// The catalogue in `json`, validated.
    pub fn from_json(json: &str) -> Result<Self, CatalogueError> {
        Self::new(serde_json::from_str(json)?)
    }

    /// A catalogue of `books`, validated and sorted by title.
    pub fn new(mut books: Vec<Book>) -> Result<Self, CatalogueError> {
        if books.is_empty() {
            return Err(CatalogueError::Empty);
        }
        let mut ids: HashSet<&str> = HashSet::new();
        let mut titles: HashMap<String, &str> = HashMap::new();
        for (index, book) in books.iter().enumerate() {
            let empty = [
                ("id", book.id.trim().is_empty()),
                ("title", book.title.trim().is_empty()),
                ("author", book.author.trim().is_empty()),
                ("genres", book.genres.is_empty()),
                ("genre", book.genres.iter().any(|g| g.trim().is_empty())),
            ];
            if let Some((field, _)) = empty.into_iter().find(|(_, empty)| *empty) {
                return Err(CatalogueError::EmptyField {
                    index,
                    id: book.id.clone(),
                    field,
                });
            }
            if let Some(genre) = book.genres.iter().find(|g| g.to_lowercase() != **g) {
                return Err(CatalogueError::GenreNotLowercase {
                    id: book.id.clone(),
                    genre: genre.clone(),
                });
            }
            if !ids.insert(&book.id) {
                return Err(CatalogueError::DuplicateId {
                    id: book.id.clone(),
                });
            }
            if let Some(first_id) = titles.insert(title_key(&book.title), &book.id) {
                return Err(CatalogueError::DuplicateTitle {
                    title: book.title.clone(),
                    first_id: first_id.to_owned(),
                    second_id: book.id.clone(),
                });
            }
        }
        books.sort_by_cached_key(|book| title_key(&book.title));
        Ok(Self { books })
    }

    /// Every book, in title order.
    pub fn books(&self) -> &[Book] {
        &self.books
    }

    /// The book titled `title`, ignoring case and surrounding whitespace.
    pub fn find_by_title(&self, title: &str) -> Option<&Book> {
        // The books are sorted by this key: a lookup costs a few keys, not one per book, which
        // an order of many thousand lines would multiply.
        let key = title_key(title);
        self.books
            .binary_search_by(|book| title_key(&book.title).cmp(&key))
            .ok()
            .map(|found| &self.books[found])
    }
}

/// How titles are compared: without surrounding whitespace, ignoring case.
fn title_key(title: &str) -> String {
    title.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(id: &str, title: &str) -> Book {
        Book {
            id: id.into(),
            title: title.into(),
            author: "Someone".into(),
            genres: vec!["fantasy".into()],
            year: 2000,
        }
    }

    #[test]
    fn the_embedded_catalogue_is_valid_and_large_enough() {
        let catalogue = Catalogue::embedded().expect("the embedded catalogue is valid");
        assert!(
            catalogue.books().len() >= 120,
            "{}",
            catalogue.books().len()
        );
        let hobbit = catalogue
            .find_by_title("The Hobbit")
            .expect("The Hobbit is in it");
        assert_eq!(hobbit.author, "J.R.R. Tolkien");
    }

    #[test]
    fn the_embedded_catalogue_has_authors_with_several_books() {
        let catalogue = Catalogue::embedded().expect("the embedded catalogue is valid");
        for author in [
            "J.R.R. Tolkien",
            "Jane Austen",
            "George Orwell",
            "Ursula K. Le Guin",
            "Terry Pratchett",
            "Agatha Christie",
            "Fyodor Dostoevsky",
            "Isaac Asimov",
        ] {
            let books = catalogue
                .books()
                .iter()
                .filter(|b| b.author == author)
                .count();
            assert!(books >= 3, "{author} has {books} books");
        }
    }

    #[test]
    fn books_are_kept_in_title_order() {
        let catalogue = Catalogue::new(vec![
            book("b2", "beta"),
            book("b1", "Alpha"),
            book("b3", "Gamma"),
        ])
        .expect("valid");
        let titles: Vec<&str> = catalogue.books().iter().map(|b| b.title.as_str()).collect();
        assert_eq!(titles, ["Alpha", "beta", "Gamma"]);
    }

    #[test]
    fn titles_are_found_ignoring_case_and_whitespace() {
        let catalogue = Catalogue::new(vec![book("b1", "The Hobbit")]).expect("valid");
        assert!(catalogue.find_by_title("  the HOBBIT ").is_some());
        assert!(catalogue.find_by_title("The Hobbits").is_none());
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let error = Catalogue::new(vec![book("b1", "One"), book("b1", "Two")]).unwrap_err();
        assert!(
            matches!(&error, CatalogueError::DuplicateId { id } if id == "b1"),
            "{error}"
        );
    }

    #[test]
    fn duplicate_titles_are_refused_ignoring_case() {
        let error = Catalogue::new(vec![book("b1", "Dune"), book("b2", "DUNE ")]).unwrap_err();
        assert!(
            matches!(&error, CatalogueError::DuplicateTitle { first_id, second_id, .. }
                if first_id == "b1" && second_id == "b2"),
            "{error}"
        );
    }

    #[test]
    fn empty_fields_are_refused_by_name() {
        let mut no_author = book("b7", "Untitled");
        no_author.author = " ".into();
        let error = Catalogue::new(vec![book("b1", "One"), no_author]).unwrap_err();
        assert!(
            matches!(&error, CatalogueError::EmptyField { index: 1, id, field: "author" } if id == "b7"),
            "{error}"
        );
        assert!(error.to_string().contains("b7"), "{error}");

        let mut no_genres = book("b8", "Genreless");
        no_genres.genres.clear();
        let error = Catalogue::new(vec![no_genres]).unwrap_err();
        assert!(
            matches!(
                error,
                CatalogueError::EmptyField {
                    field: "genres",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn genres_must_be_lower_case() {
        let mut shouting = book("b1", "One");
        shouting.genres = vec!["Fantasy".into()];
        let error = Catalogue::new(vec![shouting]).unwrap_err();
        assert!(
            matches!(&error, CatalogueError::GenreNotLowercase { genre, .. } if genre == "Fantasy"),
            "{error}"
        );
    }

    #[test]
    fn an_empty_catalogue_is_refused() {
        assert!(matches!(
            Catalogue::from_json("[]"),
            Err(CatalogueError::Empty)
        ));
    }

    #[test]
    fn malformed_json_is_refused() {
        assert!(matches!(
            Catalogue::from_json(r#"[{"id": "b1"}]"#),
            Err(CatalogueError::Parse(_))
        ));
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let error = Catalogue::load(Path::new("/nonexistent/books.json")).unwrap_err();
        assert!(matches!(error, CatalogueError::Read { .. }), "{error}");
        assert!(error.to_string().contains("/nonexistent/books.json"));
    }

    #[test]
    fn a_file_replaces_the_embedded_catalogue() {
        let path = std::env::temp_dir().join(format!("catalogue-{}.json", std::process::id()));
        std::fs::write(
            &path,
            r#"[{"id": "x1", "title": "Only", "author": "A", "genres": ["g"], "year": 1}]"#,
        )
        .expect("temp dir is writable");
        let catalogue = Catalogue::load_or_embedded(Some(&path));
        std::fs::remove_file(&path).expect("just written");
        assert_eq!(catalogue.expect("valid").books().len(), 1);
    }
}
