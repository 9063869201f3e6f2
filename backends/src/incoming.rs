//! What the fraud and verification services do alike with an incoming request: take the order
//! out of it, refuse a request without one, and log its arrival with the order id and the card
//! masked to its last four digits.

use bookstore_proto::{Order, mask_card_number};
use tonic::Status;

/// The order a request carries. `service` names the service in the log line (`"{service}
/// received"`), `request_type` the protobuf message in the refusal.
pub fn received_order(
    service: &str,
    request_type: &str,
    order_id: &str,
    order: Option<Order>,
) -> Result<Order, Status> {
    let Some(order) = order else {
        tracing::warn!(order_id, "{service} refused: the request carries no order");
        return Err(Status::invalid_argument(format!(
            "{request_type}.order is missing: send the order to check"
        )));
    };
    let card = order
        .credit_card
        .as_ref()
        .map(|card| mask_card_number(&card.number))
        .unwrap_or_default();
    tracing::info!(
        order_id,
        card,
        items = order.items.len(),
        "{service} received"
    );
    Ok(order)
}
