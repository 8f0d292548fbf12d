//! Prometheus metrics and the health endpoints (`/healthz`, `/readyz`, `/metrics`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::state::{Coordinator, Status};

/// Label of the attestation-failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Short machine-readable reason.
    pub reason: String,
}

/// The Coordinator's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Manifests accepted by SetManifest.
    pub manifests_set: Counter,
    /// Mesh certificates issued.
    pub certificates_issued: Counter,
    /// Refused mesh attestations, by reason.
    pub attestation_failures: Family<ReasonLabel, Counter>,
    /// Generation of the current manifest (0 = none).
    pub manifest_generation: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("nunki_coordinator");
        let manifests_set = Counter::default();
        let certificates_issued = Counter::default();
        let attestation_failures = Family::<ReasonLabel, Counter>::default();
        let manifest_generation = Gauge::default();
        registry.register(
            "manifests_set",
            "Manifests accepted by SetManifest",
            manifests_set.clone(),
        );
        registry.register(
            "certificates_issued",
            "Mesh certificates issued",
            certificates_issued.clone(),
        );
        registry.register(
            "attestation_failures",
            "Mesh API attestations refused, by reason",
            attestation_failures.clone(),
        );
        registry.register(
            "manifest_generation",
            "Number of manifests set since this Coordinator started (0 = none)",
            manifest_generation.clone(),
        );
        Self {
            registry,
            manifests_set,
            certificates_issued,
            attestation_failures,
            manifest_generation,
        }
    }
}

impl Metrics {
    /// Counts a refused attestation.
    pub fn attestation_failed(&self, reason: &str) {
        self.attestation_failures
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The HTTP router for probes and metrics.
pub fn router(coord: Arc<Coordinator>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(coord)
}

async fn readyz(State(c): State<Arc<Coordinator>>) -> impl IntoResponse {
    match c.status() {
        Status::Ready(s) => (
            StatusCode::OK,
            format!("ready: manifest {}\n", s.manifest.hash()),
        ),
        Status::Uninitialized => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no manifest set yet\n".to_string(),
        ),
        Status::Recovery { latest } => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: recovery mode (history up to transition {latest} found on disk; the seed must be recovered)\n"
            ),
        ),
    }
}

async fn metrics(State(c): State<Arc<Coordinator>>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        c.metrics().encode(),
    )
}
