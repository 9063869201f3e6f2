//! Each backend served in-process on 127.0.0.1:0 through its library `run` function, called
//! through a generated client, checked for health and reflection, and stopped through its
//! shutdown future.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use backends::fraud::FraudConfig;
use backends::suggestions_service::SuggestionsConfig;
use backends::{fraud_service, suggestions_service, verification_service};
use bookstore_common::grpc;
use bookstore_proto::fraud_detection_client::FraudDetectionClient;
use bookstore_proto::suggestions_client::SuggestionsClient;
use bookstore_proto::transaction_verification_client::TransactionVerificationClient;
use bookstore_proto::{
    Address, CheckOrderRequest, CreditCard, FraudDecision, Item, ListBooksRequest, Order,
    SuggestBooksRequest, User, VerifyTransactionRequest, request_for_order,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
// tonic re-exports tokio-stream for generated code; the reflection call needs a request stream.
use tonic::codegen::tokio_stream::{self, StreamExt};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

/// How long a test waits for a server to stop before calling it stuck.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A backend running on a spawned task; [`Running::stop`] resolves its shutdown future and
/// waits for `run` to return.
struct Running {
    addr: SocketAddr,
    /// Sending (or dropping) resolves the server's shutdown future.
    stop: oneshot::Sender<()>,
    /// The server's `run`, which ends after `stop`.
    task: JoinHandle<backends::Result<()>>,
}

impl Running {
    async fn start<F, Fut>(run: F) -> Self
    where
        F: FnOnce(TcpListener, oneshot::Receiver<()>) -> Fut,
        Fut: Future<Output = backends::Result<()>> + Send + 'static,
    {
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("a socket address");
        let listener = grpc::bind(listen).await.expect("port 0 binds");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (stop, stopped) = oneshot::channel();
        // The listener is bound before the task starts, so clients can connect at once.
        let task = tokio::spawn(run(listener, stopped));
        Self { addr, stop, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn stop(self) {
        self.stop.send(()).expect("the server is still running");
        tokio::time::timeout(STOP_TIMEOUT, self.task)
            .await
            .expect("the server stops in time")
            .expect("the server task does not panic")
            .expect("the server stops cleanly");
    }
}

async fn shutdown(stopped: oneshot::Receiver<()>) {
    // A dropped sender stops the server too.
    let _ = stopped.await;
}

fn demo_order() -> Order {
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

/// A channel to `url`, for the clients generated without tonic's `connect`.
async fn channel(url: &str) -> Channel {
    Channel::from_shared(url.to_owned())
        .expect("a valid URL")
        .connect()
        .await
        .expect("connects")
}

async fn health_of(url: &str, service: &str) -> ServingStatus {
    let mut health = HealthClient::new(channel(url).await);
    let response = health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health answers")
        .into_inner();
    ServingStatus::try_from(response.status).expect("a known status")
}

async fn reflected_services(url: &str) -> Vec<String> {
    let mut client = ServerReflectionClient::new(channel(url).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let response = responses
        .next()
        .await
        .expect("one response")
        .expect("a good response");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => list
            .service
            .into_iter()
            .map(|service| service.name)
            .collect(),
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

#[tokio::test]
async fn verification_approves_the_demo_order_and_names_a_bad_card() {
    let running =
        Running::start(|listener, stopped| verification_service::run(listener, shutdown(stopped)))
            .await;
    let mut client = TransactionVerificationClient::connect(running.url())
        .await
        .expect("connects");

    let approved = client
        .verify_transaction(request_for_order(
            "demo",
            VerifyTransactionRequest {
                order: Some(demo_order()),
            },
        ))
        .await
        .expect("answers")
        .into_inner();
    assert!(approved.approved, "{approved:?}");
    assert!(approved.reasons.is_empty());

    let mut bad_card = demo_order();
    bad_card.credit_card.as_mut().expect("set above").number = "4532 0151 1283 0367".into();
    let refused = client
        .verify_transaction(VerifyTransactionRequest {
            order: Some(bad_card),
        })
        .await
        .expect("answers")
        .into_inner();
    assert!(!refused.approved);
    assert_eq!(refused.reasons.len(), 1, "{refused:?}");
    assert_eq!(refused.reasons[0].code, "card_luhn");
    assert_eq!(refused.reasons[0].field, "creditCard.number");

    let status = client
        .verify_transaction(VerifyTransactionRequest { order: None })
        .await
        .expect_err("an empty request is refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("order"), "{status:?}");

    assert_eq!(
        health_of(&running.url(), "bookstore.TransactionVerification").await,
        ServingStatus::Serving
    );
    assert_eq!(health_of(&running.url(), "").await, ServingStatus::Serving);
    drop(client);
    running.stop().await;
}

#[tokio::test]
async fn fraud_detection_approves_the_demo_order_and_rejects_a_fraud_card() {
    let running = Running::start(|listener, stopped| {
        fraud_service::run(listener, FraudConfig::default(), shutdown(stopped))
    })
    .await;
    let mut client = FraudDetectionClient::connect(running.url())
        .await
        .expect("connects");

    let approved = client
        .check_order(request_for_order(
            "demo",
            CheckOrderRequest {
                order: Some(demo_order()),
            },
        ))
        .await
        .expect("answers")
        .into_inner();
    assert_eq!(approved.decision(), FraudDecision::Approve, "{approved:?}");
    assert_eq!(approved.score, 0);
    assert!(approved.reasons.is_empty());

    let mut fraud = demo_order();
    fraud.credit_card.as_mut().expect("set above").number = "4100 0000 0000 0019".into();
    let rejected = client
        .check_order(CheckOrderRequest { order: Some(fraud) })
        .await
        .expect("answers")
        .into_inner();
    assert_eq!(rejected.decision(), FraudDecision::Reject);
    assert_eq!(rejected.score, 100);
    assert_eq!(rejected.reasons[0].code, "known_fraud_card");

    let status = client
        .check_order(CheckOrderRequest { order: None })
        .await
        .expect_err("an empty request is refused");
    assert_eq!(status.code(), Code::InvalidArgument);

    assert_eq!(
        health_of(&running.url(), "bookstore.FraudDetection").await,
        ServingStatus::Serving
    );
    drop(client);
    running.stop().await;
}

#[tokio::test]
async fn suggestions_suggest_tolkien_for_the_hobbit_and_list_the_catalogue() {
    let running = Running::start(|listener, stopped| {
        suggestions_service::run(listener, SuggestionsConfig::default(), shutdown(stopped))
    })
    .await;
    let mut client = SuggestionsClient::connect(running.url())
        .await
        .expect("connects");

    let suggested = client
        .suggest_books(request_for_order(
            "demo",
            SuggestBooksRequest {
                items: demo_order().items,
                limit: 0,
            },
        ))
        .await
        .expect("answers")
        .into_inner();
    assert_eq!(suggested.books.len(), 3, "{suggested:?}");
    for book in &suggested.books {
        assert_eq!(book.author, "J.R.R. Tolkien", "{book:?}");
        assert_ne!(book.title, "The Hobbit");
        assert!(!book.book_id.is_empty());
    }

    let listed = client
        .list_books(ListBooksRequest {})
        .await
        .expect("answers")
        .into_inner();
    assert!(listed.books.len() >= 120);
    let titles: Vec<String> = listed
        .books
        .iter()
        .map(|b| b.title.to_lowercase())
        .collect();
    assert!(titles.is_sorted(), "ListBooks answers in title order");

    assert_eq!(
        health_of(&running.url(), "bookstore.Suggestions").await,
        ServingStatus::Serving
    );
    drop(client);
    running.stop().await;
}

#[tokio::test]
async fn reflection_lists_the_service_and_health() {
    let running =
        Running::start(|listener, stopped| verification_service::run(listener, shutdown(stopped)))
            .await;
    let services = reflected_services(&running.url()).await;
    for expected in [
        "bookstore.TransactionVerification",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            services.iter().any(|service| service == expected),
            "{expected} missing from {services:?}"
        );
    }
    running.stop().await;
}

#[tokio::test]
async fn a_bad_catalogue_file_stops_the_suggestions_service_with_a_catalogue_error() {
    let running = Running::start(|listener, stopped| {
        let config = SuggestionsConfig {
            catalogue: Some("/nonexistent/books.json".into()),
        };
        suggestions_service::run(listener, config, shutdown(stopped))
    })
    .await;
    let result = tokio::time::timeout(STOP_TIMEOUT, running.task)
        .await
        .expect("fails at once")
        .expect("no panic");
    assert!(
        matches!(result, Err(backends::Error::Catalogue(_))),
        "{result:?}"
    );
}
