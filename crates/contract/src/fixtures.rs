//! What the domains' tests share (feature `test-util`): one default order that each test
//! adjusts with struct update syntax (`OrderPlaced { points: 50, ..placed(order(1)) }`), and
//! the checks of the rules every participant's ledger follows.

use eventlog::domain::Domain;
use eventlog::scenario::given;
use uuid::Uuid;

use crate::ledger::{self, LedgerEvent, LedgerState, ParticipantOrderStatus as Status};
use crate::{OrderLine, OrderPlaced, Participant};

/// When the default order was placed (ms since the Unix epoch).
pub const PLACED_AT_MS: u64 = 1_000;
/// The default order's saga deadline: 30 s after it was placed.
pub const DEADLINE_MS: u64 = PLACED_AT_MS + 30_000;

/// The order id numbered `n`.
pub fn order(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

/// One order line.
pub fn line(sku: &str, qty: u32, price: u64) -> OrderLine {
    OrderLine {
        sku: sku.into(),
        qty,
        price,
    }
}

/// `user-1` buys one `sku-1` at 100: no coupon, no points, amount 100.
pub fn placed(order_id: Uuid) -> OrderPlaced {
    OrderPlaced {
        order_id,
        user_id: "user-1".into(),
        items: vec![line("sku-1", 1, 100)],
        coupon_id: None,
        points: 0,
        amount: 100,
        placed_at_ms: PLACED_AT_MS,
        deadline_ms: DEADLINE_MS,
    }
}

/// One participant's domain (stock, coupon, point) driven through the ledger rules they share,
/// all about order 1.
pub struct LedgerCase<D: Domain> {
    /// Which participant it is.
    pub participant: Participant,
    /// Its own business before the order (stock on the shelf, a balance, an issued coupon).
    pub setup: Vec<D::Event>,
    /// `order.placed`, which it accepts after `setup`.
    pub place: D::Command,
    /// `order.failed`.
    pub fail: D::Command,
    /// What it records doing its part.
    pub succeeded: D::Event,
    /// What it records refusing the order.
    pub rejected: D::Event,
    /// What it records undoing its part.
    pub undone: D::Event,
    /// The subjects its success, rejection and compensation are published on.
    pub subjects: [&'static str; 3],
}

impl<D> LedgerCase<D>
where
    D: Domain,
    D::State: LedgerState,
    D::Event: LedgerEvent,
    D::Command: Clone,
{
    /// Checks every shared rule: undo, tombstone, ignored late placement, skipped compensation,
    /// idempotent repeats, and the outcome each of them publishes. A settled order leaves memory
    /// (only the log keeps it, see [`ledger::Orders`]): its status is checked as a reader of the
    /// order sees it (brought back from the log), and its absence from memory besides. Every
    /// decision is also checked against the fold of its history from scratch (the scenario
    /// does).
    #[track_caller]
    pub fn check(&self) {
        let id = order(1);
        let key = id.to_string();
        let tombstoned = ledger::tombstoned::<D::Event>(id);
        let skipped = ledger::compensation_skipped::<D::Event>(id);
        let after = |events: &[&D::Event]| {
            given::<D>(self.setup.iter().chain(events.iter().copied()).cloned())
        };

        // An order it decided is open: in memory until settled.
        let state = after(&[])
            .when(self.place.clone())
            .then([self.succeeded.clone()]);
        assert_eq!(state.order_status(id), Some(Status::Succeeded));
        let state = after(&[&self.rejected]).state().clone();
        assert_eq!(state.order_status(id), Some(Status::Rejected));
        // A failed order gets its part undone.
        let state = after(&[&self.succeeded])
            .when(self.fail.clone())
            .then_read(&key, [self.undone.clone()]);
        assert_eq!(state.order_status(id), Some(Status::Compensated));
        // A failure before the placement leaves a tombstone, and the late placement is ignored.
        let state = after(&[])
            .when(self.fail.clone())
            .then_read(&key, [tombstoned.clone()]);
        assert_eq!(state.order_status(id), Some(Status::Tombstoned));
        let ignored = ledger::placement_ignored::<D::Event>(id, ledger::LATE_PLACEMENT);
        let state = after(&[&tombstoned])
            .when(self.place.clone())
            .then_read(&key, [ignored.clone()]);
        assert_eq!(state.order_status(id), Some(Status::Tombstoned));
        // Compensating a rejected order is skipped.
        let state = after(&[&self.rejected])
            .when(self.fail.clone())
            .then_read(&key, [skipped.clone()]);
        assert_eq!(state.order_status(id), Some(Status::Compensated));
        // Settled orders leave memory: the log keeps them.
        for (history, command, decided) in [
            (vec![&self.succeeded], &self.fail, &self.undone),
            (vec![], &self.fail, &tombstoned),
            (vec![&tombstoned], &self.place, &ignored),
            (vec![&self.rejected], &self.fail, &skipped),
        ] {
            let state = after(&history)
                .when(command.clone())
                .then([decided.clone()]);
            assert_eq!(state.order_status(id), None, "{decided:?}");
        }
        // A repeated placement is a no-op.
        for history in [
            vec![&self.succeeded],
            vec![&self.rejected],
            vec![&self.succeeded, &self.undone],
        ] {
            after(&history).when(self.place.clone()).then_nothing();
        }
        // A repeated failure is a no-op.
        for (history, settled) in [
            (vec![&self.succeeded, &self.undone], Status::Compensated),
            (vec![&self.rejected, &skipped], Status::Compensated),
            (vec![&tombstoned], Status::Tombstoned),
        ] {
            let scenario = after(&history);
            assert_eq!(scenario.read_key(&key).order_status(id), Some(settled));
            let state = scenario.when(self.fail.clone()).then_nothing();
            assert_eq!(
                state.order_status(id),
                None,
                "{settled:?} is settled: only the log keeps it"
            );
        }
        // What each publishes.
        let rejected_reason = match self.rejected.step() {
            ledger::Step::Rejected(_, reason) => Some(reason),
            other => panic!("{:?} is not a rejection: {other:?}", self.rejected),
        };
        let [succeeded, refused, compensated] = self.subjects;
        let cases = [
            (&self.succeeded, succeeded, None),
            (&self.rejected, refused, rejected_reason),
            (&self.undone, compensated, None),
            (&tombstoned, compensated, Some(ledger::TOMBSTONE_REASON)),
            (&skipped, compensated, Some(ledger::NOTHING_TO_UNDO)),
        ];
        check_outcomes(self.participant, &cases.map(|(e, s, r)| (e.clone(), s, r)));
        assert_eq!(ledger::outcome(self.participant, &ignored), None);
    }
}

/// Checks that one event of each variant, in declaration order, keeps its postcard position
/// (the log's encoding is final), its name, and its stream: `own_stream`, if given, for the
/// first (the domain's own business), the stream of order `order_id` for the rest.
#[track_caller]
pub fn check_variants<D: Domain>(
    events: &[D::Event],
    names: &[&str],
    own_stream: Option<&str>,
    order_id: Uuid,
) {
    assert_eq!(events.len(), names.len());
    for (position, (event, name)) in events.iter().zip(names).enumerate() {
        let bytes = postcard::to_stdvec(event).expect("encodes");
        let back: D::Event = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(usize::from(bytes[0]), position, "{event:?} moved");
        assert_eq!(&back, event);
        assert_eq!(D::event_type(event), *name);
        let stream = match (position, own_stream) {
            (0, Some(own)) => own.to_owned(),
            _ => format!("order-{order_id}"),
        };
        assert_eq!(D::stream_of(event), stream, "{event:?}");
    }
}

/// Checks what each event about order 1 publishes: its subject and reason.
#[track_caller]
pub fn check_outcomes<E: LedgerEvent + std::fmt::Debug>(
    participant: Participant,
    cases: &[(E, &str, Option<&str>)],
) {
    for (event, subject, reason) in cases {
        let published = ledger::outcome(participant, event).expect("publishes");
        assert_eq!(published.subject(), *subject, "{event:?}");
        assert_eq!(
            (published.order_id, published.participant),
            (order(1), participant),
            "{event:?}"
        );
        assert_eq!(published.reason.as_deref(), *reason, "{event:?}");
    }
}
