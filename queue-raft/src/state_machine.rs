//! The replicated order queue itself, as a pure state machine: [`QueueState::apply`] takes a
//! [`Command`] and returns a [`CommandResponse`], with no I/O, no clock and no randomness.
//!
//! Invariants it keeps (checked by the tests at the bottom):
//! - Replicas applying the same commands in the same order end equal (`PartialEq`), and so do their
//!   bincode encodings: every collection is ordered (`OrdMap`, encoded in key order like a
//!   `BTreeMap`), and time comes only from the [`Stamp`] that the leader puts in each command.
//! - Cloning the state is O(1): the maps are persistent (`imbl::OrdMap`, shared structure, copy
//!   on write), so a snapshot is taken of a clone while commands go on being applied.
//! - Orders leave the ready queue by their [`DequeueKey`], smallest first: priority (sum of
//!   quantities) with aging, ties in the order their enqueues were applied (`sequence`). See
//!   "Priority with aging" below.
//! - Every order id is recorded once, by the first of [`Command::Enqueue`] or [`Command::Decide`]
//!   that names it, and is in exactly one of: ready queue, executing (at most one order, under the
//!   current lease), executed, rejected. Executed and rejected orders never change again.
//! - Fencing tokens grow with each lease grant and are never reused, and a campaign is answered
//!   with a new token or a refusal, never with the token of a lease in force. Only the current,
//!   unexpired lease's token, presented by its holder (the executor id *and* the incarnation of
//!   its process), can renew, resign, dequeue, record an execution or acknowledge.
//! - When a lease ends (expiry or resignation) the order executing under it goes back to the ready
//!   queue with its original key, so it is the first to be dequeued again.
//!
//! # Priority with aging
//!
//! Strict priority by books would let a steady stream of large orders keep a one-book order
//! waiting for ever. So an order's place is `enqueued_at_queue_ms − AGING_MS_PER_BOOK ×
//! priority`, smallest first, then `sequence`: one more book is worth [`AGING_MS_PER_BOOK`]
//! (500 ms) of waiting. Among orders enqueued at the same time more books still go first, and an
//! order of `p` books is never passed by an order of `q` books enqueued more than
//! `500 ms × (q − p)` after it (with checkout's limit of 50 books, never by one enqueued 24.5 s
//! or more after it). The key is fixed at enqueue, so the ready queue stays an ordered map
//! (O(log n) per enqueue and dequeue) and nothing is re-sorted as time passes.
//!
//! The time is the state's own ([`QueueState::queue_time_ms`]): the leaders' monotonic readings
//! that the state applied, summed over every timeline, so that it never goes back, is the same on
//! every replica, and is moved by no node's wall clock. A change of leader adds only the new
//! leader's reading at its first applied stamp; the election's own gap is not counted, which only
//! makes orders waiting across it age a little slower.
//!
//! # The record of an order
//!
//! [`OrderRecord`] is the one record of an order that everyone reads: the orchestrators (a
//! checkout retried with its idempotency key, `GET /orders/{id}`) and the executors. Three parts
//! of it are each written once and never changed:
//!
//! - The checkout decision ([`Command::Decide`]). An order placed through the orchestrator is
//!   recorded with the decision taken on it, approved (queued, with the books suggested) or
//!   rejected (terminal, with its reasons: [`OrderStatus::Rejected`]), and with a
//!   [`RequestDigest`] of the request it came from. The first decision for an order id is final:
//!   a later `Decide` for the id changes nothing and is answered [`CommandResponse::AlreadyDecided`],
//!   so two orchestrators deciding the same retried checkout at once agree on the one that
//!   committed first, and a retry with another body is told apart by its digest. What is kept is
//!   bounded ([`MAX_REASONS`], [`MAX_SUGGESTIONS`], [`MAX_TEXT_BYTES`]; the queue service refuses
//!   more), and a rejected order keeps no order lines: it is never executed.
//! - The execution record ([`Command::RecordExecution`], [`Execution`]). Executing an order is
//!   done once: the holder of the lease the order executes under records the execution, fenced
//!   by its token, before it reports the execution done; a record is written once per order, so a
//!   paused or deposed holder cannot add a second one. An order whose holder lost its lease after
//!   recording goes back to the queue like any other, and the next holder, which finds the record
//!   in its dequeue's answer, only acknowledges it. [`Command::Acknowledge`] is refused until the
//!   record exists, so every executed order has exactly one. (This record is where the
//!   two-phase commit of stock and payment will keep its decision and outcome: written once per
//!   order, fenced by the token, read by the next holder to finish what an earlier one decided.)
//! - The acknowledgement ([`OrderStatus::Executed`]): the order is done and leaves the queue.
//!
//! # Time, and why no two executors hold the lease at once
//!
//! Lease time is never a wall clock. Each command carries a [`Stamp`]: a reading of the monotonic
//! clock of the leader that proposed it, in milliseconds since that leader began leading, with the
//! [`Timeline`] it was read on (the term, and the run of the process: a node restarted inside its
//! term, which openraft allows, has a new clock). Within one timeline the state's time is the
//! largest reading applied. A stamp of a later timeline starts a new one; a stamp of an earlier
//! timeline leaves the time alone. Every lease expiry is counted in the current timeline, and when
//! a new timeline begins, a lease held over from the old one is honoured for its full TTL from the
//! new leader's start: how far the old clock had run says nothing about the new one.
//!
//! The executor's side (`executor::election::ConfirmedLease`): it relies on its lease until
//! `asked + 9/10 TTL` on its own monotonic clock, `asked` being the moment it sent the campaign
//! or renewal that the cluster confirmed, and it stops acting (no execution, no acknowledgement)
//! after that. Why another executor cannot be granted the lease before then:
//! - A stamp is read when the leader handles the request, after the executor sent it; and the
//!   expiry the grant sets is counted from the state's time, which is that reading or a later one
//!   of the same clock. Only a stamp of the current timeline may set an expiry: a campaign or
//!   renewal stamped on an earlier timeline (held up in the leader's queue across an election) is
//!   refused with [`CommandResponse::StaleStamp`], since the current time may have been read
//!   before that executor asked.
//! - Within a timeline, a later grant needs a reading at least TTL past the one the expiry was
//!   counted from: at least TTL of the leader's clock after the executor asked.
//! - Across timelines: an entry is committed only once a majority stored it, and every node of
//!   that majority stored it before it voted for any later leader, who therefore began leading,
//!   and began its clock (lazily, at its first reading as leader, see `crate::clock`), after the
//!   stamp was read. The new leader honours the lease for a full TTL of its own clock from there.
//! - The margin is the tenth of the TTL that the executor leaves unused. It covers the difference
//!   in *rate* between the executor's monotonic clock and the leaders' (over one TTL; Linux's
//!   `CLOCK_MONOTONIC` is slewed by NTP by at most 0.05%, so a tenth allows rates apart by up to
//!   about 10%) and the rounding of readings to whole milliseconds. The clocks' *values* are never
//!   compared across machines, so skews and jumps of the wall clocks do not matter; a machine
//!   whose monotonic clock stops while it is suspended is outside this margin.
//!
//! Only a grant starts a lease, and a grant needs no lease in force: a campaign while one is in
//! force is refused whoever asks, its own holder included ([`CommandResponse::LeaseHeld`]). A
//! holder is an executor id with the incarnation of its process (drawn at random at each start),
//! so a restarted executor, or a second process started with the same id, is another holder: it
//! can neither resume nor use the lease of the earlier run, whatever it read of the lease. What
//! that costs: an executor whose grant was committed but whose answer was lost waits for that
//! lease to expire before it is granted another.
//!
//! What this costs: after every change of leader, a lease whose holder died ends a full TTL after
//! the new leader's start rather than a TTL after the last renewal.
//!
//! Wall-clock times (`enqueued_at_ms`, `since_ms`, `at_ms`, a lease's `expires_at_ms`) are only
//! shown to people: the state's time on the wall clock the current timeline's leader had when it
//! began, plus the monotonic time since. Nothing is decided on them.
//!
//! # Format
//!
//! Every [`Stamp`] and every [`QueueState`] is encoded beginning with a format tag, changed
//! whenever the encoding of commands or of the state changes. Log entries and snapshots written by
//! an older queue-node carry another tag (or, before tags existed, a length where the tag is that
//! cannot equal it), so they fail to decode, naming the cause, rather than being misread: a data
//! directory of an older format is not readable and must be started afresh.

use imbl::OrdMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The format tag's value. Above any length an older entry or snapshot has where the tag is (a
/// string's or the order map's), so older data never reads as tagged. Tag `0xC10C_0002` was the
/// format before checkout decisions, execution records and lease holders' incarnations;
/// `0xC10C_0003` the format before priority with aging (the queue's own time, each order's
/// enqueue time on it, and the ready queue keyed by [`DequeueKey`]).
const FORMAT_TAG: u32 = 0xC10C_0004;

/// How many milliseconds of waiting one more book is worth in the dequeue order (see the module's
/// "Priority with aging").
pub const AGING_MS_PER_BOOK: u64 = 500;

/// The most rejection reasons a rejected order keeps.
pub const MAX_REASONS: usize = 16;
/// The most suggested books an approved order keeps.
pub const MAX_SUGGESTIONS: usize = 8;
/// The longest text (in bytes) of any field of a kept reason or suggested book.
pub const MAX_TEXT_BYTES: usize = 256;

/// `text` cut to at most [`MAX_TEXT_BYTES`] bytes at a character boundary, as a record may keep it.
pub fn bounded_text(text: &str) -> String {
    if text.len() <= MAX_TEXT_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Written first in every [`Stamp`] and [`QueueState`]; decoding checks it (see the module's
/// "Format").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct FormatTag;

impl Serialize for FormatTag {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(FORMAT_TAG)
    }
}

impl<'de> Deserialize<'de> for FormatTag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let tag = u32::deserialize(deserializer)?;
        if tag != FORMAT_TAG {
            return Err(serde::de::Error::custom(format!(
                "not the queue's current format (tag {tag:#x}, expected {FORMAT_TAG:#x}): data \
                 written by an older queue-node is not readable; start the node on an empty data \
                 directory"
            )));
        }
        Ok(FormatTag)
    }
}
/// One run of one node leading one Raft term: the monotonic clock a [`Stamp`] was read from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    /// The term the node led.
    pub term: u64,
    /// Drawn at random by each run of the node process: a node that restarts and resumes leading
    /// the same term has a clock that starts again from 0.
    pub incarnation: u64,
    /// The node's wall clock when it began, in milliseconds since the Unix epoch; only to show
    /// times to people.
    pub began_at_ms: u64,
}

/// When a command was proposed: a reading of the proposing leader's monotonic clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    format: FormatTag,
    pub timeline: Timeline,
    /// Milliseconds since the timeline began, on the leader's monotonic clock.
    pub elapsed_ms: u64,
}

impl Stamp {
    pub fn new(timeline: Timeline, elapsed_ms: u64) -> Self {
        Self {
            format: FormatTag,
            timeline,
            elapsed_ms,
        }
    }

    /// This reading on the wall clock the timeline's leader had when it began; only for showing.
    pub fn shown_ms(&self) -> u64 {
        self.timeline.began_at_ms.saturating_add(self.elapsed_ms)
    }
}

/// Where a stamp stands against the state's current timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Read on the current timeline.
    Current,
    /// Read on a later one: a later term, or the same term led by a restarted process.
    Newer,
    /// Read on an earlier term's timeline.
    Older,
}

/// One line of an order: a book and how many copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    pub title: String,
    pub quantity: u32,
}

/// An approved order as the queue keeps it: what to ship and to whom, never card data.
///
/// Its fields are private so that `priority` is always the sum of the items' quantities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedOrder {
    order_id: String,
    customer: String,
    items: Vec<OrderItem>,
    priority: u32,
}

impl QueuedOrder {
    /// Builds an order whose priority is the total number of books (saturating at `u32::MAX`).
    pub fn new(
        order_id: impl Into<String>,
        customer: impl Into<String>,
        items: Vec<OrderItem>,
    ) -> Self {
        let priority = items
            .iter()
            .fold(0u32, |total, item| total.saturating_add(item.quantity));
        Self {
            order_id: order_id.into(),
            customer: customer.into(),
            items,
            priority,
        }
    }

    pub fn order_id(&self) -> &str {
        &self.order_id
    }

    pub fn customer(&self) -> &str {
        &self.customer
    }

    pub fn items(&self) -> &[OrderItem] {
        &self.items
    }

    /// The sum of the items' quantities: more books are executed first.
    pub fn priority(&self) -> u32 {
        self.priority
    }
}

/// Who holds (or asks for) the lease: an executor, and the run of its process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub executor_id: String,
    /// Drawn at random by each run of the executor process, so that a restarted executor, or two
    /// processes given one id by mistake, are never the same holder.
    pub incarnation: u64,
}

impl Holder {
    pub fn new(executor_id: impl Into<String>, incarnation: u64) -> Self {
        Self {
            executor_id: executor_id.into(),
            incarnation,
        }
    }
}

/// One rule that rejected an order at checkout, as the orchestrator answered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionReason {
    /// The backend whose rule it is.
    pub service: String,
    pub code: String,
    /// The request field it is about, if any.
    pub field: String,
    pub message: String,
}

/// A book suggested with an approved order, as the orchestrator answered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuggestedBook {
    pub book_id: String,
    pub title: String,
    pub author: String,
}

/// A digest of the checkout request an order was decided on, so that a retry with the same
/// idempotency key and another body is told apart. It never lets a reader of the replicated
/// state recover card data: `body` digests the request with the card's number cut to its last
/// four digits and the CVV left out; the card's number and CVV enter only `card`, an HMAC under a
/// secret that only the orchestrators hold (the orchestrator computes both; see
/// `orchestrator::idempotency`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestDigest {
    /// SHA-256 of the request without the card's secrets.
    pub body: [u8; 32],
    /// HMAC-SHA256 of the card's number and CVV; `None` when the orchestrator had no secret.
    pub card: Option<[u8; 32]>,
}

impl RequestDigest {
    /// Whether a request with digest `other` is the request this one was taken of: the same
    /// body, and the same card unless either digest was taken without the secret (then only the
    /// body is compared; the card's last four digits are part of it).
    pub fn matches(&self, other: &RequestDigest) -> bool {
        let same_card = match (&self.card, &other.card) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => true,
        };
        self.body == other.body && same_card
    }
}

/// What the orchestrator decided at checkout, kept with the order so that a retry with the same
/// key is answered alike by any orchestrator, without asking the backends again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutRecord {
    /// The request the decision was taken on.
    pub request: RequestDigest,
    /// The books suggested with an approval; none with a rejection.
    pub suggestions: Vec<SuggestedBook>,
}

/// The orchestrator's verdict on a checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Approved { suggestions: Vec<SuggestedBook> },
    Rejected { reasons: Vec<RejectionReason> },
}

/// A checkout decision to record: the order (for a rejection, its lines are not kept), the
/// digest of its request, and the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub order: QueuedOrder,
    pub request: RequestDigest,
    pub verdict: Verdict,
}

/// The record that an order was executed: written once per order, under the lease it executed
/// under, before the execution is reported done (see the module's "The record of an order").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub executor_id: String,
    pub incarnation: u64,
    /// The fencing token of the lease it was recorded under.
    pub token: u64,
    /// Shown time of the record.
    pub at_ms: u64,
}

/// Where an order is in its life. The times are shown times (see the module's doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Waiting in the ready queue.
    Queued,
    /// Dequeued by the holder of the lease with `token`; returns to `Queued` if that lease ends
    /// before the order is acknowledged.
    Executing {
        executor_id: String,
        token: u64,
        since_ms: u64,
    },
    /// Acknowledged by the executor that held the lease with `token` (the one that recorded the
    /// execution, or a later holder that found it recorded). Final.
    Executed {
        executor_id: String,
        token: u64,
        at_ms: u64,
    },
    /// Rejected at checkout; never queued. Final.
    Rejected {
        reasons: Vec<RejectionReason>,
        at_ms: u64,
    },
}

/// Everything the queue knows about one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    /// For a rejected order, its id and customer only.
    pub order: QueuedOrder,
    /// Position in commit order among all records; breaks ties between equal priorities.
    pub sequence: u64,
    pub status: OrderStatus,
    /// Shown time of the enqueue (or the rejection).
    pub enqueued_at_ms: u64,
    /// The queue's own time ([`QueueState::queue_time_ms`]) at the enqueue (or the rejection):
    /// what the order's age in the dequeue order counts from.
    pub enqueued_at_queue_ms: u64,
    /// The checkout decision, for an order placed through the orchestrator.
    pub checkout: Option<CheckoutRecord>,
    /// The execution, once recorded.
    pub execution: Option<Execution>,
}

/// The executors' leadership: who may dequeue, under which fencing token, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub holder: Holder,
    pub token: u64,
    /// The TTL asked for by the last grant or renewal; a new timeline honours it in full.
    pub ttl_ms: u64,
    /// The lease is valid while the state's time, on its current timeline, is strictly before
    /// this many milliseconds since the timeline began.
    pub expires_after_ms: u64,
    /// That moment as shown to people (see the module's doc); never compared.
    pub expires_at_ms: u64,
}

/// A change to the queue, as replicated in the Raft log. `at` is when the leader proposed it, the
/// only time the state machine ever sees; it comes first so that older data fails to decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Adds an order to the ready queue unless its id is already known (idempotent).
    Enqueue { at: Stamp, order: QueuedOrder },
    /// Records a checkout decision unless the order id is already known: the first decision for
    /// an id is final. An approved order is queued, a rejected one recorded as rejected.
    Decide { at: Stamp, decision: Decision },
    /// Asks for the lease. Granted with a new token when no lease is held (or it expired);
    /// refused while one is, whoever holds it.
    Campaign {
        at: Stamp,
        holder: Holder,
        ttl_ms: u64,
    },
    /// Extends the caller's lease to `now + ttl_ms` (never shortens it).
    RenewLease {
        at: Stamp,
        holder: Holder,
        token: u64,
        ttl_ms: u64,
    },
    /// Gives the lease up; an order executing under it goes back to the ready queue.
    Resign {
        at: Stamp,
        holder: Holder,
        token: u64,
    },
    /// Takes the highest-priority order for execution, or returns the one already executing under
    /// this lease (so a retried dequeue is harmless).
    Dequeue {
        at: Stamp,
        holder: Holder,
        token: u64,
    },
    /// Records the execution of the order executing under this lease, unless one is recorded.
    RecordExecution {
        at: Stamp,
        holder: Holder,
        token: u64,
        order_id: String,
    },
    /// Marks the order executing under this lease, its execution recorded, as executed.
    Acknowledge {
        at: Stamp,
        holder: Holder,
        token: u64,
        order_id: String,
    },
    /// Commands proposed together in one log entry, applied one after another exactly as if
    /// each had an entry of its own. The leader groups the writes that arrive while earlier ones
    /// are being replicated, so that one flush and one round trip carry many of them.
    Batch(Vec<Command>),
}

impl Command {
    /// One command as itself, several as a [`Command::Batch`], so that an entry of a single
    /// write reads like that write. [`CommandResponse::ungroup`] splits the answer.
    pub fn group(mut commands: Vec<Command>) -> Command {
        match commands.pop() {
            Some(only) if commands.is_empty() => only,
            Some(last) => {
                commands.push(last);
                Command::Batch(commands)
            }
            None => Command::Batch(commands),
        }
    }
}

/// The outcome of applying one log entry, one variant per outcome so callers match, not parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// The order was added to the ready queue at this position in commit order.
    Enqueued { order_id: String, sequence: u64 },
    /// The order id was already known; nothing changed.
    AlreadyEnqueued {
        order_id: String,
        status: OrderStatus,
    },
    /// The decision was recorded at this position in commit order.
    Decided { order_id: String, sequence: u64 },
    /// The order id was already known, decided or enqueued; nothing changed. Its record says
    /// what was decided.
    AlreadyDecided { order_id: String },
    /// A new lease with a fresh fencing token; `expires_at_ms` is shown time.
    LeaseGranted { token: u64, expires_at_ms: u64 },
    /// The caller's lease was extended; the token is unchanged.
    LeaseRenewed { token: u64, expires_at_ms: u64 },
    /// A lease is in force (possibly the caller's own); nothing changed.
    LeaseHeld { holder: Holder, expires_at_ms: u64 },
    /// The lease is released; the order that was executing under it, if any, is queued again.
    Resigned { requeued_order_id: Option<String> },
    /// The order to execute now, with its execution record if an earlier holder wrote one (then
    /// it is only to be acknowledged).
    Dequeued {
        order: QueuedOrder,
        execution: Option<Execution>,
    },
    /// Nothing is waiting.
    QueueEmpty,
    /// The execution is recorded under this lease (also the answer to a repeated record with the
    /// same token, even after the lease ended).
    ExecutionRecorded {
        order_id: String,
        execution: Execution,
    },
    /// An earlier holder recorded the execution; nothing changed. Acknowledge it, execute
    /// nothing.
    AlreadyExecuted {
        order_id: String,
        execution: Execution,
    },
    /// The order is executed (also the answer to a repeated acknowledgement with the same token).
    Acknowledged { order_id: String, at_ms: u64 },
    /// The order executing under the lease has no execution record yet; nothing changed.
    NotRecorded { order_id: String },
    /// The lease is valid, but no order with this id exists.
    UnknownOrder { order_id: String },
    /// The lease is valid, but this order is not the one executing under it.
    NotExecuting {
        order_id: String,
        status: OrderStatus,
    },
    /// The token is not the current lease's, the caller is not its holder, or it expired.
    /// `current` is the token of the lease in force, if any.
    StaleToken { current: Option<u64> },
    /// A campaign or renewal stamped on an earlier term's timeline than the state's: its time
    /// cannot bound a lease. Nothing changed; asking again gets a fresh stamp.
    StaleStamp {
        stamped_term: u64,
        current_term: u64,
    },
    /// The answer to a Raft entry that carries no command (blank or membership entries).
    NoCommand,
    /// The answers to a [`Command::Batch`], one per command, in order.
    Batch(Vec<CommandResponse>),
}

impl CommandResponse {
    /// The answers, one per command, to [`Command::group`] of `count` commands.
    pub fn ungroup(self, count: usize) -> Vec<CommandResponse> {
        match self {
            CommandResponse::Batch(responses) if count != 1 => responses,
            single => vec![single],
        }
    }
}

/// An order's place in the dequeue order, smallest first (see the module's "Priority with
/// aging"): its enqueue time on the queue's own clock moved back by [`AGING_MS_PER_BOOK`] per
/// book, then its sequence. Fixed when the order is enqueued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DequeueKey {
    /// `enqueued_at_queue_ms − AGING_MS_PER_BOOK × priority`: negative for an order with more
    /// books than its enqueue time has milliseconds / 500.
    pub aged_ms: i64,
    pub sequence: u64,
}

impl DequeueKey {
    /// The key of an order of `priority` books enqueued at `enqueued_at_queue_ms` of the queue's
    /// time, `sequence`-th in commit order. Saturates instead of wrapping.
    pub fn new(enqueued_at_queue_ms: u64, priority: u32, sequence: u64) -> Self {
        let enqueued = i64::try_from(enqueued_at_queue_ms).unwrap_or(i64::MAX);
        let books_worth = i64::from(priority).saturating_mul(AGING_MS_PER_BOOK as i64);
        Self {
            aged_ms: enqueued.saturating_sub(books_worth),
            sequence,
        }
    }

    pub fn of(record: &OrderRecord) -> Self {
        Self::new(
            record.enqueued_at_queue_ms,
            record.order.priority(),
            record.sequence,
        )
    }
}

/// The whole replicated queue: orders, ready queue, lease and the clock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    format: FormatTag,
    /// Every order ever recorded, by id.
    #[serde(deserialize_with = "crate::codec::deserialize_ord_map")]
    orders: OrdMap<String, OrderRecord>,
    /// Ids of `Queued` orders, in dequeue order.
    #[serde(deserialize_with = "crate::codec::deserialize_ord_map")]
    ready: OrdMap<DequeueKey, String>,
    /// The id of the one `Executing` order; only ever set while `lease` is.
    executing_order: Option<String>,
    /// Its expiry is counted on `clock`'s timeline.
    lease: Option<Lease>,
    /// The last fencing token handed out; 0 before the first grant.
    last_granted_token: u64,
    next_sequence: u64,
    executed_count: u64,
    rejected_count: u64,
    /// The state's time: the largest reading applied of the latest timeline.
    clock: Stamp,
    /// The queue's own time, which orders age by: see [`QueueState::queue_time_ms`].
    queue_time_ms: u64,
}

impl QueueState {
    /// Applies one command. Every command first moves the clock (see the module's doc) and ends
    /// a lease that has expired by then; a batch applies its commands in turn.
    pub fn apply(&mut self, command: &Command) -> CommandResponse {
        match command {
            Command::Enqueue { at, order } => {
                self.advance(at);
                self.enqueue(order)
            }
            Command::Decide { at, decision } => {
                self.advance(at);
                self.decide(decision)
            }
            Command::Campaign { at, holder, ttl_ms } => match self.advance(at) {
                Reading::Older => self.stale_stamp(at),
                Reading::Current | Reading::Newer => self.campaign(holder, *ttl_ms),
            },
            Command::RenewLease {
                at,
                holder,
                token,
                ttl_ms,
            } => match self.advance(at) {
                Reading::Older => self.stale_stamp(at),
                Reading::Current | Reading::Newer => self.renew_lease(holder, *token, *ttl_ms),
            },
            Command::Resign { at, holder, token } => {
                self.advance(at);
                self.resign(holder, *token)
            }
            Command::Dequeue { at, holder, token } => {
                self.advance(at);
                self.dequeue(holder, *token)
            }
            Command::RecordExecution {
                at,
                holder,
                token,
                order_id,
            } => {
                self.advance(at);
                self.record_execution(holder, *token, order_id)
            }
            Command::Acknowledge {
                at,
                holder,
                token,
                order_id,
            } => {
                self.advance(at);
                self.acknowledge(holder, *token, order_id)
            }
            Command::Batch(commands) => {
                CommandResponse::Batch(commands.iter().map(|command| self.apply(command)).collect())
            }
        }
    }

    /// Where `stamp` stands against the current timeline.
    fn reading(&self, stamp: &Stamp) -> Reading {
        let current = &self.clock.timeline;
        if stamp.timeline == *current {
            Reading::Current
        } else if stamp.timeline.term >= current.term {
            Reading::Newer
        } else {
            Reading::Older
        }
    }

    /// Moves the clock to `at`: forward on the current timeline, or onto a newer timeline (where
    /// a lease held over lasts a full TTL from its start); a stamp of an older one changes
    /// nothing. Then ends a lease that expired by the clock. Returns where `at` stood.
    fn advance(&mut self, at: &Stamp) -> Reading {
        let reading = self.reading(at);
        match reading {
            Reading::Current => {
                let moved_ms = at.elapsed_ms.saturating_sub(self.clock.elapsed_ms);
                self.queue_time_ms = self.queue_time_ms.saturating_add(moved_ms);
                self.clock.elapsed_ms = self.clock.elapsed_ms.max(at.elapsed_ms);
            }
            Reading::Newer => {
                // The new leader's clock began after every stamp applied so far was read (see
                // "Time"), so its whole reading is time that passed since.
                self.queue_time_ms = self.queue_time_ms.saturating_add(at.elapsed_ms);
                self.clock = *at;
                let began_at_ms = self.clock.timeline.began_at_ms;
                if let Some(lease) = &mut self.lease {
                    lease.expires_after_ms = lease.ttl_ms;
                    lease.expires_at_ms = began_at_ms.saturating_add(lease.ttl_ms);
                }
            }
            Reading::Older => {}
        }
        self.maybe_expire_lease();
        reading
    }

    fn stale_stamp(&self, at: &Stamp) -> CommandResponse {
        CommandResponse::StaleStamp {
            stamped_term: at.timeline.term,
            current_term: self.clock.timeline.term,
        }
    }

    /// The record of one order, whatever its status.
    pub fn order_status(&self, order_id: &str) -> Option<&OrderRecord> {
        self.orders.get(order_id)
    }

    /// How many orders wait in the ready queue (not counting the executing one).
    pub fn queue_depth(&self) -> usize {
        self.ready.len()
    }

    /// The next `n` orders in the order they would be dequeued.
    pub fn peek(&self, n: usize) -> impl Iterator<Item = &OrderRecord> + '_ {
        self.ready
            .values()
            .take(n)
            .filter_map(|order_id| self.orders.get(order_id))
    }

    /// The lease as of the last applied command. It may have expired since; it is cleared when
    /// the next command is applied, and [`QueueState::lease_remaining_ms`] says how long it has.
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// How many milliseconds the lease has left (0 when there is none): at `now`, a reading of
    /// the leader's clock, as the next command stamped `now` would find it; without one, as of
    /// the last applied command.
    pub fn lease_remaining_ms(&self, now: Option<&Stamp>) -> u64 {
        let Some(lease) = &self.lease else {
            return 0;
        };
        let (elapsed_ms, expires_after_ms) = match now.map(|now| (now, self.reading(now))) {
            Some((now, Reading::Current)) => (
                self.clock.elapsed_ms.max(now.elapsed_ms),
                lease.expires_after_ms,
            ),
            Some((now, Reading::Newer)) => (now.elapsed_ms, lease.ttl_ms),
            Some((_, Reading::Older)) | None => (self.clock.elapsed_ms, lease.expires_after_ms),
        };
        expires_after_ms.saturating_sub(elapsed_ms)
    }

    /// The order executing under the current lease, if any.
    pub fn executing(&self) -> Option<&OrderRecord> {
        self.executing_order
            .as_ref()
            .and_then(|order_id| self.orders.get(order_id))
    }

    /// How many orders were acknowledged as executed.
    pub fn executed_count(&self) -> u64 {
        self.executed_count
    }

    /// How many orders were rejected at checkout.
    pub fn rejected_count(&self) -> u64 {
        self.rejected_count
    }

    /// How many orders were ever enqueued, directly or approved at checkout (each id once,
    /// whatever became of it); rejected orders are not counted.
    pub fn enqueued_count(&self) -> usize {
        // `rejected_count` counts records of `orders`, so it is at most its length.
        self.orders
            .len()
            .saturating_sub(usize::try_from(self.rejected_count).unwrap_or(usize::MAX))
    }

    /// How many leases were ever granted: tokens are handed out 1, 2, 3, ...
    pub fn lease_grants(&self) -> u64 {
        self.last_granted_token
    }

    /// The state's time: the largest reading applied of the latest timeline.
    pub fn clock(&self) -> &Stamp {
        &self.clock
    }

    /// The queue's own time, in milliseconds, which orders age by: how far the leaders' monotonic
    /// clocks moved over the commands applied, summed over every timeline. Never goes back, the
    /// same on every replica, moved by no wall clock; 0 before the first command.
    pub fn queue_time_ms(&self) -> u64 {
        self.queue_time_ms
    }

    /// Ends the lease if the clock reached its expiry; returns whether it did.
    fn maybe_expire_lease(&mut self) -> bool {
        let expired = self
            .lease
            .as_ref()
            .is_some_and(|lease| self.clock.elapsed_ms >= lease.expires_after_ms);
        if expired {
            self.end_lease();
        }
        expired
    }

    /// Clears the lease and puts the order executing under it back in the ready queue, at its
    /// original priority and sequence. Returns that order's id.
    fn end_lease(&mut self) -> Option<String> {
        self.lease = None;
        let order_id = self.executing_order.take()?;
        let record = self.record_mut(&order_id);
        record.status = OrderStatus::Queued;
        let key = DequeueKey::of(record);
        self.ready.insert(key, order_id.clone());
        Some(order_id)
    }

    /// The record of an order the state itself refers to (ready queue or executing slot).
    fn record_mut(&mut self, order_id: &str) -> &mut OrderRecord {
        // Cannot fail: `ready` and `executing_order` only ever hold ids inserted into `orders`,
        // and orders are never removed.
        self.orders
            .get_mut(order_id)
            .expect("ready queue and executing slot refer only to recorded orders")
    }

    /// The refusal of a command unless `token` is the current lease's and `holder` holds it.
    /// Expiry was already applied, so a lease still present is valid at the current clock.
    fn lease_refusal(&self, holder: &Holder, token: u64) -> Option<CommandResponse> {
        match &self.lease {
            Some(lease) if lease.holder == *holder && lease.token == token => None,
            other => Some(CommandResponse::StaleToken {
                current: other.as_ref().map(|lease| lease.token),
            }),
        }
    }

    /// The refusal of a command about `order_id` unless it is the order executing under the
    /// lease (checked already).
    fn executing_refusal(&self, order_id: &str) -> Option<CommandResponse> {
        if self.executing_order.as_deref() == Some(order_id) {
            return None;
        }
        Some(match self.orders.get(order_id) {
            None => CommandResponse::UnknownOrder {
                order_id: order_id.to_owned(),
            },
            Some(record) => CommandResponse::NotExecuting {
                order_id: order_id.to_owned(),
                status: record.status.clone(),
            },
        })
    }

    /// Adds a new record for `order` at the next sequence, queued unless it is rejected.
    fn insert_record(
        &mut self,
        order: QueuedOrder,
        status: OrderStatus,
        checkout: Option<CheckoutRecord>,
    ) -> u64 {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let order_id = order.order_id().to_owned();
        let record = OrderRecord {
            order,
            sequence,
            status,
            enqueued_at_ms: self.clock.shown_ms(),
            enqueued_at_queue_ms: self.queue_time_ms,
            checkout,
            execution: None,
        };
        match record.status {
            OrderStatus::Queued => {
                self.ready.insert(DequeueKey::of(&record), order_id.clone());
            }
            _ => self.rejected_count += 1,
        }
        self.orders.insert(order_id, record);
        sequence
    }

    fn enqueue(&mut self, order: &QueuedOrder) -> CommandResponse {
        if let Some(record) = self.orders.get(order.order_id()) {
            return CommandResponse::AlreadyEnqueued {
                order_id: order.order_id().to_owned(),
                status: record.status.clone(),
            };
        }
        let sequence = self.insert_record(order.clone(), OrderStatus::Queued, None);
        CommandResponse::Enqueued {
            order_id: order.order_id().to_owned(),
            sequence,
        }
    }

    fn decide(&mut self, decision: &Decision) -> CommandResponse {
        let order_id = decision.order.order_id().to_owned();
        if self.orders.contains_key(&order_id) {
            return CommandResponse::AlreadyDecided { order_id };
        }
        let (order, status, suggestions) = match &decision.verdict {
            Verdict::Approved { suggestions } => (
                decision.order.clone(),
                OrderStatus::Queued,
                suggestions.clone(),
            ),
            // A rejected order is never executed: its lines are not kept.
            Verdict::Rejected { reasons } => (
                QueuedOrder::new(&order_id, decision.order.customer(), Vec::new()),
                OrderStatus::Rejected {
                    reasons: reasons.clone(),
                    at_ms: self.clock.shown_ms(),
                },
                Vec::new(),
            ),
        };
        let checkout = CheckoutRecord {
            request: decision.request.clone(),
            suggestions,
        };
        let sequence = self.insert_record(order, status, Some(checkout));
        CommandResponse::Decided { order_id, sequence }
    }

    /// Makes the lease last at least `ttl_ms` from the current time; returns the shown expiry.
    /// Never shortens it, nor the TTL a new timeline honours: its holder relies on the longest
    /// of the TTLs it was confirmed, as `executor::election::ConfirmedLease` does.
    fn extend(lease: &mut Lease, clock: &Stamp, ttl_ms: u64) -> u64 {
        lease.ttl_ms = lease.ttl_ms.max(ttl_ms);
        let expires_after_ms = clock.elapsed_ms.saturating_add(ttl_ms);
        if expires_after_ms > lease.expires_after_ms {
            lease.expires_after_ms = expires_after_ms;
            lease.expires_at_ms = clock.shown_ms().saturating_add(ttl_ms);
        }
        lease.expires_at_ms
    }

    /// Grants a new lease with a new token, or refuses while one is in force, whoever holds it:
    /// its holder already has the token, and anyone else asking under the same executor id is
    /// another run (see the module's doc).
    fn campaign(&mut self, holder: &Holder, ttl_ms: u64) -> CommandResponse {
        if let Some(lease) = &self.lease {
            return CommandResponse::LeaseHeld {
                holder: lease.holder.clone(),
                expires_at_ms: lease.expires_at_ms,
            };
        }
        self.last_granted_token += 1;
        let token = self.last_granted_token;
        let mut lease = Lease {
            holder: holder.clone(),
            token,
            ttl_ms,
            expires_after_ms: 0,
            expires_at_ms: 0,
        };
        let expires_at_ms = Self::extend(&mut lease, &self.clock, ttl_ms);
        self.lease = Some(lease);
        CommandResponse::LeaseGranted {
            token,
            expires_at_ms,
        }
    }

    fn renew_lease(&mut self, holder: &Holder, token: u64, ttl_ms: u64) -> CommandResponse {
        if let Some(refusal) = self.lease_refusal(holder, token) {
            return refusal;
        }
        // Checked just above: the lease is there.
        let Some(lease) = &mut self.lease else {
            return CommandResponse::StaleToken { current: None };
        };
        CommandResponse::LeaseRenewed {
            token,
            expires_at_ms: Self::extend(lease, &self.clock, ttl_ms),
        }
    }

    fn resign(&mut self, holder: &Holder, token: u64) -> CommandResponse {
        if let Some(refusal) = self.lease_refusal(holder, token) {
            return refusal;
        }
        CommandResponse::Resigned {
            requeued_order_id: self.end_lease(),
        }
    }

    fn dequeue(&mut self, holder: &Holder, token: u64) -> CommandResponse {
        if let Some(refusal) = self.lease_refusal(holder, token) {
            return refusal;
        }
        if let Some(record) = self.executing() {
            return CommandResponse::Dequeued {
                order: record.order.clone(),
                execution: record.execution.clone(),
            };
        }
        let Some(next) = self.ready.get_min().map(|(key, _)| *key) else {
            return CommandResponse::QueueEmpty;
        };
        let Some(order_id) = self.ready.remove(&next) else {
            return CommandResponse::QueueEmpty;
        };
        let since_ms = self.clock.shown_ms();
        let record = self.record_mut(&order_id);
        record.status = OrderStatus::Executing {
            executor_id: holder.executor_id.clone(),
            token,
            since_ms,
        };
        let order = record.order.clone();
        let execution = record.execution.clone();
        self.executing_order = Some(order_id);
        CommandResponse::Dequeued { order, execution }
    }

    fn record_execution(&mut self, holder: &Holder, token: u64, order_id: &str) -> CommandResponse {
        // A repeated record by the same lease changes nothing, so it is answered the same way
        // even after that lease has ended: the executor learns that its execution counts.
        if let Some(execution) = self
            .orders
            .get(order_id)
            .and_then(|record| record.execution.as_ref())
            && execution.token == token
            && execution.executor_id == holder.executor_id
            && execution.incarnation == holder.incarnation
        {
            return CommandResponse::ExecutionRecorded {
                order_id: order_id.to_owned(),
                execution: execution.clone(),
            };
        }
        if let Some(refusal) = self
            .lease_refusal(holder, token)
            .or_else(|| self.executing_refusal(order_id))
        {
            return refusal;
        }
        let at_ms = self.clock.shown_ms();
        let record = self.record_mut(order_id);
        if let Some(execution) = &record.execution {
            return CommandResponse::AlreadyExecuted {
                order_id: order_id.to_owned(),
                execution: execution.clone(),
            };
        }
        let execution = Execution {
            executor_id: holder.executor_id.clone(),
            incarnation: holder.incarnation,
            token,
            at_ms,
        };
        record.execution = Some(execution.clone());
        CommandResponse::ExecutionRecorded {
            order_id: order_id.to_owned(),
            execution,
        }
    }

    fn acknowledge(&mut self, holder: &Holder, token: u64, order_id: &str) -> CommandResponse {
        // A repeated acknowledgement by the same lease changes nothing, so it is answered the
        // same way even after that lease has ended: the executor only learns the truth.
        if let Some(OrderRecord {
            status:
                OrderStatus::Executed {
                    executor_id: executed_by,
                    token: executed_under,
                    at_ms,
                },
            ..
        }) = self.orders.get(order_id)
            && *executed_by == holder.executor_id
            && *executed_under == token
        {
            return CommandResponse::Acknowledged {
                order_id: order_id.to_owned(),
                at_ms: *at_ms,
            };
        }
        if let Some(refusal) = self
            .lease_refusal(holder, token)
            .or_else(|| self.executing_refusal(order_id))
        {
            return refusal;
        }
        let at_ms = self.clock.shown_ms();
        let record = self.record_mut(order_id);
        if record.execution.is_none() {
            return CommandResponse::NotRecorded {
                order_id: order_id.to_owned(),
            };
        }
        record.status = OrderStatus::Executed {
            executor_id: holder.executor_id.clone(),
            token,
            at_ms,
        };
        self.executing_order = None;
        self.executed_count += 1;
        CommandResponse::Acknowledged {
            order_id: order_id.to_owned(),
            at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    fn order(order_id: &str, quantities: &[u32]) -> QueuedOrder {
        let items = quantities
            .iter()
            .enumerate()
            .map(|(n, &quantity)| OrderItem {
                title: format!("book {n}"),
                quantity,
            })
            .collect();
        QueuedOrder::new(order_id, "Ada", items)
    }

    /// The timeline of the tests that have one leader: term 1, begun at the epoch, so that a
    /// reading's shown time is the reading.
    const ONE_LEADER: Timeline = Timeline {
        term: 1,
        incarnation: 1,
        began_at_ms: 0,
    };

    /// Anything that stands for a stamp: a reading of [`ONE_LEADER`]'s clock, or a stamp.
    trait AtTime {
        fn stamp(self) -> Stamp;
    }

    impl AtTime for u64 {
        fn stamp(self) -> Stamp {
            Stamp::new(ONE_LEADER, self)
        }
    }

    impl AtTime for Stamp {
        fn stamp(self) -> Stamp {
            self
        }
    }

    fn enqueue(order_id: &str, quantities: &[u32], at: impl AtTime) -> Command {
        Command::Enqueue {
            at: at.stamp(),
            order: order(order_id, quantities),
        }
    }

    /// Anything that stands for a lease holder: an executor id (its one run, incarnation 1, in
    /// the tests that restart no executor), or a holder.
    trait AsHolder {
        fn holder(self) -> Holder;
    }

    impl AsHolder for &str {
        fn holder(self) -> Holder {
            Holder::new(self, 1)
        }
    }

    impl AsHolder for &Holder {
        fn holder(self) -> Holder {
            self.clone()
        }
    }

    fn campaign(holder: impl AsHolder, ttl_ms: u64, at: impl AtTime) -> Command {
        Command::Campaign {
            at: at.stamp(),
            holder: holder.holder(),
            ttl_ms,
        }
    }

    fn renew(holder: impl AsHolder, token: u64, ttl_ms: u64, at: impl AtTime) -> Command {
        Command::RenewLease {
            at: at.stamp(),
            holder: holder.holder(),
            token,
            ttl_ms,
        }
    }

    fn resign(holder: impl AsHolder, token: u64, at: impl AtTime) -> Command {
        Command::Resign {
            at: at.stamp(),
            holder: holder.holder(),
            token,
        }
    }

    fn dequeue(holder: impl AsHolder, token: u64, at: impl AtTime) -> Command {
        Command::Dequeue {
            at: at.stamp(),
            holder: holder.holder(),
            token,
        }
    }

    fn record(holder: impl AsHolder, token: u64, order_id: &str, at: impl AtTime) -> Command {
        Command::RecordExecution {
            at: at.stamp(),
            holder: holder.holder(),
            token,
            order_id: order_id.into(),
        }
    }

    fn acknowledge(holder: impl AsHolder, token: u64, order_id: &str, at: impl AtTime) -> Command {
        Command::Acknowledge {
            at: at.stamp(),
            holder: holder.holder(),
            token,
            order_id: order_id.into(),
        }
    }

    /// What a holder does once it executed the order in hand: records the execution, then
    /// acknowledges it. Returns the acknowledgement's answer.
    fn finish(
        state: &mut QueueState,
        holder: impl AsHolder,
        token: u64,
        order_id: &str,
        at: impl AtTime,
    ) -> CommandResponse {
        let (holder, at) = (holder.holder(), at.stamp());
        let recorded = state.apply(&record(&holder, token, order_id, at));
        assert!(
            matches!(recorded, CommandResponse::ExecutionRecorded { .. }),
            "recording {order_id} got {recorded:?}"
        );
        state.apply(&acknowledge(&holder, token, order_id, at))
    }

    fn digest(body: u8, card: Option<u8>) -> RequestDigest {
        RequestDigest {
            body: [body; 32],
            card: card.map(|card| [card; 32]),
        }
    }

    fn reason(code: &str) -> RejectionReason {
        RejectionReason {
            service: "fraud-detection".into(),
            code: code.into(),
            field: "creditCard.number".into(),
            message: format!("{code} fired"),
        }
    }

    fn book(book_id: &str) -> SuggestedBook {
        SuggestedBook {
            book_id: book_id.into(),
            title: format!("Title of {book_id}"),
            author: "Author".into(),
        }
    }

    fn approve(order_id: &str, quantities: &[u32], body: u8, at: impl AtTime) -> Command {
        Command::Decide {
            at: at.stamp(),
            decision: Decision {
                order: order(order_id, quantities),
                request: digest(body, Some(body)),
                verdict: Verdict::Approved {
                    suggestions: vec![book("b1"), book("b2")],
                },
            },
        }
    }

    fn reject(order_id: &str, body: u8, at: impl AtTime) -> Command {
        Command::Decide {
            at: at.stamp(),
            decision: Decision {
                order: order(order_id, &[2]),
                request: digest(body, Some(body)),
                verdict: Verdict::Rejected {
                    reasons: vec![reason("card_velocity")],
                },
            },
        }
    }

    /// The stamp a command carries (the last one's, for a batch).
    fn stamp_of(command: &Command) -> Option<Stamp> {
        match command {
            Command::Enqueue { at, .. }
            | Command::Decide { at, .. }
            | Command::Campaign { at, .. }
            | Command::RenewLease { at, .. }
            | Command::Resign { at, .. }
            | Command::Dequeue { at, .. }
            | Command::RecordExecution { at, .. }
            | Command::Acknowledge { at, .. } => Some(*at),
            Command::Batch(commands) => commands.last().and_then(stamp_of),
        }
    }

    /// Applies a campaign that must be granted and returns the new token.
    fn grant(state: &mut QueueState, holder: impl AsHolder, ttl_ms: u64, at: impl AtTime) -> u64 {
        match state.apply(&campaign(holder, ttl_ms, at)) {
            CommandResponse::LeaseGranted { token, .. } => token,
            other => panic!("expected a grant, got {other:?}"),
        }
    }

    /// A reading of the clock of node run `incarnation` leading `term`, which began at wall
    /// time `began_at_ms`.
    fn reading(term: u64, incarnation: u64, began_at_ms: u64, elapsed_ms: u64) -> Stamp {
        Stamp::new(
            Timeline {
                term,
                incarnation,
                began_at_ms,
            },
            elapsed_ms,
        )
    }

    fn dequeued_id(response: CommandResponse) -> String {
        match response {
            CommandResponse::Dequeued { order, .. } => order.order_id().to_owned(),
            other => panic!("expected an order, got {other:?}"),
        }
    }

    fn peeked_ids(state: &QueueState) -> Vec<&str> {
        state
            .peek(usize::MAX)
            .map(|record| record.order.order_id())
            .collect()
    }

    #[test]
    fn priority_is_the_total_quantity_and_saturates() {
        assert_eq!(order("a", &[2, 3]).priority(), 5);
        assert_eq!(order("b", &[]).priority(), 0);
        assert_eq!(order("c", &[u32::MAX, 1]).priority(), u32::MAX);
    }

    #[test]
    fn enqueue_records_the_order_as_queued_in_commit_order() {
        let mut state = QueueState::default();
        assert_eq!(
            state.apply(&enqueue("a", &[1], 10)),
            CommandResponse::Enqueued {
                order_id: "a".into(),
                sequence: 0
            }
        );
        assert_eq!(
            state.apply(&enqueue("b", &[1], 11)),
            CommandResponse::Enqueued {
                order_id: "b".into(),
                sequence: 1
            }
        );
        let record = state.order_status("a").expect("a was enqueued");
        assert_eq!(record.status, OrderStatus::Queued);
        assert_eq!(record.enqueued_at_ms, 10);
        assert_eq!(state.queue_depth(), 2);
        assert!(state.order_status("missing").is_none());
    }

    #[test]
    fn enqueue_of_a_known_id_changes_nothing() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 10));
        let before = state.clone();
        assert_eq!(
            state.apply(&enqueue("a", &[9], 10)),
            CommandResponse::AlreadyEnqueued {
                order_id: "a".into(),
                status: OrderStatus::Queued
            }
        );
        assert_eq!(state, before);
    }

    #[test]
    fn enqueue_of_an_executed_id_reports_it_executed() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        let token = grant(&mut state, "e1", 100, 0);
        state.apply(&dequeue("e1", token, 1));
        finish(&mut state, "e1", token, "a", 2);
        assert_eq!(
            state.apply(&enqueue("a", &[1], 3)),
            CommandResponse::AlreadyEnqueued {
                order_id: "a".into(),
                status: OrderStatus::Executed {
                    executor_id: "e1".into(),
                    token,
                    at_ms: 2
                }
            }
        );
        assert_eq!(state.queue_depth(), 0);
    }

    #[test]
    fn orders_leave_by_priority_then_commit_order() {
        let mut state = QueueState::default();
        state.apply(&enqueue("small-first", &[1], 0));
        state.apply(&enqueue("big", &[2, 3], 0));
        state.apply(&enqueue("small-second", &[1], 0));
        state.apply(&enqueue("middle", &[3], 0));
        assert_eq!(
            peeked_ids(&state),
            ["big", "middle", "small-first", "small-second"]
        );
        assert_eq!(state.peek(1).count(), 1);

        let token = grant(&mut state, "e1", 1_000, 0);
        let mut taken = Vec::new();
        for now_ms in 1..=4 {
            let order_id = dequeued_id(state.apply(&dequeue("e1", token, now_ms)));
            finish(&mut state, "e1", token, &order_id, now_ms);
            taken.push(order_id);
        }
        assert_eq!(taken, ["big", "middle", "small-first", "small-second"]);
        assert_eq!(
            state.apply(&dequeue("e1", token, 5)),
            CommandResponse::QueueEmpty
        );
        assert_eq!(state.executed_count(), 4);
    }

    /// A steady stream of orders to execute: a `books`-book order arrives every `every_ms`, and
    /// an executor takes one order every `execution_ms` (lease, dequeue, record, acknowledge,
    /// resign), from `0` until `until_ms`. Returns, for each order dequeued, its id and when.
    fn run_stream(
        state: &mut QueueState,
        books: u32,
        every_ms: u64,
        execution_ms: u64,
        until_ms: u64,
    ) -> Vec<(String, u64)> {
        let mut dequeued = Vec::new();
        let mut next_arrival = 0;
        let mut next_execution = execution_ms;
        let mut arrivals = 0;
        while next_arrival.min(next_execution) <= until_ms {
            if next_arrival <= next_execution {
                state.apply(&enqueue(&format!("big-{arrivals}"), &[books], next_arrival));
                arrivals += 1;
                next_arrival += every_ms;
                continue;
            }
            let now = next_execution;
            let token = grant(state, "e1", 1_000, now);
            if let CommandResponse::Dequeued { order, .. } = state.apply(&dequeue("e1", token, now))
            {
                finish(state, "e1", token, order.order_id(), now);
                dequeued.push((order.order_id().to_owned(), now));
            }
            state.apply(&resign("e1", token, now));
            next_execution += execution_ms;
        }
        dequeued
    }

    /// The starvation of issue 16: 50-book orders arrive faster than they are executed, so one
    /// is always waiting; a one-book order queued before them must still be executed, and no
    /// 50-book order enqueued 24.5 s (49 books of 500 ms each) or more after it may go first.
    /// Under strict priority it was never executed (480 big orders were, 122 waited on).
    #[test]
    fn a_small_order_is_not_starved_by_a_stream_of_big_ones() {
        let mut state = QueueState::default();
        state.apply(&enqueue("small", &[1], 0));
        let dequeued = run_stream(&mut state, 50, 200, 250, 120_000);
        let small_at = dequeued
            .iter()
            .position(|(order_id, _)| order_id == "small")
            .unwrap_or_else(|| {
                panic!(
                    "the one-book order was never dequeued in 120 s; {} big orders were, {} wait",
                    dequeued.len(),
                    state.queue_depth()
                )
            });
        let passed_by_later: Vec<&str> = dequeued[..small_at]
            .iter()
            .map(|(order_id, _)| order_id.as_str())
            .filter(|order_id| {
                let enqueued = state.order_status(order_id).expect("recorded");
                enqueued.enqueued_at_queue_ms >= 49 * AGING_MS_PER_BOOK
            })
            .collect();
        assert_eq!(passed_by_later, Vec::<&str>::new());
        // Ahead of it: the 123 big orders enqueued before 24.5 s, one every 250 ms.
        assert_eq!(dequeued[small_at], ("small".to_owned(), 124 * 250));
    }

    /// The dequeue order as the module's doc defines it, computed apart from [`DequeueKey`]:
    /// `(enqueued_at_queue_ms − 500 × priority, sequence)`, smallest first.
    fn aged_rank(record: &OrderRecord) -> (i128, u64) {
        (
            i128::from(record.enqueued_at_queue_ms) - 500 * i128::from(record.order.priority()),
            record.sequence,
        )
    }

    #[test]
    fn one_more_book_is_worth_half_a_second_of_waiting() {
        let mut state = QueueState::default();
        state.apply(&enqueue("one-book", &[1], 0));
        state.apply(&enqueue("three-books-soon", &[3], 999));
        state.apply(&enqueue("three-books-at-the-tie", &[3], 1_000));
        state.apply(&enqueue("three-books-later", &[3], 1_001));
        assert_eq!(
            peeked_ids(&state),
            [
                "three-books-soon",
                "one-book",
                "three-books-at-the-tie",
                "three-books-later"
            ],
            "two more books are worth up to 1 s; at exactly 1 s, commit order decides"
        );
    }

    #[test]
    fn the_queue_time_goes_on_across_leaders_whatever_their_wall_clocks() {
        let mut state = QueueState::default();
        state.apply(&enqueue("small", &[1], 10_000));
        assert_eq!(state.queue_time_ms(), 10_000);
        // A new leader whose wall clock is an hour behind: its clock starts at 0, the queue's
        // time goes on from 10 s.
        let next = |elapsed_ms| reading(2, 7, 0, elapsed_ms);
        state.apply(&enqueue("big-at-once", &[50], next(0)));
        state.apply(&enqueue("big-later", &[50], next(24_000)));
        state.apply(&enqueue("big-too-late", &[50], next(24_501)));
        assert_eq!(state.queue_time_ms(), 34_501);
        // A stamp of the earlier term, held up across the election, moves nothing.
        state.apply(&enqueue("held-up", &[1], 60_000));
        assert_eq!(state.queue_time_ms(), 34_501);
        let queue_ms = |state: &QueueState, order_id| {
            state
                .order_status(order_id)
                .map(|record| record.enqueued_at_queue_ms)
        };
        assert_eq!(queue_ms(&state, "big-later"), Some(34_000));
        assert_eq!(queue_ms(&state, "held-up"), Some(34_501));
        assert_eq!(
            peeked_ids(&state),
            [
                "big-at-once",
                "big-later",
                "small",
                "big-too-late",
                "held-up"
            ]
        );
        // A restart of the leader inside its term: a new timeline, whose reading adds on.
        state.apply(&enqueue("after-restart", &[1], reading(2, 8, 0, 100)));
        assert_eq!(queue_ms(&state, "after-restart"), Some(34_601));
    }

    #[test]
    fn campaign_grants_a_lease_when_none_is_held() {
        let mut state = QueueState::default();
        assert_eq!(
            state.apply(&campaign("e1", 100, 50)),
            CommandResponse::LeaseGranted {
                token: 1,
                expires_at_ms: 150
            }
        );
        assert_eq!(
            state.lease(),
            Some(&Lease {
                holder: "e1".holder(),
                token: 1,
                ttl_ms: 100,
                expires_after_ms: 150,
                expires_at_ms: 150
            })
        );
    }

    #[test]
    fn campaign_against_a_held_lease_is_refused() {
        let mut state = QueueState::default();
        grant(&mut state, "e1", 100, 0);
        assert_eq!(
            state.apply(&campaign("e2", 100, 99)),
            CommandResponse::LeaseHeld {
                holder: "e1".holder(),
                expires_at_ms: 100
            }
        );
    }

    /// Claim 3 of issue 15: a campaign by the holder was answered with its lease extended under
    /// the same token, so a restarted executor (or a second process with its id) that read the
    /// lease as free resumed it, and took the order executing under it again.
    #[test]
    fn a_campaign_never_hands_back_a_token_in_force() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        let first_run = Holder::new("e1", 11);
        let token = grant(&mut state, &first_run, 100, 0);
        dequeued_id(state.apply(&dequeue(&first_run, token, 1)));
        let before = state.clone();
        let held = CommandResponse::LeaseHeld {
            holder: first_run.clone(),
            expires_at_ms: 100,
        };
        // The same run asking again (its grant's answer lost), and its next run.
        assert_eq!(state.apply(&campaign(&first_run, 100, 60)), held);
        let next_run = Holder::new("e1", 12);
        assert_eq!(state.apply(&campaign(&next_run, 100, 60)), held);
        assert_eq!(state.lease(), before.lease());
        // The next run cannot use the first run's token either.
        let stale = CommandResponse::StaleToken {
            current: Some(token),
        };
        assert_eq!(state.apply(&dequeue(&next_run, token, 61)), stale);
        assert_eq!(state.apply(&renew(&next_run, token, 100, 61)), stale);
        assert_eq!(state.apply(&resign(&next_run, token, 61)), stale);
        assert_eq!(state.apply(&record(&next_run, token, "a", 61)), stale);
        assert_eq!(state.apply(&acknowledge(&next_run, token, "a", 61)), stale);
        // Once the lease expired, the next run gets a token of its own, and the order back.
        let own = grant(&mut state, &next_run, 100, 100);
        assert!(own > token);
        assert_eq!(dequeued_id(state.apply(&dequeue(&next_run, own, 101))), "a");
    }

    #[test]
    fn campaign_after_expiry_grants_the_next_token() {
        let mut state = QueueState::default();
        let first = grant(&mut state, "e1", 100, 0);
        let second = grant(&mut state, "e2", 100, 100);
        assert!(second > first);
        assert_eq!(
            state.lease().map(|lease| lease.holder.executor_id.as_str()),
            Some("e2")
        );
    }

    #[test]
    fn tokens_are_never_reused_after_resigning() {
        let mut state = QueueState::default();
        let first = grant(&mut state, "e1", 100, 0);
        state.apply(&resign("e1", first, 1));
        let second = grant(&mut state, "e1", 100, 2);
        assert_eq!(second, first + 1);
    }

    #[test]
    fn renew_extends_the_lease_from_now() {
        let mut state = QueueState::default();
        let token = grant(&mut state, "e1", 100, 0);
        assert_eq!(
            state.apply(&renew("e1", token, 500, 90)),
            CommandResponse::LeaseRenewed {
                token,
                expires_at_ms: 590
            }
        );
        assert_eq!(state.lease().map(|lease| lease.expires_at_ms), Some(590));
    }

    #[test]
    fn a_renewal_never_shortens_the_lease() {
        let mut state = QueueState::default();
        let token = grant(&mut state, "e1", 1_000, 0);
        assert_eq!(
            state.apply(&renew("e1", token, 100, 500)),
            CommandResponse::LeaseRenewed {
                token,
                expires_at_ms: 1_000
            }
        );
        assert_eq!(state.lease().map(|lease| lease.ttl_ms), Some(1_000));
        assert!(matches!(
            state.apply(&campaign("e2", 100, 999)),
            CommandResponse::LeaseHeld { .. }
        ));
    }

    #[test]
    fn renew_with_a_stale_or_foreign_token_or_after_expiry_is_refused() {
        let mut state = QueueState::default();
        let token = grant(&mut state, "e1", 100, 0);
        let stale = CommandResponse::StaleToken {
            current: Some(token),
        };
        assert_eq!(state.apply(&renew("e1", token + 1, 100, 1)), stale);
        assert_eq!(state.apply(&renew("e2", token, 100, 1)), stale);
        assert_eq!(
            state.apply(&renew("e1", token, 100, 100)),
            CommandResponse::StaleToken { current: None }
        );
        assert!(state.lease().is_none());
    }

    #[test]
    fn resign_releases_the_lease() {
        let mut state = QueueState::default();
        let token = grant(&mut state, "e1", 100, 0);
        assert_eq!(
            state.apply(&resign("e1", token, 1)),
            CommandResponse::Resigned {
                requeued_order_id: None
            }
        );
        assert!(state.lease().is_none());
        assert_eq!(
            state.apply(&resign("e1", token, 2)),
            CommandResponse::StaleToken { current: None }
        );
    }

    #[test]
    fn resign_while_executing_puts_the_order_back_first() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[2], 0));
        state.apply(&enqueue("b", &[2], 0));
        let token = grant(&mut state, "e1", 100, 0);
        assert_eq!(dequeued_id(state.apply(&dequeue("e1", token, 1))), "a");
        assert_eq!(
            state.apply(&resign("e1", token, 2)),
            CommandResponse::Resigned {
                requeued_order_id: Some("a".into())
            }
        );
        assert_eq!(
            state.order_status("a").map(|record| &record.status),
            Some(&OrderStatus::Queued)
        );
        assert_eq!(peeked_ids(&state), ["a", "b"]);
        let next = grant(&mut state, "e2", 100, 3);
        assert_eq!(dequeued_id(state.apply(&dequeue("e2", next, 4))), "a");
    }

    #[test]
    fn an_expired_lease_returns_its_order_to_the_front() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        state.apply(&enqueue("b", &[1], 0));
        let token = grant(&mut state, "e1", 100, 0);
        dequeued_id(state.apply(&dequeue("e1", token, 1)));
        assert_eq!(
            state.executing().map(|record| record.order.order_id()),
            Some("a")
        );

        state.apply(&enqueue("c", &[1], 100));
        assert!(state.lease().is_none());
        assert!(state.executing().is_none());
        assert_eq!(peeked_ids(&state), ["a", "b", "c"]);
        assert_eq!(
            state.apply(&acknowledge("e1", token, "a", 101)),
            CommandResponse::StaleToken { current: None }
        );
    }

    #[test]
    fn one_command_groups_as_itself_and_several_as_a_batch() {
        let one = campaign("e1", 100, 1);
        let two = campaign("e2", 100, 2);
        assert_eq!(Command::group(vec![one.clone()]), one);
        assert_eq!(
            Command::group(vec![one.clone(), two.clone()]),
            Command::Batch(vec![one, two])
        );
        assert_eq!(Command::group(Vec::new()), Command::Batch(Vec::new()));
        let answer = CommandResponse::QueueEmpty;
        assert_eq!(answer.clone().ungroup(1), vec![answer.clone()]);
        let batch = CommandResponse::Batch(vec![answer.clone(), answer.clone()]);
        assert_eq!(batch.ungroup(2), vec![answer.clone(), answer.clone()]);
        // A lone command that is itself a batch keeps its answer whole.
        let nested = CommandResponse::Batch(vec![answer.clone()]);
        assert_eq!(nested.clone().ungroup(1), vec![nested]);
    }

    #[test]
    fn an_empty_batch_changes_nothing() {
        let mut state = QueueState::default();
        assert_eq!(
            state.apply(&Command::Batch(Vec::new())),
            CommandResponse::Batch(Vec::new())
        );
        assert_eq!(state, QueueState::default());
    }

    #[test]
    fn maybe_expire_lease_reports_whether_it_ended_the_lease() {
        let mut state = QueueState::default();
        assert!(!state.maybe_expire_lease());
        grant(&mut state, "e1", 100, 0);
        state.clock.elapsed_ms = 99;
        assert!(!state.maybe_expire_lease());
        state.clock.elapsed_ms = 100;
        assert!(state.maybe_expire_lease());
        assert!(state.lease().is_none());
    }

    #[test]
    fn dequeue_marks_the_order_executing_under_the_token() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        let token = grant(&mut state, "e1", 100, 0);
        assert_eq!(
            state.apply(&dequeue("e1", token, 5)),
            CommandResponse::Dequeued {
                order: order("a", &[1]),
                execution: None
            }
        );
        assert_eq!(
            state.order_status("a").map(|record| &record.status),
            Some(&OrderStatus::Executing {
                executor_id: "e1".into(),
                token,
                since_ms: 5
            })
        );
        assert_eq!(state.queue_depth(), 0);
    }

    #[test]
    fn dequeue_again_returns_the_order_already_executing() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        state.apply(&enqueue("b", &[9], 0));
        let token = grant(&mut state, "e1", 100, 0);
        let first = state.apply(&dequeue("e1", token, 1));
        let before_retry = state.clone();
        let retried = state.apply(&dequeue("e1", token, 1));
        assert_eq!(first, retried);
        assert_eq!(state, before_retry);
        assert_eq!(state.queue_depth(), 1);
    }

    #[test]
    fn dequeue_on_an_empty_queue_returns_queue_empty() {
        let mut state = QueueState::default();
        let token = grant(&mut state, "e1", 100, 0);
        assert_eq!(
            state.apply(&dequeue("e1", token, 1)),
            CommandResponse::QueueEmpty
        );
    }

    #[test]
    fn dequeue_needs_the_current_unexpired_token_of_its_holder() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        assert_eq!(
            state.apply(&dequeue("e1", 1, 0)),
            CommandResponse::StaleToken { current: None }
        );
        let token = grant(&mut state, "e1", 100, 0);
        let held = CommandResponse::StaleToken {
            current: Some(token),
        };
        assert_eq!(state.apply(&dequeue("e2", token, 1)), held);
        assert_eq!(state.apply(&dequeue("e1", token - 1, 1)), held);
        assert_eq!(state.apply(&dequeue("e1", token + 1, 1)), held);
        assert_eq!(
            state.apply(&dequeue("e1", token, 100)),
            CommandResponse::StaleToken { current: None }
        );
        assert_eq!(state.queue_depth(), 1);
    }

    #[test]
    fn acknowledge_marks_the_order_executed() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        let token = grant(&mut state, "e1", 100, 0);
        state.apply(&dequeue("e1", token, 1));
        assert_eq!(
            finish(&mut state, "e1", token, "a", 7),
            CommandResponse::Acknowledged {
                order_id: "a".into(),
                at_ms: 7
            }
        );
        assert_eq!(
            state.order_status("a").map(|record| &record.status),
            Some(&OrderStatus::Executed {
                executor_id: "e1".into(),
                token,
                at_ms: 7
            })
        );
        assert!(state.executing().is_none());
        assert_eq!(state.executed_count(), 1);
    }

    #[test]
    fn acknowledge_again_with_the_same_token_gives_the_same_answer() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        let token = grant(&mut state, "e1", 100, 0);
        state.apply(&dequeue("e1", token, 1));
        let first = finish(&mut state, "e1", token, "a", 7);
        let again = state.apply(&acknowledge("e1", token, "a", 8));
        state.apply(&resign("e1", token, 9));
        let after_resigning = state.apply(&acknowledge("e1", token, "a", 10));
        assert_eq!(first, again);
        assert_eq!(first, after_resigning);
        assert_eq!(state.executed_count(), 1);
    }

    #[test]
    fn acknowledge_with_another_token_is_refused() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        let first = grant(&mut state, "e1", 100, 0);
        state.apply(&dequeue("e1", first, 1));
        finish(&mut state, "e1", first, "a", 2);
        state.apply(&resign("e1", first, 3));
        let second = grant(&mut state, "e2", 100, 4);
        assert_eq!(
            state.apply(&acknowledge("e2", second, "a", 5)),
            CommandResponse::NotExecuting {
                order_id: "a".into(),
                status: OrderStatus::Executed {
                    executor_id: "e1".into(),
                    token: first,
                    at_ms: 2
                }
            }
        );
        assert_eq!(
            state.apply(&acknowledge("e1", second, "a", 5)),
            CommandResponse::StaleToken {
                current: Some(second)
            }
        );
    }

    #[test]
    fn acknowledge_of_an_order_not_executing_under_the_lease_is_refused() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        let token = grant(&mut state, "e1", 100, 0);
        assert_eq!(
            state.apply(&acknowledge("e1", token, "a", 1)),
            CommandResponse::NotExecuting {
                order_id: "a".into(),
                status: OrderStatus::Queued
            }
        );
        assert_eq!(
            state.apply(&acknowledge("e1", token, "nope", 1)),
            CommandResponse::UnknownOrder {
                order_id: "nope".into()
            }
        );
        assert_eq!(state.executed_count(), 0);
    }

    #[test]
    fn a_decision_is_recorded_once_and_the_first_stands() {
        let mut state = QueueState::default();
        assert_eq!(
            state.apply(&approve("a", &[2, 1], 1, 10)),
            CommandResponse::Decided {
                order_id: "a".into(),
                sequence: 0
            }
        );
        let before = state.clone();
        for (retry, at) in [(approve("a", &[9], 2, 11), 11), (reject("a", 1, 12), 12)] {
            assert_eq!(
                state.apply(&retry),
                CommandResponse::AlreadyDecided {
                    order_id: "a".into()
                },
                "at {at}"
            );
        }
        assert_eq!(state.orders, before.orders, "the first decision stands");
        let record = state.order_status("a").expect("decided");
        assert_eq!(record.status, OrderStatus::Queued);
        assert_eq!(record.order.priority(), 3);
        assert_eq!(
            record.checkout,
            Some(CheckoutRecord {
                request: digest(1, Some(1)),
                suggestions: vec![book("b1"), book("b2")],
            })
        );
        assert_eq!(peeked_ids(&state), ["a"]);
        assert_eq!(state.enqueued_count(), 1);
    }

    #[test]
    fn a_rejection_is_a_terminal_record_with_its_reasons() {
        let mut state = QueueState::default();
        assert_eq!(
            state.apply(&reject("r", 1, 10)),
            CommandResponse::Decided {
                order_id: "r".into(),
                sequence: 0
            }
        );
        let record = state.order_status("r").expect("recorded");
        assert_eq!(
            record.status,
            OrderStatus::Rejected {
                reasons: vec![reason("card_velocity")],
                at_ms: 10
            }
        );
        assert!(record.order.items().is_empty(), "its lines are not kept");
        assert_eq!(
            record.checkout.as_ref().map(|c| c.suggestions.len()),
            Some(0)
        );
        assert_eq!((state.queue_depth(), state.enqueued_count()), (0, 0));
        assert_eq!(state.rejected_count(), 1);
        assert!(matches!(
            state.apply(&enqueue("r", &[1], 11)),
            CommandResponse::AlreadyEnqueued {
                status: OrderStatus::Rejected { .. },
                ..
            }
        ));
        let token = grant(&mut state, "e1", 100, 12);
        assert_eq!(
            state.apply(&dequeue("e1", token, 13)),
            CommandResponse::QueueEmpty
        );
    }

    #[test]
    fn an_enqueued_order_is_not_decided_again() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        assert_eq!(
            state.apply(&approve("a", &[1], 1, 1)),
            CommandResponse::AlreadyDecided {
                order_id: "a".into()
            }
        );
        assert_eq!(state.order_status("a").map(|r| &r.checkout), Some(&None));
    }

    #[test]
    fn request_digests_match_on_the_body_and_on_the_card_when_both_have_one() {
        assert!(digest(1, Some(1)).matches(&digest(1, Some(1))));
        assert!(!digest(1, Some(1)).matches(&digest(2, Some(1))));
        assert!(!digest(1, Some(1)).matches(&digest(1, Some(2))));
        assert!(digest(1, None).matches(&digest(1, Some(2))));
        assert!(digest(1, Some(2)).matches(&digest(1, None)));
        assert!(!digest(1, None).matches(&digest(2, None)));
    }

    #[test]
    fn bounded_text_cuts_at_a_character_boundary() {
        assert_eq!(bounded_text("short"), "short");
        let long = "é".repeat(MAX_TEXT_BYTES);
        let cut = bounded_text(&long);
        assert!(cut.len() <= MAX_TEXT_BYTES && cut.len() >= MAX_TEXT_BYTES - 1);
        assert!(long.starts_with(&cut));
    }

    #[test]
    fn an_execution_is_recorded_once_under_the_lease() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        let token = grant(&mut state, "e1", 100, 0);
        state.apply(&dequeue("e1", token, 1));
        let recorded = CommandResponse::ExecutionRecorded {
            order_id: "a".into(),
            execution: Execution {
                executor_id: "e1".into(),
                incarnation: 1,
                token,
                at_ms: 5,
            },
        };
        assert_eq!(state.apply(&record("e1", token, "a", 5)), recorded);
        let before = state.clone();
        assert_eq!(state.apply(&record("e1", token, "a", 6)), recorded);
        assert_eq!(
            state.orders, before.orders,
            "a repeated record changes nothing"
        );
        state.apply(&resign("e1", token, 7));
        assert_eq!(
            state.apply(&record("e1", token, "a", 8)),
            recorded,
            "answered alike after the lease ended"
        );
    }

    #[test]
    fn acknowledge_needs_the_execution_recorded_first() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        let token = grant(&mut state, "e1", 100, 0);
        state.apply(&dequeue("e1", token, 1));
        let before = state.clone();
        assert_eq!(
            state.apply(&acknowledge("e1", token, "a", 2)),
            CommandResponse::NotRecorded {
                order_id: "a".into()
            }
        );
        assert_eq!(state.orders, before.orders);
        assert_eq!(state.executed_count(), 0);
    }

    /// Claim 5 of issue 15: a holder that executed an order and lost its lease before
    /// acknowledging it had the next holder execute it again.
    #[test]
    fn a_next_holder_finds_the_execution_recorded_and_only_acknowledges() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        let first = grant(&mut state, "e1", 100, 0);
        state.apply(&dequeue("e1", first, 1));
        state.apply(&record("e1", first, "a", 50));
        // e1 pauses past its lease; the order goes back to the queue with its record.
        let second = grant(&mut state, "e2", 100, 100);
        assert_eq!(
            state.order_status("a").map(|record| &record.status),
            Some(&OrderStatus::Queued)
        );
        let recorded_by_e1 = Execution {
            executor_id: "e1".into(),
            incarnation: 1,
            token: first,
            at_ms: 50,
        };
        assert_eq!(
            state.apply(&dequeue("e2", second, 101)),
            CommandResponse::Dequeued {
                order: order("a", &[1]),
                execution: Some(recorded_by_e1.clone())
            }
        );
        assert_eq!(
            state.apply(&record("e2", second, "a", 102)),
            CommandResponse::AlreadyExecuted {
                order_id: "a".into(),
                execution: recorded_by_e1.clone()
            }
        );
        assert_eq!(
            state.apply(&acknowledge("e2", second, "a", 103)),
            CommandResponse::Acknowledged {
                order_id: "a".into(),
                at_ms: 103
            }
        );
        let known = state.order_status("a").expect("known");
        assert_eq!(known.execution, Some(recorded_by_e1));
        assert_eq!(state.executed_count(), 1);
        // e1 comes back: it learns its execution counted, and cannot acknowledge.
        assert!(matches!(
            state.apply(&record("e1", first, "a", 104)),
            CommandResponse::ExecutionRecorded { .. }
        ));
        assert!(matches!(
            state.apply(&acknowledge("e1", first, "a", 104)),
            CommandResponse::StaleToken { .. }
        ));
    }

    #[test]
    fn a_deposed_or_foreign_holder_records_nothing() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        state.apply(&enqueue("b", &[1], 0));
        let first = grant(&mut state, "e1", 100, 0);
        state.apply(&dequeue("e1", first, 1));
        assert_eq!(
            state.apply(&record("e1", first, "b", 2)),
            CommandResponse::NotExecuting {
                order_id: "b".into(),
                status: OrderStatus::Queued
            }
        );
        assert_eq!(
            state.apply(&record("e1", first, "nope", 2)),
            CommandResponse::UnknownOrder {
                order_id: "nope".into()
            }
        );
        let second = grant(&mut state, "e2", 100, 100);
        assert_eq!(
            state.apply(&record("e1", first, "a", 101)),
            CommandResponse::StaleToken {
                current: Some(second)
            }
        );
        assert_eq!(state.order_status("a").map(|r| &r.execution), Some(&None));
    }

    #[test]
    fn time_never_goes_backwards_on_one_leaders_clock() {
        let mut state = QueueState::default();
        let token = grant(&mut state, "e1", 100, 1_000);
        state.apply(&enqueue("a", &[1], 1_100));
        assert!(state.lease().is_none(), "the lease expired at 1100");
        // Stamped earlier, applied later (requests race to the proposer): the time stays.
        state.apply(&enqueue("b", &[1], 500));
        assert_eq!(state.clock().elapsed_ms, 1_100);
        assert_eq!(
            state.order_status("b").map(|record| record.enqueued_at_ms),
            Some(1_100)
        );
        assert_eq!(
            state.apply(&dequeue("e1", token, 900)),
            CommandResponse::StaleToken { current: None }
        );
        assert_eq!(
            state.apply(&campaign("e2", 50, 0)),
            CommandResponse::LeaseGranted {
                token: token + 1,
                expires_at_ms: 1_150
            }
        );
    }

    /// Claim 4 of issue 14, skew: a leader grants e1 a 4 s lease; 500 ms later the next leader,
    /// whose wall clock is 10 s ahead, proposes e2's campaign. On wall-clock stamps e2 was granted
    /// at once, while e1 relied on its lease for 3.1 s more.
    #[test]
    fn a_next_leader_with_a_skewed_wall_clock_honours_the_lease_for_a_full_ttl() {
        const WALL_MS: u64 = 1_800_000_000_000;
        let mut state = QueueState::default();
        let first = reading(1, 1, WALL_MS, 1_000);
        grant(&mut state, "e1", 4_000, first);
        // Node 2 began leading 500 ms later by the real time, 10 s later by its wall clock.
        let skewed = |elapsed_ms| reading(2, 2, WALL_MS + 1_500 + 10_000, elapsed_ms);
        assert_eq!(
            state.apply(&campaign("e2", 4_000, skewed(0))),
            CommandResponse::LeaseHeld {
                holder: "e1".holder(),
                expires_at_ms: WALL_MS + 1_500 + 10_000 + 4_000
            }
        );
        assert!(matches!(
            state.apply(&campaign("e2", 4_000, skewed(3_999))),
            CommandResponse::LeaseHeld { .. }
        ));
        assert!(matches!(
            state.apply(&campaign("e2", 4_000, skewed(4_000))),
            CommandResponse::LeaseGranted { token: 2, .. }
        ));
    }

    /// Claim 4 of issue 14, jump: a leader whose clock is far ahead (on wall-clock stamps: a
    /// forward jump of 20 s; here: a leader that has led for days) grants e1 a 1 s lease and e1
    /// never renews. On wall-clock stamps every later leader's campaign was refused until its own
    /// clock passed the jumped one, 20 s later.
    #[test]
    fn how_far_an_earlier_leaders_clock_ran_does_not_hold_a_lease() {
        let mut state = QueueState::default();
        grant(&mut state, "e1", 1_000, reading(1, 1, 20_000, 400_000_000));
        let next = |elapsed_ms| reading(2, 2, 0, elapsed_ms);
        assert!(matches!(
            state.apply(&campaign("e2", 1_000, next(999))),
            CommandResponse::LeaseHeld { .. }
        ));
        assert!(matches!(
            state.apply(&campaign("e2", 1_000, next(1_000))),
            CommandResponse::LeaseGranted { token: 2, .. }
        ));
    }

    /// openraft lets a node that restarts resume leading its term; its clock starts from 0
    /// again. Had its readings joined the old run's, time would stand still until the new run
    /// caught up with how long the old one had led.
    #[test]
    fn a_restarted_leader_of_the_same_term_has_a_timeline_of_its_own() {
        let mut state = QueueState::default();
        grant(&mut state, "e1", 1_000, reading(3, 1, 0, 50_000));
        let restarted = |elapsed_ms| reading(3, 2, 0, elapsed_ms);
        assert!(matches!(
            state.apply(&campaign("e2", 1_000, restarted(10))),
            CommandResponse::LeaseHeld { .. }
        ));
        assert_eq!(state.lease_remaining_ms(None), 990);
        assert!(matches!(
            state.apply(&campaign("e2", 1_000, restarted(1_000))),
            CommandResponse::LeaseGranted { token: 2, .. }
        ));
    }

    /// A command stamped by the leader of an earlier term (held up in its queue across an
    /// election) moves no time, and may not set a lease's expiry: the state's time may have been
    /// read before that executor asked.
    #[test]
    fn an_earlier_terms_stamp_moves_no_time_and_sets_no_expiry() {
        let mut state = QueueState::default();
        let token = grant(&mut state, "e1", 1_000, reading(2, 1, 0, 100));
        state.apply(&enqueue("a", &[1], reading(3, 1, 5_000, 200)));
        let before = state.clone();
        let old = reading(2, 1, 0, 900);
        let stale = CommandResponse::StaleStamp {
            stamped_term: 2,
            current_term: 3,
        };
        assert_eq!(state.apply(&renew("e1", token, 1_000, old)), stale);
        assert_eq!(state.apply(&campaign("e2", 1_000, old)), stale);
        assert_eq!(state, before);
        state.apply(&enqueue("b", &[1], old));
        assert_eq!(state.clock(), before.clock());
        assert_eq!(
            state.order_status("b").map(|record| record.enqueued_at_ms),
            Some(5_200),
            "shown at the state's time"
        );
        // The executor's calls under its lease are judged by the state's time, whatever their
        // stamp: the lease is still valid.
        assert!(matches!(
            state.apply(&dequeue("e1", token, old)),
            CommandResponse::Dequeued { .. }
        ));
    }

    #[test]
    fn the_lease_left_is_read_on_the_leaders_clock_now() {
        let mut state = QueueState::default();
        assert_eq!(state.lease_remaining_ms(None), 0);
        grant(&mut state, "e1", 1_000, reading(4, 1, 0, 300));
        assert_eq!(
            state.lease_remaining_ms(None),
            1_000,
            "as of the last command"
        );
        let same = |elapsed_ms| reading(4, 1, 0, elapsed_ms);
        assert_eq!(state.lease_remaining_ms(Some(&same(800))), 500);
        assert_eq!(state.lease_remaining_ms(Some(&same(200))), 1_000);
        assert_eq!(state.lease_remaining_ms(Some(&same(5_000))), 0);
        let next_leader = reading(5, 1, 0, 250);
        assert_eq!(state.lease_remaining_ms(Some(&next_leader)), 750);
        let earlier = reading(3, 1, 0, 10_000);
        assert_eq!(state.lease_remaining_ms(Some(&earlier)), 1_000);
    }

    #[test]
    fn shown_times_are_the_timelines_wall_clock_plus_its_monotonic_time() {
        let mut state = QueueState::default();
        let began = 1_800_000_000_000;
        let token = grant(&mut state, "e1", 1_000, reading(1, 1, began, 40));
        assert_eq!(
            state.lease().map(|lease| lease.expires_at_ms),
            Some(began + 1_040)
        );
        state.apply(&enqueue("a", &[1], reading(1, 1, began, 60)));
        assert_eq!(
            state.order_status("a").map(|record| record.enqueued_at_ms),
            Some(began + 60)
        );
        // A new leader whose wall clock is an hour behind: the held-over lease is shown ending a
        // TTL after it began, on its wall clock.
        let behind = began - 3_600_000;
        state.apply(&dequeue("e1", token, reading(2, 2, behind, 5)));
        assert_eq!(
            state.lease().map(|lease| lease.expires_at_ms),
            Some(behind + 1_000)
        );
    }

    /// Older data is refused rather than misread (module doc, "Format"): the commands and the
    /// state as the queue encoded them when commands carried a wall-clock `now_ms`.
    #[test]
    fn entries_and_snapshots_of_the_older_format_are_refused() {
        use std::collections::BTreeMap;

        #[derive(Serialize)]
        enum OlderCommand {
            Enqueue {
                order: QueuedOrder,
                now_ms: u64,
            },
            Campaign {
                executor_id: String,
                ttl_ms: u64,
                now_ms: u64,
            },
            RenewLease {
                executor_id: String,
                token: u64,
                ttl_ms: u64,
                now_ms: u64,
            },
            Resign {
                executor_id: String,
                token: u64,
                now_ms: u64,
            },
            Dequeue {
                executor_id: String,
                token: u64,
                now_ms: u64,
            },
            Acknowledge {
                executor_id: String,
                token: u64,
                order_id: String,
                now_ms: u64,
            },
            Batch(Vec<OlderCommand>),
        }

        #[derive(Serialize)]
        struct OlderLease {
            holder: String,
            token: u64,
            expires_at_ms: u64,
        }

        #[derive(Serialize)]
        struct OlderState {
            orders: BTreeMap<String, OrderRecord>,
            ready: BTreeMap<DequeueKey, String>,
            executing_order: Option<String>,
            lease: Option<OlderLease>,
            last_granted_token: u64,
            next_sequence: u64,
            executed_count: u64,
            clock_ms: u64,
        }

        let now_ms = 1_795_773_600_000;
        let executor_id = "executor-1".to_owned();
        let commands = [
            OlderCommand::Enqueue {
                order: order("a", &[2]),
                now_ms,
            },
            OlderCommand::Campaign {
                executor_id: executor_id.clone(),
                ttl_ms: 2_000,
                now_ms,
            },
            OlderCommand::RenewLease {
                executor_id: executor_id.clone(),
                token: 1,
                ttl_ms: 2_000,
                now_ms,
            },
            OlderCommand::Resign {
                executor_id: executor_id.clone(),
                token: 1,
                now_ms,
            },
            OlderCommand::Dequeue {
                executor_id: executor_id.clone(),
                token: 1,
                now_ms,
            },
            OlderCommand::Acknowledge {
                executor_id: executor_id.clone(),
                token: 1,
                order_id: "a".into(),
                now_ms,
            },
        ];
        let batch = OlderCommand::Batch(vec![
            OlderCommand::Dequeue {
                executor_id: executor_id.clone(),
                token: 1,
                now_ms,
            },
            OlderCommand::Resign {
                executor_id,
                token: 1,
                now_ms,
            },
        ]);
        for command in commands.iter().chain([&batch]) {
            let bytes = crate::codec::encode(command).expect("encodes");
            let error = crate::codec::decode::<Command>(&bytes).expect_err("older command refused");
            assert!(
                error.to_string().contains("older queue-node"),
                "unexpected error: {error}"
            );
        }

        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 5));
        let older = OlderState {
            orders: state
                .orders
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ready: state.ready.iter().map(|(k, v)| (*k, v.clone())).collect(),
            executing_order: None,
            lease: Some(OlderLease {
                holder: "executor-1".into(),
                token: 1,
                expires_at_ms: now_ms,
            }),
            last_granted_token: 1,
            next_sequence: 1,
            executed_count: 0,
            clock_ms: now_ms,
        };
        let bytes = crate::codec::encode(&older).expect("encodes");
        let error = crate::codec::decode::<QueueState>(&bytes).expect_err("older state refused");
        assert!(error.to_string().contains("older queue-node"), "{error}");
    }

    /// Data of the earlier tagged formats is refused as well: before checkout decisions and
    /// execution records (tag `0xC10C_0002`), and before priority with aging (`0xC10C_0003`,
    /// whose stamps were laid out as today's): a command and a state as those formats began them.
    #[test]
    fn entries_and_snapshots_of_the_previous_tagged_formats_are_refused() {
        for tag in [0xC10C_0002u32, 0xC10C_0003] {
            let previous_tag = crate::codec::encode(&tag).expect("encodes");
            let mut stamp = previous_tag.clone();
            stamp.extend(crate::codec::encode(&ONE_LEADER).expect("encodes"));
            stamp.extend(crate::codec::encode(&5u64).expect("encodes"));
            let mut command = crate::codec::encode(&2u32).expect("encodes");
            command.extend(&stamp);
            let error = crate::codec::decode::<Command>(&command).expect_err("refused");
            assert!(error.to_string().contains("older queue-node"), "{error}");
            let error = crate::codec::decode::<QueueState>(&previous_tag).expect_err("refused");
            assert!(error.to_string().contains("older queue-node"), "{error}");
        }
    }

    #[test]
    fn state_survives_a_bincode_round_trip() {
        let mut state = QueueState::default();
        state.apply(&enqueue("a", &[1], 0));
        state.apply(&enqueue("b", &[3], 0));
        let token = grant(&mut state, "e1", 100, 0);
        state.apply(&dequeue("e1", token, 1));
        state.apply(&record("e1", token, "b", 2));
        state.apply(&reject("c", 7, 3));
        let bytes = bincode::serialize(&state).expect("state encodes");
        let decoded: QueueState = bincode::deserialize(&bytes).expect("state decodes");
        assert_eq!(decoded, state);
    }

    /// The structural invariants of the module doc, checked from the private fields.
    fn check_invariants(state: &QueueState) -> Result<(), TestCaseError> {
        let queued = state
            .orders
            .values()
            .filter(|record| record.status == OrderStatus::Queued)
            .count();
        prop_assert_eq!(queued, state.ready.len());
        for (key, order_id) in &state.ready {
            let record = &state.orders[order_id];
            prop_assert_eq!(&record.status, &OrderStatus::Queued);
            prop_assert_eq!(*key, DequeueKey::of(record));
        }
        let executing: Vec<&OrderRecord> = state
            .orders
            .values()
            .filter(|record| matches!(record.status, OrderStatus::Executing { .. }))
            .collect();
        prop_assert_eq!(
            executing.len(),
            usize::from(state.executing_order.is_some())
        );
        if let Some(record) = executing.first() {
            prop_assert_eq!(
                Some(record.order.order_id()),
                state.executing_order.as_deref()
            );
            let lease = state
                .lease
                .as_ref()
                .expect("an order executes only under a lease");
            let OrderStatus::Executing {
                executor_id, token, ..
            } = &record.status
            else {
                unreachable!("filtered on Executing")
            };
            prop_assert_eq!(executor_id, &lease.holder.executor_id);
            prop_assert_eq!(*token, lease.token);
        }
        let mut executed = 0;
        let mut rejected = 0;
        for record in state.orders.values() {
            if let Some(execution) = &record.execution {
                prop_assert!(execution.token <= state.last_granted_token);
            }
            match &record.status {
                OrderStatus::Executed { token, .. } => {
                    executed += 1;
                    let execution = record.execution.as_ref();
                    prop_assert!(execution.is_some(), "executed without a record");
                    prop_assert!(execution.is_some_and(|execution| execution.token <= *token));
                }
                OrderStatus::Rejected { reasons, .. } => {
                    rejected += 1;
                    prop_assert!(!reasons.is_empty());
                    prop_assert!(record.checkout.is_some());
                    prop_assert!(record.execution.is_none());
                    prop_assert!(record.order.items().is_empty());
                }
                OrderStatus::Queued | OrderStatus::Executing { .. } => {}
            }
        }
        prop_assert_eq!(executed, state.executed_count);
        prop_assert_eq!(rejected, state.rejected_count);
        if let Some(lease) = &state.lease {
            prop_assert!(lease.token <= state.last_granted_token);
        }
        Ok(())
    }

    #[derive(Debug, Clone)]
    enum TokenChoice {
        /// The last token this executor was granted.
        Own,
        /// The token of the lease in force, whoever holds it.
        Current,
        /// One less than the executor's own token.
        Previous,
        Arbitrary(u64),
    }

    #[derive(Debug, Clone)]
    enum OrderChoice {
        /// Whatever order is executing now (an unknown id if none).
        Executing,
        Numbered(u8),
    }

    #[derive(Debug, Clone)]
    enum Step {
        Enqueue {
            order: u8,
            quantities: Vec<u32>,
        },
        /// A checkout decision on `order`, for a request with digest `body`.
        Decide {
            order: u8,
            quantities: Vec<u32>,
            approved: bool,
            body: u8,
        },
        Campaign {
            executor: usize,
            ttl_ms: u64,
        },
        /// The executor's process restarts: a new incarnation, which campaigns at once (as after
        /// reading a stale "free" lease). Its tokens are the earlier run's.
        Restart {
            executor: usize,
            ttl_ms: u64,
        },
        Renew {
            executor: usize,
            token: TokenChoice,
            ttl_ms: u64,
        },
        Resign {
            executor: usize,
            token: TokenChoice,
        },
        Dequeue {
            executor: usize,
            token: TokenChoice,
        },
        Record {
            executor: usize,
            token: TokenChoice,
            order: OrderChoice,
        },
        Acknowledge {
            executor: usize,
            token: TokenChoice,
            order: OrderChoice,
        },
    }

    const EXECUTORS: [&str; 3] = ["executor-0", "executor-1", "executor-2"];

    fn token_choice() -> impl Strategy<Value = TokenChoice> {
        prop_oneof![
            4 => Just(TokenChoice::Own),
            1 => Just(TokenChoice::Current),
            1 => Just(TokenChoice::Previous),
            1 => (0u64..20).prop_map(TokenChoice::Arbitrary),
        ]
    }

    fn order_choice() -> impl Strategy<Value = OrderChoice> {
        prop_oneof![
            3 => Just(OrderChoice::Executing),
            1 => (0u8..12).prop_map(OrderChoice::Numbered),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        let executor = 0..EXECUTORS.len();
        prop_oneof![
            2 => (0u8..12, vec(0u32..5, 0..4))
                .prop_map(|(order, quantities)| Step::Enqueue { order, quantities }),
            2 => (0u8..12, vec(1u32..5, 1..4), proptest::bool::weighted(0.7), 0u8..3)
                .prop_map(|(order, quantities, approved, body)| Step::Decide {
                    order,
                    quantities,
                    approved,
                    body,
                }),
            2 => (executor.clone(), 1u64..200)
                .prop_map(|(executor, ttl_ms)| Step::Campaign { executor, ttl_ms }),
            1 => (executor.clone(), 1u64..200)
                .prop_map(|(executor, ttl_ms)| Step::Restart { executor, ttl_ms }),
            1 => (executor.clone(), token_choice(), 1u64..200)
                .prop_map(|(executor, token, ttl_ms)| Step::Renew { executor, token, ttl_ms }),
            1 => (executor.clone(), token_choice())
                .prop_map(|(executor, token)| Step::Resign { executor, token }),
            3 => (executor.clone(), token_choice())
                .prop_map(|(executor, token)| Step::Dequeue { executor, token }),
            3 => (executor.clone(), token_choice(), order_choice())
                .prop_map(|(executor, token, order)| Step::Record { executor, token, order }),
            3 => (executor, token_choice(), order_choice())
                .prop_map(|(executor, token, order)| Step::Acknowledge { executor, token, order }),
        ]
    }

    /// How the stamp of a step's command differs from the previous one's.
    #[derive(Debug, Clone)]
    enum TimeMove {
        /// The same leader's clock read this much later (earlier, for a command stamped before
        /// the previous one but applied after it).
        Advance(i64),
        /// Another leader took over: the next term, or with `same_term` the same node restarted
        /// within its term, read `elapsed_ms` after it began.
        NewLeader { same_term: bool, elapsed_ms: u64 },
        /// Stamped by the leader of the term before, before the current leader began (a command
        /// held up across an election).
        Stale,
    }

    fn time_move() -> impl Strategy<Value = TimeMove> {
        prop_oneof![
            12 => (-30i64..100).prop_map(TimeMove::Advance),
            1 => (any::<bool>(), 0u64..50)
                .prop_map(|(same_term, elapsed_ms)| TimeMove::NewLeader { same_term, elapsed_ms }),
            1 => Just(TimeMove::Stale),
        ]
    }

    /// Steps, each with how its stamp moved from the previous one.
    fn timed_steps() -> impl Strategy<Value = Vec<(Step, TimeMove)>> {
        vec((step(), time_move()), 0..150)
    }

    /// Drives one state through generated steps, checking every property after each command,
    /// and records the commands applied and their answers.
    struct Driver {
        state: QueueState,
        commands: Vec<Command>,
        responses: Vec<CommandResponse>,
        /// The current leader's latest reading.
        now: Stamp,
        /// The previous leader's last reading, once there was one of an earlier term.
        earlier_term: Option<Stamp>,
        /// Leaders so far; numbers each one's incarnation.
        leaders: u64,
        /// Each executor's current run.
        incarnations: [u64; EXECUTORS.len()],
        own_tokens: [u64; EXECUTORS.len()],
        last_granted: u64,
        /// Orders queued to be executed (enqueued, or approved at checkout).
        enqueued: BTreeSet<String>,
        rejected: BTreeSet<String>,
        /// Every execution record written, as first written.
        recorded: std::collections::BTreeMap<String, Execution>,
        executed: BTreeSet<String>,
    }

    impl Driver {
        fn new() -> Self {
            Self {
                state: QueueState::default(),
                commands: Vec::new(),
                responses: Vec::new(),
                now: Stamp::new(ONE_LEADER, 0),
                earlier_term: None,
                leaders: 1,
                incarnations: [1; EXECUTORS.len()],
                own_tokens: [0; EXECUTORS.len()],
                last_granted: 0,
                enqueued: BTreeSet::new(),
                rejected: BTreeSet::new(),
                recorded: std::collections::BTreeMap::new(),
                executed: BTreeSet::new(),
            }
        }

        fn holder(&self, executor: usize) -> Holder {
            Holder::new(EXECUTORS[executor], self.incarnations[executor])
        }

        fn token(&self, executor: usize, choice: &TokenChoice) -> u64 {
            match choice {
                TokenChoice::Own => self.own_tokens[executor],
                TokenChoice::Current => self.state.lease().map_or(0, |lease| lease.token),
                TokenChoice::Previous => self.own_tokens[executor].saturating_sub(1),
                TokenChoice::Arbitrary(token) => *token,
            }
        }

        fn order_id(&self, choice: &OrderChoice) -> String {
            match choice {
                OrderChoice::Executing => self
                    .state
                    .executing()
                    .map_or("order-none".to_owned(), |record| {
                        record.order.order_id().to_owned()
                    }),
                OrderChoice::Numbered(order) => format!("order-{order}"),
            }
        }

        fn command(&mut self, step: &Step, at: Stamp) -> Command {
            match step {
                Step::Enqueue { order, quantities } => {
                    enqueue(&format!("order-{order}"), quantities, at)
                }
                Step::Decide {
                    order: number,
                    quantities,
                    approved,
                    body,
                } => {
                    let order_id = format!("order-{number}");
                    let verdict = if *approved {
                        Verdict::Approved {
                            suggestions: vec![book("b1")],
                        }
                    } else {
                        Verdict::Rejected {
                            reasons: vec![reason("card_velocity")],
                        }
                    };
                    Command::Decide {
                        at,
                        decision: Decision {
                            order: order(&order_id, quantities),
                            request: digest(*body, Some(*body)),
                            verdict,
                        },
                    }
                }
                Step::Campaign { executor, ttl_ms } => {
                    campaign(&self.holder(*executor), *ttl_ms, at)
                }
                Step::Restart { executor, ttl_ms } => {
                    self.incarnations[*executor] += 1;
                    campaign(&self.holder(*executor), *ttl_ms, at)
                }
                Step::Renew {
                    executor,
                    token,
                    ttl_ms,
                } => renew(
                    &self.holder(*executor),
                    self.token(*executor, token),
                    *ttl_ms,
                    at,
                ),
                Step::Resign { executor, token } => {
                    resign(&self.holder(*executor), self.token(*executor, token), at)
                }
                Step::Dequeue { executor, token } => {
                    dequeue(&self.holder(*executor), self.token(*executor, token), at)
                }
                Step::Record {
                    executor,
                    token,
                    order,
                } => record(
                    &self.holder(*executor),
                    self.token(*executor, token),
                    &self.order_id(order),
                    at,
                ),
                Step::Acknowledge {
                    executor,
                    token,
                    order,
                } => acknowledge(
                    &self.holder(*executor),
                    self.token(*executor, token),
                    &self.order_id(order),
                    at,
                ),
            }
        }

        /// How the lease of `before` stands at `at`, decided from the lease and the clock alone
        /// rather than from the code under test: on the same timeline time is the latest reading;
        /// a newer one honours the lease a full TTL from its start; an older one moves nothing.
        /// `Some(lease)` when a lease is in force then.
        fn lease_in_force<'s>(before: &'s QueueState, at: &Stamp) -> Option<&'s Lease> {
            let clock = before.clock();
            before.lease().filter(|lease| {
                let (elapsed_ms, expires_after_ms) = if at.timeline == clock.timeline {
                    (clock.elapsed_ms.max(at.elapsed_ms), lease.expires_after_ms)
                } else if at.timeline.term >= clock.timeline.term {
                    (at.elapsed_ms, lease.ttl_ms)
                } else {
                    (clock.elapsed_ms, lease.expires_after_ms)
                };
                elapsed_ms < expires_after_ms
            })
        }

        /// Whether `before` should honour `token` from `holder` at `at`.
        fn lease_valid(before: &QueueState, holder: &Holder, token: u64, at: &Stamp) -> bool {
            Self::lease_in_force(before, at)
                .is_some_and(|lease| lease.holder == *holder && lease.token == token)
        }

        fn apply(&mut self, command: Command) -> Result<CommandResponse, TestCaseError> {
            let before = self.state.clone();
            let response = self.state.apply(&command);
            check_invariants(&self.state)?;
            let (was, is) = (before.clock(), self.state.clock());
            let queue_time_moved = self.state.queue_time_ms() - before.queue_time_ms();
            if was.timeline == is.timeline {
                prop_assert_eq!(queue_time_moved, is.elapsed_ms - was.elapsed_ms);
            } else {
                prop_assert_eq!(
                    queue_time_moved,
                    is.elapsed_ms,
                    "a new timeline adds its reading"
                );
            }
            self.check_response(&before, &command, &response)?;
            prop_assert_eq!(
                self.state.queue_depth()
                    + usize::from(self.state.executing().is_some())
                    + self.state.executed_count() as usize,
                self.enqueued.len(),
                "every distinct queued order is queued, executing or executed, once"
            );
            prop_assert_eq!(self.state.rejected_count() as usize, self.rejected.len());
            prop_assert_eq!(
                self.state.orders.len(),
                self.enqueued.len() + self.rejected.len()
            );
            for order_id in &self.executed {
                prop_assert!(
                    matches!(
                        self.state
                            .order_status(order_id)
                            .map(|record| &record.status),
                        Some(OrderStatus::Executed { .. })
                    ),
                    "an executed order stays executed"
                );
            }
            for (order_id, execution) in &self.recorded {
                prop_assert_eq!(
                    self.state
                        .order_status(order_id)
                        .and_then(|record| record.execution.as_ref()),
                    Some(execution),
                    "an execution record never changes"
                );
            }
            self.commands.push(command);
            self.responses.push(response.clone());
            Ok(response)
        }

        fn check_response(
            &mut self,
            before: &QueueState,
            command: &Command,
            response: &CommandResponse,
        ) -> Result<(), TestCaseError> {
            let at = stamp_of(command).expect("generated commands are not batches");
            let stale_stamp = at.timeline.term < before.clock().timeline.term;
            let nobody = Holder::new("", 0);
            let (holder, token) = match command {
                Command::RenewLease { holder, token, .. }
                | Command::Resign { holder, token, .. }
                | Command::Dequeue { holder, token, .. }
                | Command::RecordExecution { holder, token, .. }
                | Command::Acknowledge { holder, token, .. } => (holder, *token),
                Command::Enqueue { .. }
                | Command::Decide { .. }
                | Command::Campaign { .. }
                | Command::Batch(_) => (&nobody, 0),
            };
            let valid = Self::lease_valid(before, holder, token, &at);
            if matches!(
                command,
                Command::Campaign { .. } | Command::RenewLease { .. }
            ) {
                prop_assert_eq!(
                    matches!(response, CommandResponse::StaleStamp { .. }),
                    stale_stamp,
                    "only a campaign or renewal stamped on an earlier term is refused as stale: {:?}",
                    command
                );
            }
            match (command, response) {
                (Command::Enqueue { order, .. }, CommandResponse::Enqueued { sequence, .. }) => {
                    prop_assert!(self.enqueued.insert(order.order_id().to_owned()));
                    prop_assert_eq!(*sequence, before.next_sequence);
                }
                (Command::Enqueue { order, .. }, CommandResponse::AlreadyEnqueued { .. }) => {
                    prop_assert!(before.orders.contains_key(order.order_id()));
                }
                (Command::Decide { decision, .. }, CommandResponse::Decided { sequence, .. }) => {
                    let order_id = decision.order.order_id().to_owned();
                    prop_assert!(!before.orders.contains_key(&order_id));
                    prop_assert_eq!(*sequence, before.next_sequence);
                    let record = &self.state.orders[&order_id];
                    prop_assert_eq!(
                        record.checkout.as_ref().map(|checkout| &checkout.request),
                        Some(&decision.request)
                    );
                    match decision.verdict {
                        Verdict::Approved { .. } => prop_assert!(self.enqueued.insert(order_id)),
                        Verdict::Rejected { .. } => prop_assert!(self.rejected.insert(order_id)),
                    }
                }
                (Command::Decide { decision, .. }, CommandResponse::AlreadyDecided { .. }) => {
                    let order_id = decision.order.order_id();
                    prop_assert!(before.orders.contains_key(order_id));
                    // Its status may move (a lease that expired as the command was applied gives
                    // its order back); what was decided and recorded stays.
                    let (was, is) = (&before.orders[order_id], &self.state.orders[order_id]);
                    prop_assert_eq!(
                        (&was.order, was.sequence, &was.checkout, &was.execution),
                        (&is.order, is.sequence, &is.checkout, &is.execution),
                        "the first decision stands"
                    );
                }
                (Command::Campaign { holder, .. }, CommandResponse::LeaseGranted { token, .. }) => {
                    prop_assert!(
                        Self::lease_in_force(before, &at).is_none(),
                        "granted while a lease is in force: {:?}",
                        command
                    );
                    prop_assert!(*token > self.last_granted, "tokens grow with each grant");
                    self.last_granted = *token;
                    // The drainer is not one of the generated executors.
                    if let Some(executor) = EXECUTORS
                        .iter()
                        .position(|name| *name == holder.executor_id)
                    {
                        self.own_tokens[executor] = *token;
                    }
                }
                (Command::RenewLease { .. }, CommandResponse::LeaseRenewed { token, .. }) => {
                    prop_assert!(valid);
                    prop_assert_eq!(Some(*token), self.state.lease().map(|lease| lease.token));
                }
                (Command::Campaign { .. }, CommandResponse::LeaseHeld { holder, .. }) => {
                    let lease = Self::lease_in_force(before, &at);
                    prop_assert_eq!(lease.map(|lease| &lease.holder), Some(holder));
                    // A new timeline may move the expiry; the lease stays the holder's.
                    prop_assert_eq!(
                        self.state.lease().map(|lease| (&lease.holder, lease.token)),
                        lease.map(|lease| (&lease.holder, lease.token)),
                        "a refused campaign changes the lease"
                    );
                }
                (
                    Command::Campaign { .. } | Command::RenewLease { .. },
                    CommandResponse::StaleStamp { .. },
                ) => prop_assert_eq!(&self.state, before, "a stale stamp changed the state"),
                (_, CommandResponse::StaleToken { .. }) => {
                    prop_assert!(!valid, "a valid token was refused: {:?}", command);
                }
                (Command::Resign { .. }, CommandResponse::Resigned { .. }) => prop_assert!(valid),
                (Command::Dequeue { .. }, CommandResponse::QueueEmpty) => {
                    prop_assert!(valid);
                    prop_assert_eq!(self.state.queue_depth(), 0);
                }
                (Command::Dequeue { .. }, CommandResponse::Dequeued { order, execution }) => {
                    prop_assert!(
                        valid,
                        "dequeue with an invalid token succeeded: {:?}",
                        command
                    );
                    let record = &self.state.orders[order.order_id()];
                    prop_assert_eq!(execution, &record.execution);
                    let retried = before.executing().map(|record| record.order.order_id())
                        == Some(order.order_id());
                    if !retried {
                        let taken = aged_rank(record);
                        let ranked_before = self.state.orders.values().find(|waiting| {
                            waiting.status == OrderStatus::Queued && aged_rank(waiting) < taken
                        });
                        prop_assert!(
                            ranked_before.is_none(),
                            "{:?} was dequeued while {:?} ranked before it",
                            record,
                            ranked_before
                        );
                    }
                }
                (
                    Command::RecordExecution { order_id, .. },
                    CommandResponse::ExecutionRecorded { execution, .. },
                ) => {
                    let was = before
                        .order_status(order_id)
                        .and_then(|record| record.execution.as_ref());
                    if was.is_some() {
                        prop_assert_eq!(
                            was,
                            Some(execution),
                            "a repeated record is answered alike"
                        );
                        prop_assert_eq!(
                            (execution.token, &execution.executor_id),
                            (token, &holder.executor_id)
                        );
                    } else {
                        prop_assert!(
                            valid,
                            "a record with an invalid token succeeded: {:?}",
                            command
                        );
                        prop_assert_eq!(before.executing_order.as_deref(), Some(order_id.as_str()));
                        prop_assert_eq!(execution.token, token);
                        prop_assert!(
                            self.recorded
                                .insert(order_id.clone(), execution.clone())
                                .is_none(),
                            "recorded twice"
                        );
                    }
                }
                (
                    Command::RecordExecution { order_id, .. },
                    CommandResponse::AlreadyExecuted { execution, .. },
                ) => {
                    prop_assert!(valid);
                    prop_assert_eq!(self.recorded.get(order_id), Some(execution));
                    prop_assert!(execution.token != token);
                }
                (Command::Acknowledge { order_id, .. }, CommandResponse::Acknowledged { .. }) => {
                    let was = before.order_status(order_id).map(|record| &record.status);
                    if let Some(OrderStatus::Executed {
                        executor_id: by,
                        token: under,
                        ..
                    }) = was
                    {
                        prop_assert_eq!((by, *under), (&holder.executor_id, token));
                        prop_assert_eq!(
                            before.order_status(order_id),
                            self.state.order_status(order_id)
                        );
                    } else {
                        prop_assert!(
                            valid,
                            "acknowledge with an invalid token succeeded: {:?}",
                            command
                        );
                        prop_assert!(
                            self.recorded.contains_key(order_id),
                            "acknowledged without an execution record"
                        );
                        prop_assert!(self.executed.insert(order_id.clone()), "executed twice");
                    }
                }
                (Command::Acknowledge { order_id, .. }, CommandResponse::NotRecorded { .. }) => {
                    prop_assert!(valid);
                    prop_assert!(!self.recorded.contains_key(order_id));
                }
                (
                    Command::Acknowledge { .. } | Command::RecordExecution { .. },
                    CommandResponse::UnknownOrder { .. } | CommandResponse::NotExecuting { .. },
                ) => prop_assert!(valid),
                (command, response) => {
                    prop_assert!(false, "unexpected answer {:?} to {:?}", response, command)
                }
            }
            Ok(())
        }

        fn run(&mut self, steps: &[(Step, TimeMove)]) -> Result<(), TestCaseError> {
            for (step, time) in steps {
                let at = self.stamp(time);
                let command = self.command(step, at);
                self.apply(command)?;
            }
            Ok(())
        }

        /// The stamp of the next command, moved from the last one by `time`.
        fn stamp(&mut self, time: &TimeMove) -> Stamp {
            match time {
                TimeMove::Advance(ms) => {
                    self.now.elapsed_ms = self.now.elapsed_ms.saturating_add_signed(*ms);
                    self.now
                }
                TimeMove::NewLeader {
                    same_term,
                    elapsed_ms,
                } => {
                    let term = self.now.timeline.term + u64::from(!same_term);
                    if !same_term {
                        self.earlier_term = Some(self.now);
                    }
                    self.leaders += 1;
                    self.now = reading(term, self.leaders, self.leaders * 1_000, *elapsed_ms);
                    self.now
                }
                TimeMove::Stale => self.earlier_term.unwrap_or(self.now),
            }
        }

        /// Long after every lease expired, one executor takes every order left: it records the
        /// execution of each that has none, and acknowledges each.
        fn drain(&mut self) -> Result<(), TestCaseError> {
            self.leaders += 1;
            let term = self.state.clock().timeline.term + 1;
            let at = reading(term, self.leaders, 0, 1_000_000);
            let drainer = Holder::new("drainer", 1);
            let CommandResponse::LeaseGranted { token, .. } =
                self.apply(campaign(&drainer, 1_000_000, at))?
            else {
                return Err(TestCaseError::fail("the drainer was not granted the lease"));
            };
            for _ in 0..=self.enqueued.len() {
                match self.apply(dequeue(&drainer, token, at))? {
                    CommandResponse::Dequeued { order, execution } => {
                        if execution.is_none() {
                            let recorded =
                                self.apply(record(&drainer, token, order.order_id(), at))?;
                            prop_assert!(
                                matches!(recorded, CommandResponse::ExecutionRecorded { .. }),
                                "the drainer's record was refused: {:?}",
                                recorded
                            );
                        }
                        let response =
                            self.apply(acknowledge(&drainer, token, order.order_id(), at))?;
                        prop_assert!(
                            matches!(response, CommandResponse::Acknowledged { .. }),
                            "the drainer's acknowledgement was refused: {:?}",
                            response
                        );
                    }
                    CommandResponse::QueueEmpty => break,
                    other => return Err(TestCaseError::fail(format!("drain got {other:?}"))),
                }
            }
            prop_assert_eq!(
                &self.executed,
                &self.enqueued,
                "every order executed exactly once"
            );
            prop_assert_eq!(
                self.recorded.keys().collect::<BTreeSet<_>>(),
                self.enqueued.iter().collect::<BTreeSet<_>>(),
                "every order has one execution record"
            );
            Ok(())
        }
    }

    /// What happens in the real-time model of [`RealTime`].
    #[derive(Debug, Clone)]
    enum Happening {
        /// Real time passes.
        Wait { ms: u64 },
        /// A new leader begins `after_ms` from now: the next term, or with `same_term` the same
        /// node restarted within its term. Its monotonic clock runs at `rate_ppm` millionths of
        /// real time; its wall clock is `wall_skew_ms` off, which must not matter.
        Elect {
            same_term: bool,
            after_ms: u64,
            rate_ppm: u64,
            wall_skew_ms: i64,
        },
        /// `executor` asked for the lease (a renewal of its own, with `renew`) `asked_ago_ms` ago;
        /// the leader stamped it `stamp_lag_ms` after that (with `stale`, the leader of an earlier
        /// term did, before its successor began), and it is applied `apply_lag_ms` later.
        Ask {
            executor: usize,
            renew: bool,
            ttl_ms: u64,
            asked_ago_ms: u64,
            stamp_lag_ms: u64,
            apply_lag_ms: u64,
            stale: bool,
        },
        /// `executor` campaigns `late_us` after the moment the current leader's clock says the
        /// lease ends, the moment a grant is most likely to overlap the holder's reliance.
        Pounce { executor: usize, late_us: u64 },
    }

    fn happening() -> impl Strategy<Value = Happening> {
        prop_oneof![
            3 => (0u64..3_000).prop_map(|ms| Happening::Wait { ms }),
            3 => (0..EXECUTORS.len(), 0u64..3_000)
                .prop_map(|(executor, late_us)| Happening::Pounce { executor, late_us }),
            1 => (any::<bool>(), 0u64..500, 990_000u64..=1_010_000, -20_000i64..20_000).prop_map(
                |(same_term, after_ms, rate_ppm, wall_skew_ms)| Happening::Elect {
                    same_term,
                    after_ms,
                    rate_ppm,
                    wall_skew_ms,
                }
            ),
            6 => (
                0..EXECUTORS.len(),
                any::<bool>(),
                100u64..3_000,
                0u64..200,
                0u64..50,
                0u64..50,
                proptest::bool::weighted(0.1),
            )
                .prop_map(
                    |(executor, renew, ttl_ms, asked_ago_ms, stamp_lag_ms, apply_lag_ms, stale)| {
                        Happening::Ask {
                            executor,
                            renew,
                            ttl_ms,
                            asked_ago_ms,
                            stamp_lag_ms,
                            apply_lag_ms,
                            stale,
                        }
                    }
                ),
        ]
    }

    /// One leader in the real-time model: its timeline, when it began (real µs) and how fast
    /// its monotonic clock runs.
    #[derive(Debug, Clone, Copy)]
    struct ModelLeader {
        timeline: Timeline,
        began_us: u64,
        rate_ppm: u64,
    }

    impl ModelLeader {
        /// Its stamp at real time `at_us` (whole milliseconds of its own clock, rounded down).
        fn read(&self, at_us: u64) -> Stamp {
            let own_us = u128::from(at_us - self.began_us) * u128::from(self.rate_ppm) / 1_000_000;
            Stamp::new(self.timeline, u64::try_from(own_us / 1_000).expect("fits"))
        }
    }

    /// Property (i), the lease's safety in real time (module doc, "Time"): leaders whose clocks
    /// run at rates up to 1% apart, each read from when it began leading; executors whose clocks
    /// do the same and who rely on a lease for nine tenths of its TTL from when they asked, as
    /// `executor::election::ConfirmedLease` does; requests stamped after they were sent and
    /// applied after they were stamped, some by the leader of an earlier term (committed by a
    /// later one); and each new leader beginning after every stamp of the terms before it that
    /// can still be committed, as Raft's elections make it.
    struct RealTime {
        state: QueueState,
        now_us: u64,
        leaders: Vec<ModelLeader>,
        /// Each executor's token and the real time (µs) until which it relies on it.
        relied_on: [Option<(u64, u64)>; EXECUTORS.len()],
        /// How fast each executor's monotonic clock runs, in millionths of real time.
        executor_rates_ppm: [u64; EXECUTORS.len()],
    }

    impl RealTime {
        const WALL_MS: u64 = 1_800_000_000_000;

        fn new(executor_rates_ppm: [u64; EXECUTORS.len()]) -> Self {
            Self {
                state: QueueState::default(),
                now_us: 0,
                leaders: vec![ModelLeader {
                    timeline: Timeline {
                        term: 1,
                        incarnation: 0,
                        began_at_ms: Self::WALL_MS,
                    },
                    began_us: 0,
                    rate_ppm: 1_000_000,
                }],
                relied_on: [None; EXECUTORS.len()],
                executor_rates_ppm,
            }
        }

        fn current(&self) -> ModelLeader {
            *self.leaders.last().expect("there is always a leader")
        }

        fn happen(&mut self, happening: &Happening) -> Result<(), TestCaseError> {
            match *happening {
                Happening::Wait { ms } => self.now_us += ms * 1_000,
                Happening::Elect {
                    same_term,
                    after_ms,
                    rate_ppm,
                    wall_skew_ms,
                } => {
                    self.now_us += after_ms * 1_000;
                    let previous = self.current().timeline;
                    let incarnation = self.leaders.len() as u64;
                    self.leaders.push(ModelLeader {
                        timeline: Timeline {
                            term: previous.term + u64::from(!same_term),
                            incarnation,
                            began_at_ms: (Self::WALL_MS + self.now_us / 1_000)
                                .saturating_add_signed(wall_skew_ms),
                        },
                        began_us: self.now_us,
                        rate_ppm,
                    });
                }
                Happening::Pounce { executor, late_us } => {
                    let current = self.current();
                    let left_ms = self
                        .state
                        .lease_remaining_ms(Some(&current.read(self.now_us)));
                    // Real time for the leader's clock to run `left_ms`, rounded up.
                    self.now_us +=
                        (left_ms * 1_000 * 1_000_000).div_ceil(current.rate_ppm) + late_us;
                    let stamp = current.read(self.now_us);
                    let response = self
                        .state
                        .apply(&campaign(EXECUTORS[executor], 1_000, stamp));
                    self.answer(executor, self.now_us, 1_000, &response)?;
                }
                Happening::Ask {
                    executor,
                    renew: renews,
                    ttl_ms,
                    asked_ago_ms,
                    stamp_lag_ms,
                    apply_lag_ms,
                    stale,
                } => {
                    let asked_us = self.now_us.saturating_sub(asked_ago_ms * 1_000);
                    let current = self.current();
                    // The latest leader of an earlier term, and when its successor began: an
                    // entry it stamped after that cannot be committed (the successor and the
                    // majority that elected it refuse its appends, and a later leader holds
                    // every entry the successor committed, which come after).
                    let earlier = (0..self.leaders.len())
                        .rev()
                        .find(|at| self.leaders[*at].timeline.term < current.timeline.term)
                        .map(|at| (self.leaders[at], self.leaders[at + 1].began_us));
                    let stamped_us = asked_us + stamp_lag_ms * 1_000;
                    let stamp = match earlier {
                        Some((earlier, succeeded_us)) if stale && asked_us <= succeeded_us => {
                            earlier.read(stamped_us.clamp(earlier.began_us, succeeded_us))
                        }
                        _ => current.read(stamped_us.max(current.began_us)),
                    };
                    self.now_us = self.now_us.max(stamped_us) + apply_lag_ms * 1_000;
                    let executor_id = EXECUTORS[executor];
                    let command = match self.relied_on[executor] {
                        Some((token, _)) if renews => renew(executor_id, token, ttl_ms, stamp),
                        _ => campaign(executor_id, ttl_ms, stamp),
                    };
                    let response = self.state.apply(&command);
                    self.answer(executor, asked_us, ttl_ms, &response)?;
                }
            }
            Ok(())
        }

        /// What `executor` makes of the answer to what it asked at `asked_us`.
        fn answer(
            &mut self,
            executor: usize,
            asked_us: u64,
            ttl_ms: u64,
            response: &CommandResponse,
        ) -> Result<(), TestCaseError> {
            // Nine tenths of the TTL on the executor's clock, in real time, rounded up.
            let relied_us = (ttl_ms * 900 * 1_000_000).div_ceil(self.executor_rates_ppm[executor]);
            let until_us = asked_us + relied_us;
            match *response {
                CommandResponse::LeaseGranted { token, .. } => {
                    for (other, relied_on) in self.relied_on.iter().enumerate() {
                        if let Some((other_token, other_until_us)) = relied_on
                            && other != executor
                        {
                            prop_assert!(
                                *other_until_us <= self.now_us,
                                "{} was granted token {} at {} µs while {} relies on token {} \
                                 until {} µs",
                                EXECUTORS[executor],
                                token,
                                self.now_us,
                                EXECUTORS[other],
                                other_token,
                                other_until_us
                            );
                        }
                    }
                    self.relied_on[executor] = Some((token, until_us));
                }
                CommandResponse::LeaseRenewed { token, .. } => {
                    let until_us = match self.relied_on[executor] {
                        Some((held, earlier_us)) if held == token => earlier_us.max(until_us),
                        _ => until_us,
                    };
                    self.relied_on[executor] = Some((token, until_us));
                }
                _ => {}
            }
            Ok(())
        }
    }

    /// One step of a stream of orders, after `pause_ms` of the leader's clock.
    #[derive(Debug, Clone)]
    enum StreamStep {
        /// An order of `books` books arrives.
        Arrive { books: u32 },
        /// An executor takes the lease and the next order; it executes it, or with `dies` it
        /// stops, and its order goes back to the queue when the lease expires.
        Execute { dies: bool },
        /// A new leader begins, its wall clock anywhere.
        NewLeader { began_at_ms: u64 },
    }

    fn stream_step() -> impl Strategy<Value = (u64, StreamStep)> {
        let step = prop_oneof![
            6 => (1u32..=50).prop_map(|books| StreamStep::Arrive { books }),
            4 => prop_oneof![5 => Just(false), 1 => Just(true)]
                .prop_map(|dies| StreamStep::Execute { dies }),
            1 => any::<u32>().prop_map(|began_at_ms| StreamStep::NewLeader {
                began_at_ms: u64::from(began_at_ms),
            }),
        ];
        (0u64..2_000, step)
    }

    /// Runs `steps` and checks at each dequeue the bound that aging gives: no order still
    /// waiting was enqueued, on the queue's time, earlier than the dequeued one by more than
    /// 500 ms per book the dequeued one has over it. Then drains the queue.
    fn check_aging_bound(steps: &[(u64, StreamStep)]) -> Result<(), TestCaseError> {
        let mut state = QueueState::default();
        let mut now = Stamp::new(ONE_LEADER, 0);
        let mut arrivals = 0;
        let mut executors = 0;
        for (pause_ms, step) in steps {
            now.elapsed_ms += pause_ms;
            match step {
                StreamStep::Arrive { books } => {
                    state.apply(&enqueue(&format!("o-{arrivals}"), &[*books], now));
                    arrivals += 1;
                }
                StreamStep::NewLeader { began_at_ms } => {
                    let term = now.timeline.term + 1;
                    now = reading(term, term, *began_at_ms, 0);
                }
                StreamStep::Execute { dies } => {
                    executors += 1;
                    let executor = format!("e{executors}");
                    let CommandResponse::LeaseGranted { token, .. } =
                        state.apply(&campaign(executor.as_str(), 1_000, now))
                    else {
                        continue;
                    };
                    let CommandResponse::Dequeued { order, .. } =
                        state.apply(&dequeue(executor.as_str(), token, now))
                    else {
                        state.apply(&resign(executor.as_str(), token, now));
                        continue;
                    };
                    let taken = state.order_status(order.order_id()).expect("recorded");
                    for waiting in state.peek(usize::MAX) {
                        let waited_longer_ms = i128::from(taken.enqueued_at_queue_ms)
                            - i128::from(waiting.enqueued_at_queue_ms);
                        let more_books = i128::from(taken.order.priority())
                            - i128::from(waiting.order.priority());
                        prop_assert!(
                            waited_longer_ms <= 500 * more_books,
                            "{:?} was dequeued past {:?}",
                            taken,
                            waiting
                        );
                    }
                    if !dies {
                        finish(&mut state, executor.as_str(), token, order.order_id(), now);
                        state.apply(&resign(executor.as_str(), token, now));
                    }
                }
            }
        }
        now.elapsed_ms += 1_000;
        let token = grant(&mut state, "drainer", 1_000, now);
        while let CommandResponse::Dequeued { order, execution } =
            state.apply(&dequeue("drainer", token, now))
        {
            if execution.is_none() {
                state.apply(&record("drainer", token, order.order_id(), now));
            }
            state.apply(&acknowledge("drainer", token, order.order_id(), now));
        }
        prop_assert_eq!(state.executed_count(), arrivals);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The bound the README states, over streams of orders of 1 to 50 books, with executors
        /// that die holding an order and leaders that change, their wall clocks anywhere.
        #[test]
        fn no_order_is_passed_by_one_enqueued_later_than_its_books_allow(
            steps in vec(stream_step(), 0..300),
        ) {
            check_aging_bound(&steps)?;
        }

        /// Properties (a) dequeue order, (b) idempotent enqueue and conservation of orders,
        /// (c) no success with an invalid token, (d) growing tokens and (g) executed once, never
        /// lost, checked after every command, then the queue drained to the last order.
        #[test]
        fn every_command_keeps_the_queue_invariants(steps in timed_steps()) {
            let mut driver = Driver::new();
            driver.run(&steps)?;
            driver.drain()?;
        }

        /// Property (e): replicas applying the same commands end equal, answering alike; and (f)
        /// the state survives bincode, with the same bytes on every replica.
        #[test]
        fn replicas_agree_and_state_round_trips(steps in timed_steps()) {
            let mut driver = Driver::new();
            driver.run(&steps)?;
            let mut replica = QueueState::default();
            let replica_responses: Vec<CommandResponse> =
                driver.commands.iter().map(|command| replica.apply(command)).collect();
            prop_assert_eq!(&replica_responses, &driver.responses);
            prop_assert_eq!(&replica, &driver.state);
            let bytes = bincode::serialize(&driver.state).expect("state encodes");
            prop_assert_eq!(&bytes, &bincode::serialize(&replica).expect("state encodes"));
            let decoded: QueueState = bincode::deserialize(&bytes).expect("state decodes");
            prop_assert_eq!(decoded, replica);
        }

        /// Property (h): a batch is its commands applied one after another. The same commands cut
        /// into batches of random sizes end in the same state, and the batches' answers, in
        /// order, are the answers the commands got one by one.
        #[test]
        fn a_batch_applies_like_its_commands_one_by_one(
            steps in timed_steps(),
            sizes in proptest::collection::vec(1usize..8, 1..16),
        ) {
            let mut driver = Driver::new();
            driver.run(&steps)?;
            let mut batched = QueueState::default();
            let mut answers = Vec::new();
            let mut commands = driver.commands.iter().cloned();
            for size in sizes.iter().cycle() {
                let batch: Vec<Command> = commands.by_ref().take(*size).collect();
                if batch.is_empty() {
                    break;
                }
                match batched.apply(&Command::Batch(batch)) {
                    CommandResponse::Batch(batch_answers) => answers.extend(batch_answers),
                    other => prop_assert!(false, "a batch answered {:?}", other),
                }
            }
            prop_assert_eq!(&answers, &driver.responses);
            prop_assert_eq!(&batched, &driver.state);
        }

        /// Property (i): in real time, no executor is granted the lease while another still
        /// relies on it, whatever the leaders' wall clocks say (see [`RealTime`]).
        #[test]
        fn no_grant_overlaps_what_the_last_holder_relies_on(
            happenings in proptest::collection::vec(happening(), 1..200),
            executor_rates_ppm in proptest::array::uniform3(990_000u64..=1_010_000),
        ) {
            let mut model = RealTime::new(executor_rates_ppm);
            for happening in &happenings {
                model.happen(happening)?;
            }
        }
    }
}
