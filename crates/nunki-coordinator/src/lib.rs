//! The Nunki Coordinator: the CA of a deployment. It keeps the manifest history, attests
//! itself to users (user API) and issues mesh certificates to attested pods (mesh API).

pub mod cli;

pub mod api;
pub mod history;
pub mod metrics;
pub mod run;
pub mod server;
pub mod state;
pub mod store;
