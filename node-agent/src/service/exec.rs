//! `Exec`: a command in a running container.

use std::sync::Arc;

use skiff_proto::agent::{ExecInput, ExecOutput};
use tonic::{Status, Streaming};

use super::{BoxStream, PodDirectory};
use crate::runtime::Runtime;

/// Serves one exec stream.
pub async fn serve(
    _pods: Arc<dyn PodDirectory>,
    _runtime: Arc<Runtime>,
    _input: Streaming<ExecInput>,
) -> Result<BoxStream<ExecOutput>, Status> {
    Err(Status::unimplemented("exec is not served yet"))
}
