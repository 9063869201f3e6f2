//! Proves that the orchestrator asks the three backends at the same time, without timing: each
//! fake backend answers only once all three requests have arrived, so calls made one after the
//! other would never be answered and the checkout would fail.

use std::sync::Arc;

use bookstore_proto::{
    Book, CheckOrderRequest, CheckOrderResponse, FraudDecision, ListBooksRequest,
    ListBooksResponse, SuggestBooksRequest, SuggestBooksResponse, VerifyTransactionRequest,
    VerifyTransactionResponse,
    fraud_detection_server::{FraudDetection, FraudDetectionServer},
    suggestions_server::{Suggestions, SuggestionsServer},
    transaction_verification_server::{TransactionVerification, TransactionVerificationServer},
};
use clap::Parser;
use orchestrator::{Config, backends::Backends, checkout::OrderDecision};
use tokio::{net::TcpListener, sync::Barrier};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request as GrpcRequest, Response, Status};

/// The three fake backends share one barrier of three.
#[derive(Clone)]
struct Rendezvous(Arc<Barrier>);

#[tonic::async_trait]
impl TransactionVerification for Rendezvous {
    async fn verify_transaction(
        &self,
        _: GrpcRequest<VerifyTransactionRequest>,
    ) -> Result<Response<VerifyTransactionResponse>, Status> {
        self.0.wait().await;
        Ok(Response::new(VerifyTransactionResponse {
            approved: true,
            reasons: vec![],
        }))
    }
}

#[tonic::async_trait]
impl FraudDetection for Rendezvous {
    async fn check_order(
        &self,
        _: GrpcRequest<CheckOrderRequest>,
    ) -> Result<Response<CheckOrderResponse>, Status> {
        self.0.wait().await;
        Ok(Response::new(CheckOrderResponse {
            decision: FraudDecision::Approve as i32,
            score: 0,
            reasons: vec![],
        }))
    }
}

#[tonic::async_trait]
impl Suggestions for Rendezvous {
    async fn suggest_books(
        &self,
        _: GrpcRequest<SuggestBooksRequest>,
    ) -> Result<Response<SuggestBooksResponse>, Status> {
        self.0.wait().await;
        let book = Book {
            book_id: "b1".into(),
            title: "Emma".into(),
            author: "Jane Austen".into(),
            ..Book::default()
        };
        Ok(Response::new(SuggestBooksResponse { books: vec![book] }))
    }

    async fn list_books(
        &self,
        _: GrpcRequest<ListBooksRequest>,
    ) -> Result<Response<ListBooksResponse>, Status> {
        Err(Status::unimplemented("not needed here"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_backend_calls_overlap() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let fakes = Rendezvous(Arc::new(Barrier::new(3)));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TransactionVerificationServer::new(fakes.clone()))
            .add_service(FraudDetectionServer::new(fakes.clone()))
            .add_service(SuggestionsServer::new(fakes))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            }),
    );

    let url = format!("http://{addr}");
    // Long enough that calls made in turn would time out rather than pass by luck.
    let config = Config::parse_from([
        "orchestrator".to_owned(),
        format!("--fraud-detection-addr={url}"),
        format!("--transaction-verification-addr={url}"),
        format!("--suggestions-addr={url}"),
        "--backend-timeout-ms=10000".to_owned(),
    ]);
    let order = bookstore_proto::Order {
        order_id: "overlap".into(),
        items: vec![bookstore_proto::Item {
            name: "The Hobbit".into(),
            quantity: 1,
        }],
        ..bookstore_proto::Order::default()
    };
    let backends = Backends::connect_lazy(&config).expect("valid addresses");
    let answer = backends
        .assess(order)
        .await
        .decide("overlap".into())
        .expect("all three answered");
    assert_eq!(answer.status, OrderDecision::Approved);
    assert_eq!(answer.suggested_books[0].title, "Emma");

    let _ = stop.send(());
    server.await.expect("server task").expect("server");
}
