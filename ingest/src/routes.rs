//! `POST /v1/events` and the ops routes.

use crate::body::{decode, format_of, split, too_large, Item};
use crate::config::IngestConfig;
use crate::metrics::Metrics;
use crate::sink::{EventSink, SinkError};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use common::{ApiError, Readiness};
use schemas::validate::event_id_of;
use schemas::{parse_event_value, Event, Limits};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;

pub struct AppState {
    pub config: IngestConfig,
    pub sink: Arc<dyn EventSink>,
    pub metrics: Metrics,
    /// One permit per event accepted but not yet acknowledged: the bounded queue of this service.
    pub in_flight: Semaphore,
    /// The ingest clock, in ms (a function so that tests can fix it).
    pub clock: fn() -> i64,
}

impl AppState {
    pub fn new(config: IngestConfig, sink: Arc<dyn EventSink>, metrics: Metrics) -> Self {
        let permits = config.max_in_flight_events;
        AppState { config, sink, metrics, in_flight: Semaphore::new(permits), clock: wall_clock_ms }
    }
}

fn wall_clock_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Debug, Serialize)]
pub struct IngestResponse {
    pub accepted: usize,
    pub rejected: usize,
    pub errors: Vec<EventError>,
}

#[derive(Debug, Serialize)]
pub struct EventError {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    pub message: String,
}

pub fn router(state: Arc<AppState>, readiness: Readiness) -> Router {
    let limit = state.config.limits.max_body_bytes;
    let ops = common::http::ops_routes(state.metrics.registry.clone(), readiness);
    Router::new()
        .route("/v1/events", post(post_events))
        // Compressed bodies are refused past the same size as decompressed ones.
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
        .merge(ops)
}

async fn post_events(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let resp = match handle(&state, &headers, &body).await {
        Ok(ok) => (StatusCode::OK, Json(ok)).into_response(),
        Err(e) => {
            if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                state.metrics.rejected.with_label_values(&["too_large"]).inc();
            }
            e.into_response()
        }
    };
    state
        .metrics
        .request_seconds
        .with_label_values(&["/v1/events", resp.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    resp
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tracing::instrument(name = "ingest.request", skip_all, fields(body_bytes = body.len(), accepted, rejected))]
async fn handle(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<IngestResponse, ApiError> {
    let cfg = &state.config;
    let token = common::auth::bearer(header_str(headers, header::AUTHORIZATION)).ok_or_else(|| {
        ApiError::unauthorized("Authorization: a write key is required (Authorization: Bearer <key>)")
    })?;
    let binding = common::auth::find_key(&cfg.write_keys, token)
        .ok_or_else(|| ApiError::unauthorized("Authorization: unknown write key"))?;
    let format = format_of(header_str(headers, header::CONTENT_TYPE))?;
    let decoded = decode(body, header_str(headers, header::CONTENT_ENCODING), cfg.limits.max_body_bytes)?;
    let items = split(&decoded, format, cfg.limits.max_events)?;

    let limits =
        Limits { max_event_bytes: cfg.limits.max_event_bytes, max_future_ms: cfg.limits.max_future_hours * 3_600_000 };
    let now = (state.clock)();
    let mut accepted: Vec<Event> = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items {
        let raw = match item {
            Item::Raw(raw) => raw,
            Item::Malformed(message) => {
                state.metrics.rejected.with_label_values(&["malformed"]).inc();
                errors.push(EventError { index, event_id: None, message });
                continue;
            }
        };
        let result = if raw.len() > limits.max_event_bytes {
            Err((
                None,
                schemas::ValidationError::new(
                    "event",
                    format!("must be at most {} bytes, got {}", limits.max_event_bytes, raw.len()),
                ),
            ))
        } else {
            match serde_json::from_slice::<serde_json::Value>(raw) {
                Err(e) => Err((None, schemas::ValidationError::new("event", format!("malformed JSON: {e}")))),
                Ok(v) => parse_event_value(&v, Some(now), &limits).map_err(|e| (event_id_of(&v), e)),
            }
        };
        match result {
            Ok(ev) => accepted.push(ev),
            Err((event_id, e)) => {
                state.metrics.rejected.with_label_values(&[e.reason_label()]).inc();
                errors.push(EventError { index, event_id, message: e.to_string() });
            }
        }
    }
    if let Some(foreign) = accepted.iter().find(|e| !binding.allows(&e.community_id)) {
        return Err(ApiError::forbidden(format!(
            "community_id: this write key may not write community \"{}\"",
            foreign.community_id
        )));
    }

    if !accepted.is_empty() {
        let n = u32::try_from(accepted.len()).map_err(|_| too_large("body: too many events".into()))?;
        let _permits = state.in_flight.try_acquire_many(n).map_err(|_| {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", "ingest queue is full; retry later")
                .retry_after(cfg.retry_after_secs)
        })?;
        state.metrics.in_flight_events.add(n as i64);
        let produce_started = Instant::now();
        let result = state.sink.send(&accepted).await;
        state.metrics.in_flight_events.sub(n as i64);
        state.metrics.producer_queue_depth.set(state.sink.queue_depth());
        match result {
            Ok(()) => {
                state.metrics.produce_seconds.observe(produce_started.elapsed().as_secs_f64());
                state.metrics.accepted.inc_by(accepted.len() as u64);
            }
            Err(SinkError::QueueFull) => {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    "Kafka producer queue is full; retry later (events of this request may arrive twice; they are deduplicated by event_id)",
                )
                .retry_after(cfg.retry_after_secs));
            }
            Err(SinkError::Unavailable(reason)) => {
                tracing::warn!(%reason, events = accepted.len(), "kafka did not acknowledge a batch");
                return Err(ApiError::unavailable(
                    "Kafka did not acknowledge the events; nothing of this request is reported accepted, retry it",
                    cfg.retry_after_secs,
                ));
            }
        }
    }
    let span = tracing::Span::current();
    span.record("accepted", accepted.len());
    span.record("rejected", errors.len());
    Ok(IngestResponse { accepted: accepted.len(), rejected: errors.len(), errors })
}
