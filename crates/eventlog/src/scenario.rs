//! Given/when/then helper for domain unit tests (feature `test-util`).
//!
//! A scenario keeps the whole history it was given, so a command about an entry that left
//! memory is decided the way [`crate::live::Live`] decides it (hydrated from that history, then
//! retired), and every `then` also checks that the state after the decision equals the fold of
//! the history plus the decided events from scratch.

use crate::domain::{fold, Domain};

/// Starts a scenario from the events already in the log.
pub fn given<D: Domain>(events: impl IntoIterator<Item = D::Event>) -> Given<D> {
    let history: Vec<D::Event> = events.into_iter().collect();
    Given {
        state: fold::<D>(&history),
        history,
    }
}

/// A state built from past events, waiting for a command.
pub struct Given<D: Domain> {
    state: D::State,
    history: Vec<D::Event>,
}

impl<D: Domain> Given<D> {
    /// Decides a command against the given state (hydrating its entry from the history when it
    /// is not in memory).
    pub fn when(self, command: D::Command) -> When<D> {
        let mut state = self.state;
        let cold = D::cold_key(&command).filter(|key| !D::is_resident(&state, key));
        if let Some(key) = &cold {
            D::hydrate(&mut state, key, &self.history);
        }
        let result = D::decide(&state, command);
        When {
            state,
            history: self.history,
            cold,
            result,
        }
    }

    /// The folded state, for assertions on projections.
    pub fn state(&self) -> &D::State {
        &self.state
    }

    /// The state as [`crate::live::Live::read_key`] shows it to a reader of `key`: its entry
    /// brought back from the history when it is not in memory.
    pub fn read_key(&self, key: &str) -> D::State {
        read_key_of::<D>(self.state.clone(), &self.history, key)
    }
}

fn read_key_of<D: Domain>(mut state: D::State, history: &[D::Event], key: &str) -> D::State {
    if !D::is_resident(&state, key) {
        D::hydrate(&mut state, key, history);
    }
    state
}

/// The outcome of a decision, waiting for expectations.
pub struct When<D: Domain> {
    state: D::State,
    history: Vec<D::Event>,
    cold: Option<String>,
    result: Result<Vec<D::Event>, D::Rejection>,
}

impl<D: Domain> When<D> {
    /// Asserts the command produced exactly these events; returns the state after applying them
    /// (a hydrated entry retired again), which must equal the fold of the whole history.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = D::Event>) -> D::State {
        self.apply(expected).0
    }

    /// [`then`](Self::then), returning the state as a reader of `key` sees it afterwards (see
    /// [`Given::read_key`]): what the log says about an entry that left memory.
    #[track_caller]
    pub fn then_read(self, key: &str, expected: impl IntoIterator<Item = D::Event>) -> D::State {
        let (state, history) = self.apply(expected);
        read_key_of::<D>(state, &history, key)
    }

    #[track_caller]
    fn apply(self, expected: impl IntoIterator<Item = D::Event>) -> (D::State, Vec<D::Event>) {
        let expected: Vec<D::Event> = expected.into_iter().collect();
        match self.result {
            Ok(events) => {
                assert_eq!(events, expected, "decided events differ");
                let mut state = self.state;
                for event in &events {
                    D::evolve(&mut state, event);
                }
                if let Some(key) = &self.cold {
                    D::retire(&mut state, key);
                }
                let mut history = self.history;
                history.extend(events);
                assert!(
                    state == fold::<D>(&history),
                    "the state after the decision differs from the fold of the log from scratch"
                );
                (state, history)
            }
            Err(rejection) => panic!("expected events {expected:?}, got rejection {rejection:?}"),
        }
    }

    /// Asserts the command was refused with this rejection.
    #[track_caller]
    pub fn then_rejected(self, expected: D::Rejection) {
        match self.result {
            Ok(events) => panic!("expected rejection {expected:?}, got events {events:?}"),
            Err(rejection) => assert_eq!(rejection, expected),
        }
    }

    /// Asserts the command produced no events (an idempotent no-op).
    #[track_caller]
    pub fn then_nothing(self) -> D::State {
        self.then([])
    }
}
