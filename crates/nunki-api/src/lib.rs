//! gRPC definitions of the Nunki Coordinator: the user API (`SetManifest`, `GetManifests`) and
//! the mesh API (`NewMeshCert`). Generated at build time from `proto/` with protox.

#![allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations
)]

/// User API (port 1313).
pub mod userapi {
    tonic::include_proto!("nunki.userapi.v1");
}

/// Mesh API (port 7777).
pub mod meshapi {
    tonic::include_proto!("nunki.meshapi.v1");
}
