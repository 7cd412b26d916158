//! Conntrack events (`conntrack -E`; `nf_conntrack_ecache.c`, `ctnetlink_conntrack_event`).
//!
//! Contract: with `nf_conntrack_events` non-zero, the table queues one [`Event`] per message the
//! kernel would send to a listener with the default event mask:
//! - NEW when an entry is confirmed;
//! - UPDATE when a packet of a confirmed entry passes the confirm hook and changes were cached for
//!   the entry since the last delivery: first reply (SEEN_REPLY), protocol state change (TCP, SCTP),
//!   ASSURED, mark change (`CONNMARK`/`MARK` on the ct). Changes cached by a packet that is then
//!   dropped are delivered with the next packet of the entry that passes the confirm hook.
//! - DESTROY when a confirmed entry is deleted: timer expiry (stamped with the expiry time, whether
//!   reaped by [`crate::Conntrack::handle_timeout`] or found expired on lookup), early drop, an RST
//!   before any reply, a TCP reopen, a flush.
//!
//! Expectation events (`conntrack -E expect`; `nf_ct_expect_event_report`, `ctnetlink_expect_event`) go
//! to the same queue with [`Event::expect`] set: NEW when an expectation is inserted
//! (`nf_ct_expect_related`), DESTROY whenever one is unlinked (consumed by a new connection, timer
//! expiry — stamped with the expiry time —, replaced, evicted over the helper's limit, taken back, or
//! removed with its master): one DESTROY per `expect_delete`. Their text is the
//! `conntrack -L expect` line with the timeout remaining at the event.
//!
//! The text of a message is fixed when the event happens ([`Event::line`]); [`crate::write_event`]
//! prints it as `conntrack -E -o timestamp` does. The queue holds at most [`EVENT_QUEUE_MAX`]
//! events; more are counted as lost (a netlink socket overrun) until the caller drains it.

use wire::Time;

/// Largest number of undrained events kept.
pub const EVENT_QUEUE_MAX: usize = 1 << 16;

/// Message type of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    New,
    Update,
    Destroy,
}

/// One `conntrack -E` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub time: Time,
    pub kind: EventKind,
    /// An expectation event (`conntrack -E expect`), not a conntrack one.
    pub expect: bool,
    /// The message as `conntrack -E` prints it, without timestamp and type label.
    pub line: String,
}

// Cached event bits (`enum ip_conntrack_events`, only those this model produces).
pub(crate) const EV_REPLY: u8 = 1 << 0;
pub(crate) const EV_PROTOINFO: u8 = 1 << 1;
pub(crate) const EV_ASSURED: u8 = 1 << 2;
pub(crate) const EV_MARK: u8 = 1 << 3;
