//! gRPC handlers of the user API and the mesh API.

use std::sync::Arc;

use nunki_api::meshapi::mesh_api_server::MeshApi as MeshApiTrait;
use nunki_api::meshapi::{
    GetSeedRequest, GetSeedResponse, NewMeshCertRequest, NewMeshCertResponse,
};
use nunki_api::userapi::user_api_server::UserApi as UserApiTrait;
use nunki_api::userapi::{
    GetAuditLogRequest, GetAuditLogResponse, GetManifestsRequest, GetManifestsResponse,
    GetSeedSharesRequest, GetSeedSharesResponse, RecoverRequest, RecoverResponse,
    SetManifestRequest, SetManifestResponse,
};
use tonic::{Request, Response, Status};

use crate::server::ConnInfo;
use crate::state::{CoordError, Coordinator};

fn status(e: CoordError) -> Status {
    match e {
        CoordError::InvalidArgument(m) => Status::invalid_argument(m),
        CoordError::PermissionDenied(m) => Status::permission_denied(m),
        CoordError::FailedPrecondition(m) => Status::failed_precondition(m),
        CoordError::Unauthenticated(m) => Status::unauthenticated(m),
        CoordError::Aborted(m) => Status::aborted(m),
        CoordError::Internal(m) => {
            // Details (paths, hashes of host-controlled files) go to the log only.
            tracing::error!(error = %m, "internal error");
            Status::internal("internal error in the Coordinator; its log has the details")
        }
    }
}

/// The user API caller's client key (SubjectPublicKeyInfo DER), if it presented one.
fn client_spki<T>(req: &Request<T>) -> Option<Vec<u8>> {
    req.extensions()
        .get::<ConnInfo>()
        .and_then(|i| i.peer_spki.clone())
}

/// The mesh API caller, attested in the handshake, with the manifest generation it was verified
/// under.
fn attested_peer<T>(req: &Request<T>) -> Result<(nunki_atls::VerifiedPeer, u64), Status> {
    let unauthenticated = || Status::unauthenticated("no attested peer on this connection");
    let info = req
        .extensions()
        .get::<ConnInfo>()
        .ok_or_else(unauthenticated)?;
    let peer = info.peer.clone().ok_or_else(unauthenticated)?;
    Ok((peer, info.generation))
}

/// The user API (port 1313).
#[derive(Debug, Clone)]
pub struct UserApi {
    coord: Arc<Coordinator>,
}

impl UserApi {
    /// Handlers over `coord`.
    pub fn new(coord: Arc<Coordinator>) -> Self {
        Self { coord }
    }
}

#[tonic::async_trait]
impl UserApiTrait for UserApi {
    async fn set_manifest(
        &self,
        req: Request<SetManifestRequest>,
    ) -> Result<Response<SetManifestResponse>, Status> {
        let spki = client_spki(&req);
        let r = req.into_inner();
        let expected = if r.previous_transition.is_empty() {
            None
        } else {
            Some(
                nunki_manifest::TransitionHash::from_slice(&r.previous_transition)
                    .map_err(|e| Status::invalid_argument(format!("previous_transition: {e}")))?,
            )
        };
        let res = self
            .coord
            .set_manifest(&r.manifest, &r.policies, spki.as_deref(), expected)
            .await;
        match res {
            Ok(ok) => Ok(Response::new(SetManifestResponse {
                root_ca: ok.root_ca.into_bytes(),
                mesh_ca: ok.mesh_ca.into_bytes(),
                seed_share_document: match ok.seed_shares {
                    Some(doc) => serde_json::to_vec_pretty(&doc)
                        .map_err(|e| Status::internal(format!("encoding the seed shares: {e}")))?,
                    None => Vec::new(),
                },
            })),
            Err(e) => {
                tracing::info!(error = %e, "SetManifest refused");
                Err(status(e))
            }
        }
    }

    async fn get_manifests(
        &self,
        _req: Request<GetManifestsRequest>,
    ) -> Result<Response<GetManifestsResponse>, Status> {
        let v = self.coord.get_manifests().await.map_err(status)?;
        Ok(Response::new(GetManifestsResponse {
            manifests: v.manifests,
            policies: v.policies,
            root_ca: v.root_ca.into_bytes(),
            mesh_ca: v.mesh_ca.into_bytes(),
            latest_transition: v.latest.hash.0.to_vec(),
            latest_transition_signature: v.latest.signature,
            history_public_key: v.history_public_key,
            transition_hashes: v.transition_hashes.iter().map(|t| t.0.to_vec()).collect(),
        }))
    }

    async fn recover(
        &self,
        req: Request<RecoverRequest>,
    ) -> Result<Response<RecoverResponse>, Status> {
        let spki = client_spki(&req);
        let r = req.into_inner();
        // The request holds the seed: wipe our copy when done.
        let seed = zeroize::Zeroizing::new(r.seed);
        let salt = zeroize::Zeroizing::new(r.salt);
        match self
            .coord
            .recover(&seed, &salt, spki.as_deref(), r.force)
            .await
        {
            Ok(ok) => Ok(Response::new(RecoverResponse {
                root_ca: ok.root_ca.into_bytes(),
                mesh_ca: ok.mesh_ca.into_bytes(),
            })),
            Err(e) => {
                tracing::info!(error = %e, "Recover refused");
                Err(status(e))
            }
        }
    }

    async fn get_seed_shares(
        &self,
        _req: Request<GetSeedSharesRequest>,
    ) -> Result<Response<GetSeedSharesResponse>, Status> {
        let doc = self.coord.seed_shares().await.map_err(status)?;
        Ok(Response::new(GetSeedSharesResponse {
            seed_share_document: doc,
        }))
    }

    async fn get_audit_log(
        &self,
        _req: Request<GetAuditLogRequest>,
    ) -> Result<Response<GetAuditLogResponse>, Status> {
        let v = self.coord.audit_log().await.map_err(status)?;
        Ok(Response::new(GetAuditLogResponse {
            records: v.log.records,
            head_signature: v.log.head.map(|h| h.signature).unwrap_or_default(),
            history_public_key: v.history_public_key.unwrap_or_default(),
        }))
    }
}

/// The mesh API (port 7777).
#[derive(Debug, Clone)]
pub struct MeshApi {
    coord: Arc<Coordinator>,
}

impl MeshApi {
    /// Handlers over `coord`.
    pub fn new(coord: Arc<Coordinator>) -> Self {
        Self { coord }
    }
}

#[tonic::async_trait]
impl MeshApiTrait for MeshApi {
    async fn new_mesh_cert(
        &self,
        req: Request<NewMeshCertRequest>,
    ) -> Result<Response<NewMeshCertResponse>, Status> {
        let (peer, generation) = attested_peer(&req)?;
        let cert = self
            .coord
            .new_mesh_cert(&peer, generation)
            .map_err(status)?;
        Ok(Response::new(NewMeshCertResponse {
            mesh_ca: cert.mesh_ca.into_bytes(),
            cert_chain: cert.chain.into_bytes(),
            root_ca: cert.root_ca.into_bytes(),
            workload_secret: cert
                .workload_secret
                .as_deref()
                .map(|s| s.to_vec())
                .unwrap_or_default(),
        }))
    }

    async fn get_seed(
        &self,
        req: Request<GetSeedRequest>,
    ) -> Result<Response<GetSeedResponse>, Status> {
        let (peer, generation) = attested_peer(&req)?;
        let (seed, salt) = self
            .coord
            .seed_for_peer(&peer, generation)
            .map_err(status)?;
        Ok(Response::new(GetSeedResponse {
            seed: seed.as_bytes().to_vec(),
            salt: salt.as_bytes().to_vec(),
        }))
    }
}
