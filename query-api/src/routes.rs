//! The HTTP surface of SPEC section 5 (read side).

use crate::config::QueryConfig;
use crate::csv::write_row;
use crate::metrics::Metrics;
use crate::params::{Format, RawParams, Selection};
use crate::source::Source;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use common::{ApiError, Readiness};
use schemas::event::format_ts;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

pub struct AppState {
    pub config: QueryConfig,
    pub source: Arc<dyn Source>,
    pub metrics: Metrics,
}

pub fn router(state: Arc<AppState>, readiness: Readiness) -> Router {
    let ops = common::http::ops_routes(state.metrics.registry.clone(), readiness);
    Router::new()
        .route("/v1/communities/{community}/retention", get(retention))
        .route("/v1/communities/{community}/activation", get(activation))
        .route("/v1/communities/{community}/conversion", get(conversion))
        .route("/v1/communities/{community}/referral", get(referral))
        .route("/v1/communities/{community}/engagement", get(engagement))
        .route("/v1/communities/{community}/lifecycle", get(lifecycle))
        .route("/v1/communities/{community}/churn", get(churn))
        .route("/v1/communities/{community}/freshness", get(freshness))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), record_latency))
        .with_state(state)
        .merge(ops)
}

async fn record_latency(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let started = Instant::now();
    let resp = next.run(req).await;
    state
        .metrics
        .request_seconds
        .with_label_values(&[route.as_str(), resp.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// The read key must be known (401) and bound to the community in the path (403). The answer
/// is the same whether or not the community exists, so a key learns nothing of other tenants.
fn authorize(state: &AppState, headers: &HeaderMap, community: &str) -> Result<(), ApiError> {
    let token = common::auth::bearer(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()))
        .ok_or_else(|| ApiError::unauthorized("Authorization: a read key is required (Authorization: Bearer <key>)"))?;
    let binding = common::auth::find_key(&state.config.read_keys, token)
        .ok_or_else(|| ApiError::unauthorized("Authorization: unknown read key"))?;
    if !binding.allows(community) {
        return Err(ApiError::forbidden(format!("this read key may not read community \"{community}\"")));
    }
    Ok(())
}

fn unavailable(state: &AppState, e: crate::QueryError) -> ApiError {
    tracing::warn!(error = %e, "clickhouse query failed");
    ApiError::unavailable("the metric store did not answer; retry later", state.config.retry_after_secs)
}

fn accept(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
}

fn as_of_json(ms: Option<i64>) -> Value {
    ms.map(|t| Value::String(format_ts(t))).unwrap_or(Value::Null)
}

fn head(sel: &Selection, as_of: Option<i64>) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("community".into(), json!(sel.community));
    m.insert("group".into(), sel.group.as_ref().map(|g| json!(g)).unwrap_or(Value::Null));
    m.insert("granularity".into(), json!(sel.granularity.as_str()));
    m.insert("as_of".into(), as_of_json(as_of));
    m
}

fn csv_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response()
}

#[tracing::instrument(name = "query.retention", skip_all, fields(%community))]
async fn retention(
    State(state): State<Arc<AppState>>,
    Path(community): Path<String>,
    Query(params): Query<RawParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &community)?;
    let sel = params.selection(&community)?;
    let mode = params.mode()?;
    let format = params.format(accept(&headers))?;
    let fresh = state.source.freshness(&community).await.map_err(|e| unavailable(&state, e))?;
    let rows = state.source.retention(&sel, mode).await.map_err(|e| unavailable(&state, e))?;
    if format == Format::Csv {
        let mut out = String::new();
        write_row(&mut out, &["cohort", "size", "period_offset", "value"].map(String::from));
        for r in &rows {
            for (k, v) in r.values.iter().enumerate() {
                write_row(&mut out, &[r.cohort.to_string(), r.size.to_string(), k.to_string(), v.to_string()]);
            }
        }
        return Ok(csv_response(out));
    }
    let mut body = head(&sel, fresh.as_of_ms);
    body.insert("mode".into(), json!(mode.as_str()));
    body.insert(
        "cohorts".into(),
        rows.iter().map(|r| json!({"cohort": r.cohort.to_string(), "size": r.size, "values": r.values})).collect(),
    );
    Ok(Json(Value::Object(body)).into_response())
}

#[tracing::instrument(name = "query.activation", skip_all, fields(%community))]
async fn activation(
    State(state): State<Arc<AppState>>,
    Path(community): Path<String>,
    Query(params): Query<RawParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &community)?;
    let sel = params.selection(&community)?;
    let format = params.format(accept(&headers))?;
    let fresh = state.source.freshness(&community).await.map_err(|e| unavailable(&state, e))?;
    let rows = state.source.activation(&sel, fresh.as_of_ms).await.map_err(|e| unavailable(&state, e))?;
    if format == Format::Csv {
        let mut out = String::new();
        write_row(&mut out, &["cohort", "size", "activated", "median_hours_to_activate", "complete"].map(String::from));
        for r in &rows {
            let median = r.median_hours_to_activate.map(|m| m.to_string()).unwrap_or_default();
            write_row(
                &mut out,
                &[r.cohort.to_string(), r.size.to_string(), r.activated.to_string(), median, r.complete.to_string()],
            );
        }
        return Ok(csv_response(out));
    }
    let mut body = head(&sel, fresh.as_of_ms);
    body.insert(
        "cohorts".into(),
        rows.iter()
            .map(|r| {
                json!({"cohort": r.cohort.to_string(), "size": r.size, "activated": r.activated,
                       "median_hours_to_activate": r.median_hours_to_activate, "complete": r.complete})
            })
            .collect(),
    );
    Ok(Json(Value::Object(body)).into_response())
}

#[tracing::instrument(name = "query.conversion", skip_all, fields(%community))]
async fn conversion(
    State(state): State<Arc<AppState>>,
    Path(community): Path<String>,
    Query(params): Query<RawParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &community)?;
    let sel = params.selection(&community)?;
    let format = params.format(accept(&headers))?;
    let fresh = state.source.freshness(&community).await.map_err(|e| unavailable(&state, e))?;
    let rows = state.source.conversion(&sel, fresh.as_of_ms).await.map_err(|e| unavailable(&state, e))?;
    if format == Format::Csv {
        let mut out = String::new();
        let head = ["cohort", "size", "converted", "value", "activated", "activated_then_converted", "complete"];
        write_row(&mut out, &head.map(String::from));
        for r in &rows {
            write_row(
                &mut out,
                &[
                    r.cohort.to_string(),
                    r.size.to_string(),
                    r.converted.to_string(),
                    r.value.to_string(),
                    r.activated.to_string(),
                    r.activated_then_converted.to_string(),
                    r.complete.to_string(),
                ],
            );
        }
        return Ok(csv_response(out));
    }
    let mut body = head(&sel, fresh.as_of_ms);
    body.insert(
        "cohorts".into(),
        rows.iter()
            .map(|r| {
                json!({"cohort": r.cohort.to_string(), "size": r.size, "converted": r.converted, "value": r.value,
                       "activated": r.activated, "activated_then_converted": r.activated_then_converted,
                       "complete": r.complete})
            })
            .collect(),
    );
    Ok(Json(Value::Object(body)).into_response())
}

#[tracing::instrument(name = "query.referral", skip_all, fields(%community))]
async fn referral(
    State(state): State<Arc<AppState>>,
    Path(community): Path<String>,
    Query(params): Query<RawParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &community)?;
    let sel = params.selection(&community)?;
    let format = params.format(accept(&headers))?;
    let fresh = state.source.freshness(&community).await.map_err(|e| unavailable(&state, e))?;
    let rows = state.source.referral(&sel).await.map_err(|e| unavailable(&state, e))?;
    if format == Format::Csv {
        let mut out = String::new();
        write_row(&mut out, &["cohort", "size", "referred", "invited", "k_factor"].map(String::from));
        for r in &rows {
            let cells = [
                r.cohort.to_string(),
                r.size.to_string(),
                r.referred.to_string(),
                r.invited.to_string(),
                r.k_factor.to_string(),
            ];
            write_row(&mut out, &cells);
        }
        return Ok(csv_response(out));
    }
    let mut body = head(&sel, fresh.as_of_ms);
    body.insert(
        "cohorts".into(),
        rows.iter()
            .map(|r| {
                json!({"cohort": r.cohort.to_string(), "size": r.size, "referred": r.referred,
                       "invited": r.invited, "k_factor": r.k_factor})
            })
            .collect(),
    );
    Ok(Json(Value::Object(body)).into_response())
}

/// Every period of granularity `g` from the community's first event to `as_of`, within the
/// request's `from`/`to` (period start dates, inclusive).
fn periods(sel: &Selection, days: Option<(chrono::NaiveDate, chrono::NaiveDate)>) -> Vec<chrono::NaiveDate> {
    use engine::period::{date_to_day, period_of_day, period_start_date};
    let Some((first, last)) = days else { return Vec::new() };
    let g = sel.granularity;
    let (lo, hi) = (period_of_day(date_to_day(first), g), period_of_day(date_to_day(last), g));
    (lo..=hi).map(|p| period_start_date(p, g)).filter(|d| sel.contains(*d)).collect()
}

#[tracing::instrument(name = "query.engagement", skip_all, fields(%community))]
async fn engagement(
    State(state): State<Arc<AppState>>,
    Path(community): Path<String>,
    Query(params): Query<RawParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &community)?;
    let mut sel = params.selection(&community)?;
    sel.granularity = engine::Granularity::Day;
    let format = params.format(accept(&headers))?;
    let fresh = state.source.freshness(&community).await.map_err(|e| unavailable(&state, e))?;
    let rows: std::collections::BTreeMap<_, _> =
        state.source.engagement(&sel).await.map_err(|e| unavailable(&state, e))?.into_iter().collect();
    let names = engine::activity::ENGAGEMENT;
    let dense: Vec<(chrono::NaiveDate, [u64; 10])> =
        periods(&sel, fresh.days).into_iter().map(|d| (d, rows.get(&d).copied().unwrap_or([0; 10]))).collect();
    if format == Format::Csv {
        let mut out = String::new();
        let mut head_row = vec!["day".to_string()];
        head_row.extend(names.iter().map(|n| n.to_string()));
        write_row(&mut out, &head_row);
        for (d, v) in &dense {
            let mut cells = vec![d.to_string()];
            cells.extend(v.iter().map(u64::to_string));
            write_row(&mut out, &cells);
        }
        return Ok(csv_response(out));
    }
    let mut body = head(&sel, fresh.as_of_ms);
    body.insert(
        "days".into(),
        dense
            .iter()
            .map(|(d, v)| {
                let mut m = serde_json::Map::new();
                m.insert("day".into(), json!(d.to_string()));
                for (n, x) in names.iter().zip(v) {
                    m.insert((*n).into(), json!(x));
                }
                Value::Object(m)
            })
            .collect(),
    );
    Ok(Json(Value::Object(body)).into_response())
}

#[tracing::instrument(name = "query.lifecycle", skip_all, fields(%community))]
async fn lifecycle(
    State(state): State<Arc<AppState>>,
    Path(community): Path<String>,
    Query(params): Query<RawParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &community)?;
    let sel = params.selection(&community)?;
    let format = params.format(accept(&headers))?;
    let fresh = state.source.freshness(&community).await.map_err(|e| unavailable(&state, e))?;
    let rows: std::collections::BTreeMap<_, _> =
        state.source.lifecycle(&sel).await.map_err(|e| unavailable(&state, e))?.into_iter().collect();
    let names = engine::activity::LIFECYCLE;
    let dense: Vec<(chrono::NaiveDate, [u64; 4])> =
        periods(&sel, fresh.days).into_iter().map(|d| (d, rows.get(&d).copied().unwrap_or([0; 4]))).collect();
    if format == Format::Csv {
        let mut out = String::new();
        write_row(&mut out, &["period", "new", "returning", "resurrecting", "dormant"].map(String::from));
        for (d, v) in &dense {
            let mut cells = vec![d.to_string()];
            cells.extend(v.iter().map(u64::to_string));
            write_row(&mut out, &cells);
        }
        return Ok(csv_response(out));
    }
    let mut body = head(&sel, fresh.as_of_ms);
    body.insert(
        "periods".into(),
        dense
            .iter()
            .map(|(d, v)| {
                let mut m = serde_json::Map::new();
                m.insert("period".into(), json!(d.to_string()));
                for (n, x) in names.iter().zip(v) {
                    m.insert((*n).into(), json!(x));
                }
                Value::Object(m)
            })
            .collect(),
    );
    Ok(Json(Value::Object(body)).into_response())
}

#[tracing::instrument(name = "query.churn", skip_all, fields(%community))]
async fn churn(
    State(state): State<Arc<AppState>>,
    Path(community): Path<String>,
    Query(params): Query<RawParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &community)?;
    let sel = params.selection(&community)?;
    let format = params.format(accept(&headers))?;
    let fresh = state.source.freshness(&community).await.map_err(|e| unavailable(&state, e))?;
    let rows: std::collections::BTreeMap<_, _> =
        state.source.churn(&sel).await.map_err(|e| unavailable(&state, e))?.into_iter().collect();
    let dense: Vec<(chrono::NaiveDate, [u64; 5])> =
        periods(&sel, fresh.days).into_iter().map(|d| (d, rows.get(&d).copied().unwrap_or([0; 5]))).collect();
    // Members in at the start and out at the end, over members in at the start; null for none.
    let rate = |v: &[u64; 5]| (v[0] > 0).then(|| v[1] as f64 / v[0] as f64);
    if format == Format::Csv {
        let mut out = String::new();
        write_row(
            &mut out,
            &["period", "members_start", "left", "removed", "inactive", "churn_rate"].map(String::from),
        );
        for (d, v) in &dense {
            let r = rate(v).map(|r| r.to_string()).unwrap_or_default();
            write_row(
                &mut out,
                &[d.to_string(), v[0].to_string(), v[2].to_string(), v[3].to_string(), v[4].to_string(), r],
            );
        }
        return Ok(csv_response(out));
    }
    let mut body = head(&sel, fresh.as_of_ms);
    body.insert(
        "periods".into(),
        dense
            .iter()
            .map(|(d, v)| {
                json!({"period": d.to_string(), "members_start": v[0], "left": v[2], "removed": v[3],
                       "inactive": v[4], "churn_rate": rate(v)})
            })
            .collect(),
    );
    Ok(Json(Value::Object(body)).into_response())
}

#[tracing::instrument(name = "query.freshness", skip_all, fields(%community))]
async fn freshness(
    State(state): State<Arc<AppState>>,
    Path(community): Path<String>,
    Query(params): Query<RawParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &community)?;
    let format = params.format(accept(&headers))?;
    let f = state.source.freshness(&community).await.map_err(|e| unavailable(&state, e))?;
    if format == Format::Csv {
        let mut out = String::new();
        write_row(&mut out, &["as_of", "events_processed", "lag_events"].map(String::from));
        let as_of = f.as_of_ms.map(format_ts).unwrap_or_default();
        write_row(&mut out, &[as_of, f.events_processed.to_string(), f.lag_events.to_string()]);
        return Ok(csv_response(out));
    }
    Ok(Json(
        json!({"as_of": as_of_json(f.as_of_ms), "events_processed": f.events_processed, "lag_events": f.lag_events}),
    )
    .into_response())
}
