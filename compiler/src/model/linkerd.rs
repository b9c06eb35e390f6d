//! The Linkerd model: not written yet (see `model/mod.rs` for the contract).

use super::{Answer, Cluster, Model, ModelError, Request};
use crate::object::MeshObject;

#[derive(Debug)]
pub struct Linkerd;

impl Model for Linkerd {
    fn answer(
        &self,
        _objects: &[MeshObject],
        _cluster: &Cluster,
        _request: &Request,
    ) -> Result<Answer, ModelError> {
        Err(ModelError {
            object: String::new(),
            message: "the Linkerd model is not written yet".into(),
        })
    }
}
