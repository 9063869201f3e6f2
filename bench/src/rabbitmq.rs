//! RabbitMQ's side of the comparison: persistent publishes to a quorum queue replicated on three
//! nodes, each confirmed by the broker (publisher confirms) before the next is sent, over AMQP
//! 0-9-1 with `lapin`.
//!
//! Sent as a RabbitMQ client sends durable messages: one connection, one channel per closed loop
//! (a channel in confirm mode numbers its publishes, so two loops on one channel would wait on
//! each other's confirms), one message per publish. The broker confirms a publish to a quorum
//! queue once a majority of the queue's members wrote it to their Ra write-ahead log and
//! fdatasynced it. The connection goes to the node the queue is declared through: with
//! RabbitMQ's default leader locator (`client-local`) that node leads the queue, as our client
//! and etcd's put go to the leader.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

use crate::driver::chain;
use crate::{BenchError, Operation};

/// AMQP delivery mode 2: persistent (a quorum queue keeps every message durable anyway).
const PERSISTENT: u8 = 2;
/// How many members the quorum queue has: one per node, as many as our cluster and etcd have.
pub const QUORUM_GROUP_SIZE: i64 = 3;

/// Why a publish did not end with the broker's confirmation.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("publish failed: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker refused the message (basic.nack)")]
    Nacked,
    #[error("the broker returned the message unrouted (is the queue there?)")]
    Returned,
    #[error("the channel is not in confirm mode: the broker confirmed nothing")]
    NotConfirmed,
}

/// Publishes to one quorum queue, one confirmed message at a time per channel.
pub struct RabbitPublish {
    /// Kept open for the run; the channels close with it when this is dropped.
    _connection: Connection,
    /// One per closed loop, each in confirm mode.
    channels: Vec<Channel>,
    queue: ShortString,
    payload: Vec<u8>,
}

/// The queue's declaration: durable, a quorum queue of [`QUORUM_GROUP_SIZE`] members.
pub fn quorum_queue_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    arguments.insert(
        "x-quorum-initial-group-size".into(),
        AMQPValue::LongLongInt(QUORUM_GROUP_SIZE),
    );
    arguments
}

impl RabbitPublish {
    /// Connects to the broker at `uri`, declares `queue` as a quorum queue (a queue that already
    /// exists with the same arguments is kept) and opens `channels` channels in confirm mode.
    pub async fn connect(
        uri: &str,
        queue: &str,
        channels: usize,
        payload_bytes: usize,
    ) -> Result<Self, BenchError> {
        let failed = |step: &str, error: lapin::Error| BenchError::Rabbitmq {
            step: step.to_owned(),
            uri: uri.to_owned(),
            reason: chain(&error),
        };
        let connection = Connection::connect(uri, ConnectionProperties::default())
            .await
            .map_err(|error| failed("connecting", error))?;
        let declaring = connection
            .create_channel()
            .await
            .map_err(|error| failed("opening a channel", error))?;
        declaring
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                quorum_queue_arguments(),
            )
            .await
            .map_err(|error| failed(&format!("declaring the quorum queue {queue}"), error))?;
        let mut opened = Vec::with_capacity(channels);
        for _ in 0..channels {
            let channel = connection
                .create_channel()
                .await
                .map_err(|error| failed("opening a channel", error))?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|error| failed("turning publisher confirms on", error))?;
            opened.push(channel);
        }
        Ok(Self {
            _connection: connection,
            channels: opened,
            queue: queue.into(),
            payload: vec![b'x'; payload_bytes],
        })
    }
}

impl Operation for RabbitPublish {
    type Error = PublishError;

    fn payload_bytes(&self) -> usize {
        self.payload.len()
    }

    async fn call(&self, client: usize, _sequence: u64) -> Result<(), PublishError> {
        // The driver runs exactly as many loops as channels were opened for.
        let channel = &self.channels[client % self.channels.len()];
        let confirmation = channel
            .basic_publish(
                ShortString::from(""),
                self.queue.clone(),
                // Mandatory: a message the default exchange cannot route comes back, rather than
                // being confirmed and dropped.
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &self.payload,
                BasicProperties::default().with_delivery_mode(PERSISTENT),
            )
            .await?
            .await?;
        confirmed(confirmation)
    }
}

/// A publish counts only when the broker acknowledged it and did not return it.
fn confirmed(confirmation: Confirmation) -> Result<(), PublishError> {
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => Err(PublishError::Returned),
        Confirmation::Nack(_) => Err(PublishError::Nacked),
        Confirmation::NotRequested => Err(PublishError::NotConfirmed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_acknowledgement_counts() {
        assert!(confirmed(Confirmation::Ack(None)).is_ok());
        assert!(matches!(
            confirmed(Confirmation::Nack(None)),
            Err(PublishError::Nacked)
        ));
        assert!(matches!(
            confirmed(Confirmation::NotRequested),
            Err(PublishError::NotConfirmed)
        ));
    }

    #[test]
    fn the_queue_is_a_quorum_queue_of_three() {
        let arguments = quorum_queue_arguments();
        let inner = arguments.inner();
        assert_eq!(
            inner.get(&ShortString::from("x-queue-type")),
            Some(&AMQPValue::LongString("quorum".into()))
        );
        assert_eq!(
            inner.get(&ShortString::from("x-quorum-initial-group-size")),
            Some(&AMQPValue::LongLongInt(3))
        );
    }
}
