//! The staff's pages about people and money: payments and refunds, users
//! (roles, disable), notifications sent, the mock processor's fault
//! settings; and a shopper's own profile.
