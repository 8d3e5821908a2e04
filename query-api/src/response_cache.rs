//! A short-lived cache of whole answers, shared by every key that may read the community.
//! Dashboards poll the same few URLs; without it each poll is a ClickHouse query, and 50 clients
//! polling one retention table queue behind each other in ClickHouse. Concurrent misses for one
//! URL wait for a single computation (single flight). Answers are at most `ttl` older than the
//! tables; only 200s are kept. The key check runs before the lookup, on every request.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

use crate::AppState;

#[derive(Clone)]
struct Cached {
    content_type: Option<HeaderValue>,
    body: Bytes,
}

struct Slot {
    created: Instant,
    answer: OnceCell<Cached>,
}

pub struct ResponseCache {
    ttl: Duration,
    max_entries: usize,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl ResponseCache {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        ResponseCache { ttl, max_entries, slots: Mutex::new(HashMap::new()) }
    }

    fn slot(&self, key: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().expect("cache lock");
        if let Some(s) = slots.get(key).filter(|s| s.created.elapsed() < self.ttl) {
            return s.clone();
        }
        if slots.len() >= self.max_entries {
            slots.retain(|_, s| s.created.elapsed() < self.ttl);
            if slots.len() >= self.max_entries {
                slots.clear();
            }
        }
        let s = Arc::new(Slot { created: Instant::now(), answer: OnceCell::new() });
        slots.insert(key.to_owned(), s.clone());
        s
    }

    pub fn len(&self) -> usize {
        self.slots.lock().expect("cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the answer depends on: path, query string, and whether CSV was asked for by header.
fn key(req: &Request) -> String {
    let csv = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/csv"));
    format!("{}?{}#{}", req.uri().path(), req.uri().query().unwrap_or(""), csv as u8)
}

pub async fn cached(
    State(state): State<Arc<AppState>>,
    Path(path): Path<HashMap<String, String>>,
    req: Request,
    next: Next,
) -> Response {
    let cache = &state.response_cache;
    if cache.ttl.is_zero() {
        return next.run(req).await;
    }
    let community = path.get("community").map(String::as_str).unwrap_or_default();
    if let Err(e) = crate::routes::authorize(&state, req.headers(), community) {
        return e.into_response();
    }
    let slot = cache.slot(&key(&req));
    let mut computed = false;
    let answer = slot
        .answer
        .get_or_try_init(|| async {
            computed = true;
            let resp = next.run(req).await;
            if !resp.status().is_success() {
                return Err(resp);
            }
            let (parts, body) = resp.into_parts();
            match axum::body::to_bytes(body, usize::MAX).await {
                Ok(body) => Ok(Cached { content_type: parts.headers.get(header::CONTENT_TYPE).cloned(), body }),
                Err(e) => Err((axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()),
            }
        })
        .await;
    match answer {
        Ok(a) => {
            let outcome = if computed { "miss" } else { "hit" };
            state.metrics.response_cache.with_label_values(&[outcome]).inc();
            let mut headers = HeaderMap::new();
            if let Some(ct) = &a.content_type {
                headers.insert(header::CONTENT_TYPE, ct.clone());
            }
            (headers, Body::from(a.body.clone())).into_response()
        }
        Err(resp) => resp,
    }
}
