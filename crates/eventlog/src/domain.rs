//! The pure domain contract every service implements: `decide` and `evolve`, no I/O.

use serde::{de::DeserializeOwned, Serialize};

/// A domain's pure core. Its state is the fold of its events; commands are decided against it.
///
/// Implementations must not do I/O, read clocks or draw random numbers: whatever a decision needs
/// (the time, looked-up facts, a gateway's answer) travels inside the command.
pub trait Domain: 'static {
    /// The folded state. `Default` is the state of an empty log.
    ///
    /// Serializable for snapshots (postcard, see [`crate::snapshot`]); `PartialEq` so `verify`
    /// can compare a snapshot with the fold of the log up to its seq.
    type State: Default + Clone + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// A fact the domain recorded. Postcard-encoded in the log: never reorder or remove variants.
    type Event: Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug
        + PartialEq
        + Send
        + Sync
        + 'static;
    /// An intention to change the state.
    type Command: std::fmt::Debug + Send;
    /// Why a command was refused (a client error: nothing is written).
    type Rejection: std::fmt::Debug + PartialEq + Send;

    /// Decides which events a command produces, given the current state.
    fn decide(
        state: &Self::State,
        command: Self::Command,
    ) -> Result<Vec<Self::Event>, Self::Rejection>;

    /// Applies one event. Cannot fail: an impossible event is a bug and trips an assertion.
    fn evolve(state: &mut Self::State, event: &Self::Event);

    /// The event's type name as stored in the log (e.g. `StockReserved`).
    fn event_type(event: &Self::Event) -> &'static str;

    /// The stream (aggregate) the event belongs to, e.g. `order-<uuid>` or `sku-<sku>`.
    fn stream_of(event: &Self::Event) -> String;

    /// Schema version of the event encoding; bump it together with an upcaster.
    const EVENT_VERSION: u16 = 1;

    /// Version of the state's snapshot encoding. Bump it whenever `State` (or anything inside
    /// it) changes shape: snapshots of another version are ignored and the log is folded instead.
    const SNAPSHOT_VERSION: u32 = 1;
}

/// Folds a sequence of events into a state, starting from the default.
pub fn fold<'a, D: Domain>(events: impl IntoIterator<Item = &'a D::Event>) -> D::State {
    let mut state = D::State::default();
    for event in events {
        D::evolve(&mut state, event);
    }
    state
}
