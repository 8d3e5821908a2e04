//! `ETag` and `Cache-Control` for polling dashboards: a client that sends the tag it holds gets
//! `304 Not Modified` and no body while the numbers have not changed.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use crate::AppState;

/// Answers are small (one community's table), so the body is buffered and hashed as it leaves.
pub async fn conditional(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let if_none_match = req.headers().get(header::IF_NONE_MATCH).cloned();
    let resp = next.run(req).await;
    let (mut parts, body) = resp.into_parts();
    if parts.status != StatusCode::OK {
        parts.headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
        return Response::from_parts(parts, body);
    }
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "response body could not be read for its ETag");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let tag = etag(&parts.headers, &bytes);
    parts.headers.insert(header::ETAG, tag.clone());
    let cache = format!("private, max-age={}", state.config.cache_max_age_secs);
    parts.headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_str(&cache).expect("ascii header"));
    // The same URL answers per key and per Accept header.
    parts.headers.insert(header::VARY, HeaderValue::from_static("Authorization, Accept"));
    if if_none_match.as_ref().is_some_and(|v| matches(v, &tag)) {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// A strong tag over the content type and the body: JSON and CSV of the same table differ.
fn etag(headers: &HeaderMap, body: &[u8]) -> HeaderValue {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()).unwrap_or_default());
    h.update(&[0]);
    h.update(body);
    HeaderValue::from_str(&format!("\"{:032x}\"", h.digest128())).expect("hex is a valid header")
}

/// `If-None-Match` uses the weak comparison (RFC 9110 13.1.2): `*`, or any listed tag equal to
/// ours once a `W/` prefix is ignored.
fn matches(if_none_match: &HeaderValue, tag: &HeaderValue) -> bool {
    let Ok(list) = if_none_match.to_str() else { return false };
    let ours = tag.to_str().unwrap_or_default();
    list.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_and_listed_tags_match() {
        let ours = HeaderValue::from_static("\"abc\"");
        for v in ["\"abc\"", "W/\"abc\"", "\"x\", \"abc\"", "*"] {
            assert!(matches(&HeaderValue::from_str(v).unwrap(), &ours), "{v}");
        }
        for v in ["\"abd\"", "abc", ""] {
            assert!(!matches(&HeaderValue::from_str(v).unwrap(), &ours), "{v}");
        }
    }
}
