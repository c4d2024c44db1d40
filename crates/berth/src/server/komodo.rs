//! Komodo-compatible execute/read API (placeholder until shapes are settled).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::{ApiError, App};

pub async fn execute(State(_app): State<Arc<App>>, _h: HeaderMap, _b: Bytes) -> Result<Response, ApiError> {
    Err(ApiError::internal("todo"))
}
pub async fn execute_path(
    State(_app): State<Arc<App>>,
    Path(_k): Path<String>,
    _h: HeaderMap,
    _b: Bytes,
) -> Result<Response, ApiError> {
    Err(ApiError::internal("todo"))
}
pub async fn read(State(_app): State<Arc<App>>, _h: HeaderMap, _b: Bytes) -> Result<Response, ApiError> {
    Err(ApiError::internal("todo"))
}
pub async fn read_path(
    State(_app): State<Arc<App>>,
    Path(_k): Path<String>,
    _h: HeaderMap,
    _b: Bytes,
) -> Result<Response, ApiError> {
    Err(ApiError::internal("todo"))
}
