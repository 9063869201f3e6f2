//! Every message of `proto/` decoded from bytes a peer or client could send: arbitrary bytes, and
//! well-formed protobuf records with arbitrary field numbers, wire types and payloads (which is
//! what reaches past the framing into the fields). Decoding gives a message or an error, never a
//! panic, and a message that decodes re-encodes to bytes that decode to the same message.

use bookstore_proto::etcdserverpb;
use bookstore_proto::*;
use proptest::prelude::*;
use prost::Message;

/// One protobuf record: a field number (a few past the highest any message uses) and a value of
/// one of the wire types.
fn record(depth: u32) -> BoxedStrategy<Vec<u8>> {
    let varint = (1u32..20, any::<u64>()).prop_map(|(field, value)| {
        let mut bytes = Vec::new();
        prost::encoding::encode_key(field, prost::encoding::WireType::Varint, &mut bytes);
        prost::encoding::encode_varint(value, &mut bytes);
        bytes
    });
    let fixed = (1u32..20, any::<bool>(), any::<u64>()).prop_map(|(field, wide, value)| {
        let mut bytes = Vec::new();
        if wide {
            prost::encoding::encode_key(field, prost::encoding::WireType::SixtyFourBit, &mut bytes);
            bytes.extend_from_slice(&value.to_le_bytes());
        } else {
            prost::encoding::encode_key(field, prost::encoding::WireType::ThirtyTwoBit, &mut bytes);
            bytes.extend_from_slice(&(value as u32).to_le_bytes());
        }
        bytes
    });
    let text =
        (1u32..20, "\\PC{0,12}").prop_map(|(field, text)| length_delimited(field, text.as_bytes()));
    let raw = (1u32..20, proptest::collection::vec(any::<u8>(), 0..16))
        .prop_map(|(field, payload)| length_delimited(field, &payload));
    if depth == 0 {
        return prop_oneof![varint, fixed, text, raw].boxed();
    }
    // A nested message: records inside a length-delimited field.
    let nested =
        (1u32..20, message(depth - 1)).prop_map(|(field, inner)| length_delimited(field, &inner));
    prop_oneof![varint, fixed, text, raw, nested].boxed()
}

fn length_delimited(field: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    prost::encoding::encode_key(
        field,
        prost::encoding::WireType::LengthDelimited,
        &mut bytes,
    );
    prost::encoding::encode_varint(payload.len() as u64, &mut bytes);
    bytes.extend_from_slice(payload);
    bytes
}

fn message(depth: u32) -> BoxedStrategy<Vec<u8>> {
    proptest::collection::vec(record(depth), 0..8)
        .prop_map(|records| records.concat())
        .boxed()
}

/// Arbitrary bytes, records, and records cut short.
fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..128),
        message(2),
        (message(2), any::<prop::sample::Index>()).prop_map(|(bytes, cut)| {
            let at = cut.index(bytes.len() + 1);
            bytes[..at].to_vec()
        }),
    ]
}

/// Decoding `bytes` as an `M` errs or gives a message that survives a round trip; returns whether
/// it decoded.
fn decodes_cleanly<M: Message + Default + PartialEq + std::fmt::Debug>(
    bytes: &[u8],
) -> Result<bool, TestCaseError> {
    let Ok(decoded) = M::decode(bytes) else {
        return Ok(false);
    };
    let encoded = decoded.encode_to_vec();
    prop_assert_eq!(encoded.len(), decoded.encoded_len());
    prop_assert_eq!(M::decode(encoded.as_slice()).expect("re-decodes"), decoded);
    Ok(true)
}

macro_rules! every_message {
    ($bytes:expr, $($message:ty),+ $(,)?) => {{
        let mut decoded = 0usize;
        $( decoded += usize::from(decodes_cleanly::<$message>($bytes)?); )+
        decoded
    }};
}

fn decode_as_every_message(bytes: &[u8]) -> Result<usize, TestCaseError> {
    Ok(every_message!(
        bytes,
        // order.proto and the backends' protos
        Order,
        User,
        CreditCard,
        Item,
        Address,
        Device,
        Browser,
        Reason,
        CheckOrderRequest,
        CheckOrderResponse,
        VerifyTransactionRequest,
        VerifyTransactionResponse,
        SuggestBooksRequest,
        SuggestBooksResponse,
        ListBooksRequest,
        ListBooksResponse,
        Book,
        // order_queue.proto
        QueueItem,
        QueuedOrder,
        EnqueueRequest,
        EnqueueResponse,
        EnqueueBatchRequest,
        EnqueueBatchResponse,
        EnqueueResult,
        RequestDigest,
        SuggestedBook,
        RejectionReason,
        Decision,
        Approval,
        Rejection,
        DecideRequest,
        DecideResponse,
        DecideResult,
        Decided,
        CampaignRequest,
        CampaignResponse,
        RenewLeaseRequest,
        ResignRequest,
        LeaseResponse,
        DequeueRequest,
        DequeueResponse,
        ExecutionRecord,
        RecordExecutionRequest,
        RecordExecutionResponse,
        AcknowledgeRequest,
        AcknowledgeResponse,
        GetOrderRequest,
        GetOrderResponse,
        OrderState,
        CheckoutRecord,
        ListQueueRequest,
        ListQueueResponse,
        ClusterStatusRequest,
        ClusterMember,
        AddNodeRequest,
        RemoveNodeRequest,
        MembershipResponse,
        ClusterStatusResponse,
        // raft.proto
        RaftPayload,
        // etcd_kv.proto
        etcdserverpb::ResponseHeader,
        etcdserverpb::PutRequest,
        etcdserverpb::PutResponse,
        etcdserverpb::StatusRequest,
        etcdserverpb::StatusResponse,
    ))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_message_decodes_or_fails_cleanly(bytes in wire_bytes()) {
        decode_as_every_message(&bytes)?;
    }
}

/// Every message type is checked (empty input is a valid encoding of each), and every cut of a
/// real order decodes or fails cleanly as each of them.
#[test]
fn well_formed_records_decode_as_messages() {
    assert_eq!(decode_as_every_message(&[]).expect("checks hold"), 64);
    let order = Order {
        user: Some(User {
            name: "Ada".into(),
            contact: "ada@example.com".into(),
        }),
        items: vec![Item {
            name: "Dune".into(),
            quantity: 2,
        }],
        ..Order::default()
    };
    let bytes = order.encode_to_vec();
    assert_eq!(Order::decode(bytes.as_slice()).expect("decodes"), order);
    for cut in 0..bytes.len() {
        decode_as_every_message(&bytes[..cut]).expect("checks hold");
    }
}

/// A length prefix far past the end is an error; nesting deeper than prost's recursion limit is
/// handled like any other input.
#[test]
fn huge_lengths_and_deep_nesting_are_errors() {
    let mut huge = Vec::new();
    prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut huge);
    prost::encoding::encode_varint(1 << 60, &mut huge);
    huge.extend_from_slice(b"Dune");
    assert!(Order::decode(huge.as_slice()).is_err());
    assert!(ListQueueResponse::decode(huge.as_slice()).is_err());

    let mut nested = Vec::new();
    for _ in 0..200 {
        nested = length_delimited(1, &nested);
    }
    decode_as_every_message(&nested).expect("checks hold");
}
