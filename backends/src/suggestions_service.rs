//! The suggestions gRPC service: translates `SuggestBooks` and `ListBooks` calls for the
//! [`suggestions`](crate::suggestions) rules over one [`Catalogue`], and logs each request and
//! answer.

use std::future::Future;
use std::path::PathBuf;

use bookstore_proto::suggestions_server::{SERVICE_NAME, Suggestions, SuggestionsServer};
use bookstore_proto::{
    Book, ListBooksRequest, ListBooksResponse, SuggestBooksRequest, SuggestBooksResponse,
    order_id_of,
};
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

use crate::catalogue::Catalogue;
use crate::suggestions::suggest;
use bookstore_common::grpc;

use crate::Result;

/// The service name the suggestions binary logs under.
pub const NAME: &str = "suggestions";

/// Where the suggestions service takes its catalogue from.
#[derive(Clone, Debug, Default)]
pub struct SuggestionsConfig {
    /// A catalogue file to use instead of the embedded one.
    pub catalogue: Option<PathBuf>,
}

/// Answers `SuggestBooks` and `ListBooks` from a catalogue fixed at start.
#[derive(Debug)]
pub struct SuggestionsService {
    catalogue: Catalogue,
}

impl SuggestionsService {
    pub fn new(catalogue: Catalogue) -> Self {
        Self { catalogue }
    }
}

#[tonic::async_trait]
impl Suggestions for SuggestionsService {
    async fn suggest_books(
        &self,
        request: Request<SuggestBooksRequest>,
    ) -> Result<Response<SuggestBooksResponse>, Status> {
        let order_id = order_id_of(&request).to_owned();
        let SuggestBooksRequest { items, limit } = request.into_inner();
        tracing::info!(order_id, items = items.len(), limit, "suggestions received");
        let books: Vec<Book> = suggest(&self.catalogue, &items, limit)
            .into_iter()
            .map(Book::from)
            .collect();
        let ids: Vec<&str> = books.iter().map(|book| book.book_id.as_str()).collect();
        tracing::info!(order_id, books = %ids.join(","), "suggestions answered");
        metrics::histogram!("bookstore_suggestions_books").record(ids.len() as f64);
        Ok(Response::new(SuggestBooksResponse { books }))
    }

    async fn list_books(
        &self,
        request: Request<ListBooksRequest>,
    ) -> Result<Response<ListBooksResponse>, Status> {
        let order_id = order_id_of(&request);
        let books: Vec<Book> = self.catalogue.books().iter().map(Book::from).collect();
        tracing::info!(order_id, books = books.len(), "catalogue listed");
        Ok(Response::new(ListBooksResponse { books }))
    }
}

/// Loads the catalogue and serves suggestions on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: SuggestionsConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let catalogue = Catalogue::load_or_embedded(config.catalogue.as_deref())?;
    let source = config
        .catalogue
        .as_ref()
        .map_or_else(|| "embedded".to_owned(), |path| path.display().to_string());
    tracing::info!(books = catalogue.books().len(), source, "catalogue loaded");
    let service = SuggestionsServer::new(SuggestionsService::new(catalogue));
    Ok(grpc::serve(listener, SERVICE_NAME, Routes::new(service), shutdown).await?)
}
