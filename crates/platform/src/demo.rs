//! The demo data several services agree on, for `emporium up`: identity
//! makes the demo customer, ordering seeds their past orders.

/// The demo customer's user id, fixed so that ordering's seed can own its
/// past orders to them without asking identity.
pub const CUSTOMER_ID: &str = "019a0000-0000-7000-8000-00000000de70";
pub const CUSTOMER_EMAIL: &str = "customer@emporium.local";
pub const CUSTOMER_NAME: &str = "Dana Demo";
