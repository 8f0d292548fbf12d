//! The Nunki Coordinator: the CA of a deployment. It keeps the manifest history, attests
//! itself to users (user API) and issues mesh certificates to attested pods (mesh API).

pub mod cli;

pub mod api;
pub mod fds;
pub mod ha;
pub mod history;
pub mod metrics;
pub mod run;
pub mod server;
pub mod state;
/// The history's key-value store (the `nunki-store` crate), under its old path.
pub use nunki_store as store;
