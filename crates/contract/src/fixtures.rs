//! Orders the domains' tests share (feature `test-util`): one default order that each test
//! adjusts with struct update syntax (`OrderPlaced { points: 50, ..placed(order(1)) }`).

use uuid::Uuid;

use crate::{OrderLine, OrderPlaced};

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
