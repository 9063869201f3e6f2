//! The fraud-detection gRPC service: translates `CheckOrder` calls for the [`fraud`](crate::fraud)
//! rules and logs each request and answer (never the card number beyond its last four digits).

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use bookstore_proto::fraud_detection_server::{FraudDetection, FraudDetectionServer, SERVICE_NAME};
use bookstore_proto::{CheckOrderRequest, CheckOrderResponse, order_id_of};
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

use crate::fraud::{FraudConfig, FraudEngine};
use bookstore_common::grpc;

use crate::Result;
use crate::incoming::received_order;

/// The service name the fraud-detection binary logs under.
pub const NAME: &str = "fraud-detection";

/// Answers `CheckOrder` from one shared [`FraudEngine`].
#[derive(Debug)]
pub struct FraudService {
    /// The rules and their velocity table. Locked only for the synchronous `check`, never
    /// across an await.
    engine: Mutex<FraudEngine>,
}

impl FraudService {
    pub fn new(config: FraudConfig) -> Self {
        Self {
            engine: Mutex::new(FraudEngine::new(config)),
        }
    }
}

#[tonic::async_trait]
impl FraudDetection for FraudService {
    async fn check_order(
        &self,
        request: Request<CheckOrderRequest>,
    ) -> Result<Response<CheckOrderResponse>, Status> {
        let order_id = order_id_of(&request).to_owned();
        let order = received_order(
            "fraud check",
            "CheckOrderRequest",
            &order_id,
            request.into_inner().order,
        )?;
        let assessment = self
            .engine
            .lock()
            // A panic inside `check` can at worst leave one card's history short; the rules
            // are still sound, so keep serving rather than failing every later call.
            .unwrap_or_else(PoisonError::into_inner)
            .check(&order, Instant::now());
        let codes: Vec<&str> = assessment.reasons.iter().map(|r| r.code.as_str()).collect();
        tracing::info!(
            order_id,
            decision = assessment.decision.as_str_name(),
            score = assessment.score,
            reasons = %bookstore_proto::code_counts(codes.iter().copied()),
            "fraud check answered"
        );
        metrics::counter!(
            "bookstore_fraud_decisions_total",
            "decision" => assessment.decision.as_str_name(),
        )
        .increment(1);
        for code in codes {
            metrics::counter!("bookstore_fraud_reasons_total", "reason" => code.to_owned())
                .increment(1);
        }
        Ok(Response::new(CheckOrderResponse {
            decision: assessment.decision.into(),
            score: assessment.score,
            reasons: assessment.reasons,
        }))
    }
}

/// Serves fraud detection on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: FraudConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    tracing::info!(
        max_orders = config.max_orders,
        window_secs = config.window.as_secs(),
        max_tracked_cards = config.max_tracked_cards,
        "fraud rules configured"
    );
    let service = FraudDetectionServer::new(FraudService::new(config));
    Ok(grpc::serve(listener, SERVICE_NAME, Routes::new(service), shutdown).await?)
}
