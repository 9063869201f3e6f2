//! The transaction-verification gRPC service: translates `VerifyTransaction` calls for the
//! [`verification`](crate::verification) rules, with today's date from the local clock, and logs
//! each request and answer (never the card number beyond its last four digits, nor the CVV).

use std::future::Future;

use bookstore_proto::transaction_verification_server::{
    SERVICE_NAME, TransactionVerification, TransactionVerificationServer,
};
use bookstore_proto::{VerifyTransactionRequest, VerifyTransactionResponse, order_id_of};
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

use crate::verification::verify;
use bookstore_common::grpc;

use crate::Result;
use crate::incoming::received_order;

/// The service name the transaction-verification binary logs under.
pub const NAME: &str = "transaction-verification";

/// Answers `VerifyTransaction`; it keeps no state.
#[derive(Debug, Default)]
pub struct VerificationService;

#[tonic::async_trait]
impl TransactionVerification for VerificationService {
    async fn verify_transaction(
        &self,
        request: Request<VerifyTransactionRequest>,
    ) -> Result<Response<VerifyTransactionResponse>, Status> {
        let order_id = order_id_of(&request).to_owned();
        let order = received_order(
            "verification",
            "VerifyTransactionRequest",
            &order_id,
            request.into_inner().order,
        )?;
        let today = chrono::Local::now().date_naive();
        let reasons = verify(&order, today);
        let codes: Vec<&str> = reasons.iter().map(|r| r.code.as_str()).collect();
        let approved = reasons.is_empty();
        tracing::info!(
            order_id,
            approved,
            reasons = %bookstore_proto::code_counts(codes.iter().copied()),
            "verification answered"
        );
        metrics::counter!(
            "bookstore_verification_decisions_total",
            "decision" => if approved { "approved" } else { "rejected" },
        )
        .increment(1);
        for code in &codes {
            metrics::counter!("bookstore_verification_reasons_total", "reason" => code.to_string())
                .increment(1);
        }
        Ok(Response::new(VerifyTransactionResponse {
            approved,
            reasons,
        }))
    }
}

/// Serves transaction verification on `listener` until `shutdown` resolves.
pub async fn run(listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<()> {
    let service = TransactionVerificationServer::new(VerificationService);
    Ok(grpc::serve(listener, SERVICE_NAME, Routes::new(service), shutdown).await?)
}
