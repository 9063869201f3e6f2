//! The executor's decisions about the lease, kept pure (no I/O, no clock reads) so that they can
//! be tested alone:
//!
//! - [`LeaseView::outlook`]: whether a waiting executor should campaign now. Every campaign is a
//!   Raft write, so an executor campaigns only when the lease looks free (or expired) *and* there
//!   is work: an idle system writes nothing to the Raft log; waiting executors only read the
//!   leader's `ClusterStatus`.
//! - [`ConfirmedLease`]: until when the executor may act on its lease, by its own monotonic
//!   clock. The cluster counts a grant or renewal on its leader's monotonic clock from when the
//!   leader stamped it, which is after the executor asked, and a new leader honours it for a full
//!   TTL from its start (queue-raft's `state_machine`, "Time"), so the lease lasts at least until
//!   `asked_at + ttl` of the leader's clock. The executor relies on nine tenths of that: the
//!   tenth left covers the difference in rate between its clock and the leaders' and timer
//!   slack. No wall clock is read for any of it, here or in the cluster.

use std::time::Duration;

use bookstore_proto as pb;
use tokio::time::Instant;

/// The lease and the queue as one queue node applied them; a hint read without a Raft write,
/// possibly a little stale, used only to decide when to campaign (the campaign itself decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    /// Empty when no lease is recorded.
    pub holder: String,
    pub token: u64,
    /// How long the lease has left by the answering node's reckoning: on the leader, by its
    /// monotonic clock as it answered.
    pub remaining_ms: u64,
    /// Orders waiting (the one executing, if any, is not counted).
    pub queue_depth: u64,
}

/// What a waiting executor should do, given a [`LeaseView`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outlook {
    /// Ask for the lease now.
    Campaign,
    /// Nobody leads and nothing is queued: wait, writing nothing.
    Idle,
    /// Another executor holds an unexpired lease, or another run of this one (a previous run
    /// that died holding it, or a second process given the same id): a campaign would be refused
    /// until it expires, and its token is not this run's to use or give back.
    HeldBy { holder: String, token: u64 },
}

impl From<&pb::ClusterStatusResponse> for LeaseView {
    fn from(status: &pb::ClusterStatusResponse) -> Self {
        Self {
            holder: status.lease_holder.clone(),
            token: status.lease_token,
            remaining_ms: status.lease_remaining_ms,
            queue_depth: status.queue_depth,
        }
    }
}

impl LeaseView {
    /// Campaign when the lease is free and orders wait; or when a lease is still recorded but
    /// has no time left (only a command clears it, and the order that was executing under it is
    /// queued again only then, so someone must campaign even if nothing else waits). A lease in
    /// force is followed whoever holds it, a lease under this executor's own id included: this
    /// run never holds a lease it did not win, and the cluster refuses every campaign while one
    /// is in force. The view may be stale; then the campaign is refused, which is safe.
    pub fn outlook(&self) -> Outlook {
        if self.holder.is_empty() {
            return if self.queue_depth > 0 {
                Outlook::Campaign
            } else {
                Outlook::Idle
            };
        }
        if self.remaining_ms == 0 {
            return Outlook::Campaign;
        }
        Outlook::HeldBy {
            holder: self.holder.clone(),
            token: self.token,
        }
    }
}

/// A lease the cluster granted or renewed to this executor, and the last instant at which the
/// executor may still act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmedLease {
    token: u64,
    valid_until: Instant,
}

impl ConfirmedLease {
    /// A lease granted with `token` for `ttl`, asked for at `asked_at`.
    pub fn granted(token: u64, asked_at: Instant, ttl: Duration) -> Self {
        Self {
            token,
            valid_until: asked_at + usable_part(ttl),
        }
    }

    /// The lease renewed for `ttl` by a renewal asked for at `asked_at`. A renewal answered out
    /// of order never shortens what an earlier one confirmed.
    pub fn renewed(&mut self, asked_at: Instant, ttl: Duration) {
        self.valid_until = self.valid_until.max(asked_at + usable_part(ttl));
    }

    pub fn token(&self) -> u64 {
        self.token
    }

    /// The last instant at which the executor may act on the lease.
    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// How long the lease may still be acted on after `now`.
    pub fn remaining(&self, now: Instant) -> Duration {
        self.valid_until.saturating_duration_since(now)
    }

    pub fn is_valid_at(&self, now: Instant) -> bool {
        now < self.valid_until
    }
}

/// The part of a lease's time to live the executor relies on: all but a tenth.
fn usable_part(ttl: Duration) -> Duration {
    ttl - ttl / 10
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(holder: &str, remaining_ms: u64, queue_depth: u64) -> LeaseView {
        LeaseView {
            holder: holder.to_owned(),
            token: 7,
            remaining_ms,
            queue_depth,
        }
    }

    #[test]
    fn a_free_lease_is_sought_only_when_orders_wait() {
        assert_eq!(view("", 0, 3).outlook(), Outlook::Campaign);
        assert_eq!(view("", 0, 0).outlook(), Outlook::Idle);
    }

    #[test]
    fn a_lease_with_time_left_is_followed_whoever_holds_it() {
        // Under this executor's own id too: another run's lease is not this run's.
        for holder in ["e2", "e1"] {
            assert_eq!(
                view(holder, 1, 5).outlook(),
                Outlook::HeldBy {
                    holder: holder.to_owned(),
                    token: 7
                }
            );
        }
    }

    #[test]
    fn an_expired_lease_is_sought_even_with_nothing_queued() {
        // The order that was executing under it goes back to the queue only when a command
        // clears the lease.
        assert_eq!(view("e2", 0, 0).outlook(), Outlook::Campaign);
    }

    #[test]
    fn a_lease_is_relied_on_for_nine_tenths_of_its_ttl_from_the_ask() {
        let asked_at = Instant::now();
        let lease = ConfirmedLease::granted(3, asked_at, Duration::from_millis(1_000));
        assert!(lease.is_valid_at(asked_at + Duration::from_millis(899)));
        assert!(!lease.is_valid_at(asked_at + Duration::from_millis(900)));
        assert_eq!(
            lease.remaining(asked_at + Duration::from_millis(600)),
            Duration::from_millis(300)
        );
        assert_eq!(
            lease.remaining(asked_at + Duration::from_secs(5)),
            Duration::ZERO
        );
        assert_eq!(lease.token(), 3);
    }

    #[test]
    fn a_late_answered_renewal_never_shortens_the_lease() {
        let asked_at = Instant::now();
        let ttl = Duration::from_millis(1_000);
        let mut lease = ConfirmedLease::granted(3, asked_at + Duration::from_millis(500), ttl);
        let confirmed = lease.valid_until();
        lease.renewed(asked_at, ttl);
        assert_eq!(lease.valid_until(), confirmed);
        lease.renewed(asked_at + Duration::from_millis(800), ttl);
        assert_eq!(
            lease.valid_until(),
            asked_at + Duration::from_millis(800 + 900)
        );
    }
}
