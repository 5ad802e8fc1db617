//! The pure domain contract every service implements: `decide` and `evolve`, no I/O.

use serde::{de::DeserializeOwned, Serialize};

use crate::record::IndexEntry;

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

    /// The key of the entry a command is about when that entry may have left memory (the order's
    /// correlation id, under which its records are in the log); `None` when the command needs
    /// only what is always in memory (balances). Every command whose events touch such an entry
    /// must name it: [`crate::live::Live`] serialises cold reads against commits by this key.
    fn cold_key(_command: &Self::Command) -> Option<String> {
        None
    }

    /// Whether the entry of `key` is in memory. `false` too for a key never recorded: only the
    /// log tells the two apart. By default everything is in memory.
    fn is_resident(_state: &Self::State, _key: &str) -> bool {
        true
    }

    /// The one stream that holds every record about the cold key `key`, when the domain files
    /// them so (participants: `order-<id>`): bringing the entry back then reads that stream
    /// alone. `None` (the default): every record correlated with `key`, on any stream.
    fn cold_stream(_key: &str) -> Option<String> {
        None
    }

    /// Brings the entry of `key` back from its own events (every event recorded under the key,
    /// in log order), without applying anything else again (balances already hold them).
    fn hydrate(_state: &mut Self::State, _key: &str, _events: &[Self::Event]) {}

    /// Drops what [`hydrate`](Self::hydrate) brought back, unless the events since put the entry
    /// in memory for good: afterwards the state equals the fold of the log.
    fn retire(_state: &mut Self::State, _key: &str) {}

    /// The secondary index entries `events` call for (see [`IndexEntry`]), given the state they
    /// were decided on (before they apply): written in the same batch as the events, so an
    /// index never runs ahead of or behind the log. None by default.
    fn index_entries(_state: &Self::State, _events: &[Self::Event]) -> Vec<IndexEntry> {
        Vec::new()
    }

    /// Schema version of the event encoding; bump it together with an upcaster.
    const EVENT_VERSION: u16 = 1;

    /// Version of the state's snapshot encoding. Bump it whenever `State` (or anything inside
    /// it) changes shape: snapshots of another version are ignored and the log is folded instead.
    const SNAPSHOT_VERSION: u32 = 1;
}

/// Decides and applies one command the way [`crate::live::Live`] does, the entry's history
/// coming from `history` when the command is about an entry not in memory: hydrate, decide,
/// evolve, retire. Pure; for tests and tools that hold the history in memory.
pub fn execute_with_history<D: Domain>(
    state: &mut D::State,
    command: D::Command,
    history: impl FnOnce(&str) -> Vec<D::Event>,
) -> Result<Vec<D::Event>, D::Rejection> {
    let cold = D::cold_key(&command).filter(|key| !D::is_resident(state, key));
    if let Some(key) = &cold {
        D::hydrate(state, key, &history(key));
    }
    let decided = D::decide(state, command);
    if let Ok(events) = &decided {
        for event in events {
            D::evolve(state, event);
        }
    }
    if let Some(key) = &cold {
        D::retire(state, key);
    }
    decided
}

/// Folds a sequence of events into a state, starting from the default.
pub fn fold<'a, D: Domain>(events: impl IntoIterator<Item = &'a D::Event>) -> D::State {
    let mut state = D::State::default();
    for event in events {
        D::evolve(&mut state, event);
    }
    state
}
