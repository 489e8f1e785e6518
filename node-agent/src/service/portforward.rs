//! `PortForward`: one TCP connection to a port on the pod's loopback.

use skiff_proto::agent::{PortForwardInput, PortForwardOutput};
use tonic::{Status, Streaming};

use super::{BoxStream, PodDirectory};

/// Serves one forwarded connection.
pub async fn serve(
    _pods: &dyn PodDirectory,
    _input: Streaming<PortForwardInput>,
) -> Result<BoxStream<PortForwardOutput>, Status> {
    Err(Status::unimplemented("port-forward is not served yet"))
}
