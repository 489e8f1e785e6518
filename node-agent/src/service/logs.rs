//! `Logs`: a container's CRI log files as `kubectl logs` asks for them.

use skiff_proto::agent::{LogChunk, LogRequest};
use tonic::Status;

use super::{BoxStream, PodDirectory};
use crate::runtime::Runtime;

/// Serves one log request.
pub async fn serve(
    _pods: &dyn PodDirectory,
    _runtime: &Runtime,
    _req: LogRequest,
) -> Result<BoxStream<LogChunk>, Status> {
    Err(Status::unimplemented("logs are not served yet"))
}
