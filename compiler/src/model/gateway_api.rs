//! The GatewayApi model: not written yet (see `model/mod.rs` for the contract).

use super::{Answer, Cluster, Model, ModelError, Request};
use crate::object::MeshObject;

#[derive(Debug)]
pub struct GatewayApi;

impl Model for GatewayApi {
    fn answer(
        &self,
        _objects: &[MeshObject],
        _cluster: &Cluster,
        _request: &Request,
    ) -> Result<Answer, ModelError> {
        Err(ModelError {
            object: String::new(),
            message: "the GatewayApi model is not written yet".into(),
        })
    }
}
