//! The HTTP surface of SPEC section 5 (read side).

use crate::config::QueryConfig;
use crate::csv::write_row;
use crate::metrics::Metrics;
use crate::params::{Format, RawParams, Selection};
use crate::response_cache::ResponseCache;
use crate::source::{Freshness, Source};
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
    pub response_cache: ResponseCache,
}

impl AppState {
    pub fn new(config: QueryConfig, source: Arc<dyn Source>, metrics: Metrics) -> Self {
        let response_cache = ResponseCache::new(
            std::time::Duration::from_millis(config.response_cache_ms),
            config.response_cache_entries.max(1),
        );
        AppState { config, source, metrics, response_cache }
    }
}

pub fn router(state: Arc<AppState>, readiness: Readiness) -> Router {
    let ops = common::http::ops_routes(state.metrics.registry.clone(), readiness);
    // Metric answers go through the response cache; freshness (what callers wait on) does not.
    let metrics = Router::new()
        .route("/v1/communities/{community}/retention", get(retention))
        .route("/v1/communities/{community}/activation", get(activation))
        .route("/v1/communities/{community}/conversion", get(conversion))
        .route("/v1/communities/{community}/referral", get(referral))
        .route("/v1/communities/{community}/engagement", get(engagement))
        .route("/v1/communities/{community}/lifecycle", get(lifecycle))
        .route("/v1/communities/{community}/churn", get(churn))
        .route("/v1/communities/{community}/groups", get(groups))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::response_cache::cached));
    Router::new()
        .merge(metrics)
        .route("/v1/communities/{community}/freshness", get(freshness))
        .route("/openapi.json", get(openapi))
        .merge(crate::dashboard::routes())
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::caching::conditional))
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
pub(crate) fn authorize(state: &AppState, headers: &HeaderMap, community: &str) -> Result<(), ApiError> {
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

/// What every metric endpoint starts with: the key check, the parameters, and the community's
/// freshness (`as_of`, and the days the per-period tables span). A community with no counted
/// event, or a group the community has no event in, is a 404.
async fn prelude(
    state: &AppState,
    headers: &HeaderMap,
    community: &str,
    params: &RawParams,
) -> Result<(Selection, Format, Freshness), ApiError> {
    authorize(state, headers, community)?;
    let sel = params.selection(community)?;
    let format = params.format(accept(headers))?;
    let groups = async {
        match sel.group {
            Some(_) => state.source.groups(community).await.map(Some),
            None => Ok(None),
        }
    };
    let (fresh, groups) = tokio::join!(state.source.freshness(community), groups);
    let fresh = fresh.map_err(|e| unavailable(state, e))?;
    known_community(community, &fresh)?;
    if let (Some(g), Some(groups)) = (&sel.group, groups.map_err(|e| unavailable(state, e))?) {
        if !groups.contains(g) {
            return Err(ApiError::not_found(format!(
                "group: community \"{community}\" has no group \"{g}\" (no event was counted in it)"
            )));
        }
    }
    Ok((sel, format, fresh))
}

fn known_community(community: &str, fresh: &Freshness) -> Result<(), ApiError> {
    match fresh.as_of_ms {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(format!("community: no event has been counted for community \"{community}\""))),
    }
}

/// A metric table: named columns and one row per cohort or period, answered as JSON objects under
/// `key` (after the common head fields and `extra`) or as CSV with the same columns.
struct Table {
    key: &'static str,
    columns: Vec<&'static str>,
    rows: Vec<Vec<Value>>,
}

fn csv_cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n
            .as_u64()
            .map(|u| u.to_string())
            .or_else(|| n.as_i64().map(|i| i.to_string()))
            .unwrap_or_else(|| n.as_f64().map(|f| f.to_string()).unwrap_or_default()),
        other => other.to_string(),
    }
}

fn render(sel: &Selection, fresh: &Freshness, extra: &[(&str, Value)], table: Table, format: Format) -> Response {
    if format == Format::Csv {
        let mut out = String::new();
        write_row(&mut out, &table.columns.iter().map(|c| c.to_string()).collect::<Vec<_>>());
        for row in &table.rows {
            write_row(&mut out, &row.iter().map(csv_cell).collect::<Vec<_>>());
        }
        return csv_response(out);
    }
    let mut body = head(sel, fresh.as_of_ms);
    for (k, v) in extra {
        body.insert((*k).into(), v.clone());
    }
    let rows = table
        .rows
        .into_iter()
        .map(|r| Value::Object(table.columns.iter().map(|c| c.to_string()).zip(r).collect()))
        .collect();
    body.insert(table.key.into(), rows);
    Json(Value::Object(body)).into_response()
}

fn day(d: &chrono::NaiveDate) -> Value {
    json!(d.to_string())
}

#[tracing::instrument(name = "query.retention", skip_all, fields(%community))]
async fn retention(
    State(state): State<Arc<AppState>>,
    Path(community): Path<String>,
    Query(params): Query<RawParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (sel, format, fresh) = prelude(&state, &headers, &community, &params).await?;
    let mode = params.mode()?;
    let rows = state.source.retention(&sel, mode).await.map_err(|e| unavailable(&state, e))?;
    // JSON holds one row per cohort with its values; CSV one line per cohort and offset.
    let table = if format == Format::Csv {
        let lines = rows
            .iter()
            .flat_map(|r| {
                r.values.iter().enumerate().map(move |(k, v)| vec![day(&r.cohort), json!(r.size), json!(k), json!(v)])
            })
            .collect();
        Table { key: "cohorts", columns: vec!["cohort", "size", "period_offset", "value"], rows: lines }
    } else {
        let lines = rows.iter().map(|r| vec![day(&r.cohort), json!(r.size), json!(r.values)]).collect();
        Table { key: "cohorts", columns: vec!["cohort", "size", "values"], rows: lines }
    };
    Ok(render(&sel, &fresh, &[("mode", json!(mode.as_str()))], table, format))
}

#[tracing::instrument(name = "query.activation", skip_all, fields(%community))]
async fn activation(
    State(state): State<Arc<AppState>>,
    Path(community): Path<String>,
    Query(params): Query<RawParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (sel, format, fresh) = prelude(&state, &headers, &community, &params).await?;
    let rows = state.source.activation(&sel, fresh.as_of_ms).await.map_err(|e| unavailable(&state, e))?;
    let table = Table {
        key: "cohorts",
        columns: vec!["cohort", "size", "activated", "median_hours_to_activate", "complete"],
        rows: rows
            .iter()
            .map(|r| {
                vec![
                    day(&r.cohort),
                    json!(r.size),
                    json!(r.activated),
                    json!(r.median_hours_to_activate),
                    json!(r.complete),
                ]
            })
            .collect(),
    };
    Ok(render(&sel, &fresh, &[], table, format))
}

#[tracing::instrument(name = "query.conversion", skip_all, fields(%community))]
async fn conversion(
    State(state): State<Arc<AppState>>,
    Path(community): Path<String>,
    Query(params): Query<RawParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (sel, format, fresh) = prelude(&state, &headers, &community, &params).await?;
    let rows = state.source.conversion(&sel, fresh.as_of_ms).await.map_err(|e| unavailable(&state, e))?;
    let table = Table {
        key: "cohorts",
        columns: vec!["cohort", "size", "converted", "value", "activated", "activated_then_converted", "complete"],
        rows: rows
            .iter()
            .map(|r| {
                vec![
                    day(&r.cohort),
                    json!(r.size),
                    json!(r.converted),
                    json!(r.value),
                    json!(r.activated),
                    json!(r.activated_then_converted),
                    json!(r.complete),
                ]
            })
            .collect(),
    };
    Ok(render(&sel, &fresh, &[], table, format))
}

#[tracing::instrument(name = "query.referral", skip_all, fields(%community))]
async fn referral(
    State(state): State<Arc<AppState>>,
    Path(community): Path<String>,
    Query(params): Query<RawParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (sel, format, fresh) = prelude(&state, &headers, &community, &params).await?;
    let rows = state.source.referral(&sel).await.map_err(|e| unavailable(&state, e))?;
    let table = Table {
        key: "cohorts",
        columns: vec!["cohort", "size", "referred", "invited", "k_factor"],
        rows: rows
            .iter()
            .map(|r| vec![day(&r.cohort), json!(r.size), json!(r.referred), json!(r.invited), json!(r.k_factor)])
            .collect(),
    };
    Ok(render(&sel, &fresh, &[], table, format))
}

/// Every period of the selection's granularity from the community's first event to `as_of`,
/// within the request's `from`/`to` (period start dates, inclusive).
fn periods(sel: &Selection, days: Option<(chrono::NaiveDate, chrono::NaiveDate)>) -> Vec<chrono::NaiveDate> {
    use engine::period::{date_to_day, period_of_day, period_start_date};
    let Some((first, last)) = days else { return Vec::new() };
    let g = sel.granularity;
    let (lo, hi) = (period_of_day(date_to_day(first), g), period_of_day(date_to_day(last), g));
    (lo..=hi).map(|p| period_start_date(p, g)).filter(|d| sel.contains(*d)).collect()
}

/// A per-period table with every period listed, zeros where no partition wrote a row.
fn dense<const N: usize>(
    sel: &Selection,
    fresh: &Freshness,
    rows: Vec<(chrono::NaiveDate, [u64; N])>,
) -> Vec<(chrono::NaiveDate, [u64; N])> {
    let rows: std::collections::BTreeMap<_, _> = rows.into_iter().collect();
    periods(sel, fresh.days).into_iter().map(|d| (d, rows.get(&d).copied().unwrap_or([0; N]))).collect()
}

fn counts_row<const N: usize>(d: &chrono::NaiveDate, v: &[u64; N]) -> Vec<Value> {
    std::iter::once(day(d)).chain(v.iter().map(|x| json!(x))).collect()
}

#[tracing::instrument(name = "query.engagement", skip_all, fields(%community))]
async fn engagement(
    State(state): State<Arc<AppState>>,
    Path(community): Path<String>,
    Query(params): Query<RawParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (mut sel, format, fresh) = prelude(&state, &headers, &community, &params).await?;
    sel.granularity = engine::Granularity::Day;
    let rows = state.source.engagement(&sel).await.map_err(|e| unavailable(&state, e))?;
    let mut columns = vec!["day"];
    columns.extend(engine::activity::ENGAGEMENT);
    let rows = dense(&sel, &fresh, rows).iter().map(|(d, v)| counts_row(d, v)).collect();
    Ok(render(&sel, &fresh, &[], Table { key: "days", columns, rows }, format))
}

#[tracing::instrument(name = "query.lifecycle", skip_all, fields(%community))]
async fn lifecycle(
    State(state): State<Arc<AppState>>,
    Path(community): Path<String>,
    Query(params): Query<RawParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (sel, format, fresh) = prelude(&state, &headers, &community, &params).await?;
    let rows = state.source.lifecycle(&sel).await.map_err(|e| unavailable(&state, e))?;
    let mut columns = vec!["period"];
    columns.extend(engine::activity::LIFECYCLE);
    let rows = dense(&sel, &fresh, rows).iter().map(|(d, v)| counts_row(d, v)).collect();
    Ok(render(&sel, &fresh, &[], Table { key: "periods", columns, rows }, format))
}

#[tracing::instrument(name = "query.churn", skip_all, fields(%community))]
async fn churn(
    State(state): State<Arc<AppState>>,
    Path(community): Path<String>,
    Query(params): Query<RawParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (sel, format, fresh) = prelude(&state, &headers, &community, &params).await?;
    let rows = state.source.churn(&sel).await.map_err(|e| unavailable(&state, e))?;
    // Members in at the start and out at the end, over members in at the start; null for none.
    let rate = |v: &[u64; 5]| (v[0] > 0).then(|| v[1] as f64 / v[0] as f64);
    let rows = dense(&sel, &fresh, rows)
        .iter()
        .map(|(d, v)| vec![day(d), json!(v[0]), json!(v[2]), json!(v[3]), json!(v[4]), json!(rate(v))])
        .collect();
    let columns = vec!["period", "members_start", "left", "removed", "inactive", "churn_rate"];
    Ok(render(&sel, &fresh, &[], Table { key: "periods", columns, rows }, format))
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
    let (f, lag) = tokio::join!(state.source.freshness(&community), state.source.lag());
    let f =
        Freshness { lag_events: lag.map_err(|e| unavailable(&state, e))?, ..f.map_err(|e| unavailable(&state, e))? };
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

#[tracing::instrument(name = "query.groups", skip_all, fields(%community))]
async fn groups(
    State(state): State<Arc<AppState>>,
    Path(community): Path<String>,
    Query(params): Query<RawParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers, &community)?;
    let format = params.format(accept(&headers))?;
    let (fresh, groups) = tokio::join!(state.source.freshness(&community), state.source.groups(&community));
    known_community(&community, &fresh.map_err(|e| unavailable(&state, e))?)?;
    let groups = groups.map_err(|e| unavailable(&state, e))?;
    if format == Format::Csv {
        let mut out = String::new();
        write_row(&mut out, &["group".to_owned()]);
        for g in &groups {
            write_row(&mut out, std::slice::from_ref(g));
        }
        return Ok(csv_response(out));
    }
    Ok(Json(json!({"community": community, "groups": groups})).into_response())
}

/// The OpenAPI 3.1 description of this service (tests check real answers against it).
async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::OPENAPI).into_response()
}
