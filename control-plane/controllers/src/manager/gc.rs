//! stub
use super::Context;
use futures::future::BoxFuture;
use std::sync::Arc;
/// stub
pub fn start(_ctx: &Arc<Context>) -> Vec<BoxFuture<'static, ()>> { Vec::new() }
