//! The Istio model: not written yet (see `model/mod.rs` for the contract).

use super::{Answer, Cluster, Model, ModelError, Request};
use crate::object::MeshObject;

#[derive(Debug)]
pub struct Istio;

impl Model for Istio {
    fn answer(
        &self,
        _objects: &[MeshObject],
        _cluster: &Cluster,
        _request: &Request,
    ) -> Result<Answer, ModelError> {
        Err(ModelError {
            object: String::new(),
            message: "the Istio model is not written yet".into(),
        })
    }
}
