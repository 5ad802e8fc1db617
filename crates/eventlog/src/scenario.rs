//! Given/when/then helper for domain unit tests (feature `test-util`).

use crate::domain::Domain;

/// Starts a scenario from the events already in the log.
pub fn given<D: Domain>(events: impl IntoIterator<Item = D::Event>) -> Given<D> {
    let mut state = D::State::default();
    for event in events {
        D::evolve(&mut state, &event);
    }
    Given { state }
}

/// A state built from past events, waiting for a command.
pub struct Given<D: Domain> {
    state: D::State,
}

impl<D: Domain> Given<D> {
    /// Decides a command against the given state.
    pub fn when(self, command: D::Command) -> When<D> {
        let result = D::decide(&self.state, command);
        When {
            state: self.state,
            result,
        }
    }

    /// The folded state, for assertions on projections.
    pub fn state(&self) -> &D::State {
        &self.state
    }
}

/// The outcome of a decision, waiting for expectations.
pub struct When<D: Domain> {
    state: D::State,
    result: Result<Vec<D::Event>, D::Rejection>,
}

impl<D: Domain> When<D> {
    /// Asserts the command produced exactly these events; returns the state after applying them.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = D::Event>) -> D::State {
        let expected: Vec<D::Event> = expected.into_iter().collect();
        match self.result {
            Ok(events) => {
                assert_eq!(events, expected, "decided events differ");
                let mut state = self.state;
                for event in &events {
                    D::evolve(&mut state, event);
                }
                state
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
