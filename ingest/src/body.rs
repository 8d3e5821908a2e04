//! Turns a request body into items, one per event: a JSON array or NDJSON, optionally gzip.
//! A malformed NDJSON line becomes an item that fails validation alone.

use axum::http::StatusCode;
use common::ApiError;
use serde_json::value::RawValue;
use std::io::Read;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonArray,
    Ndjson,
}

/// The body format from `Content-Type` (parameters such as `charset` are ignored).
pub fn format_of(content_type: Option<&str>) -> Result<Format, ApiError> {
    let essence = content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json") => Ok(Format::JsonArray),
        Some("application/x-ndjson") | Some("application/ndjson") | Some("application/jsonlines") => Ok(Format::Ndjson),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type: must be application/json (an array of events) or application/x-ndjson, got {}",
                other.map(|s| format!("\"{s}\"")).unwrap_or_else(|| "nothing".into())
            ),
        )),
    }
}

pub fn too_large(message: String) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
}

/// Decompresses per `Content-Encoding`, refusing more than `max` bytes of output.
pub fn decode(body: &[u8], encoding: Option<&str>, max: usize) -> Result<Vec<u8>, ApiError> {
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => {
            if body.len() > max {
                return Err(too_large(format!("body: must be at most {max} bytes, got {}", body.len())));
            }
            Ok(body.to_vec())
        }
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::new();
            let mut reader = flate2::read::MultiGzDecoder::new(body).take(max as u64 + 1);
            reader.read_to_end(&mut out).map_err(|e| {
                ApiError::bad_request("invalid_body", format!("Content-Encoding: gzip body does not decompress: {e}"))
            })?;
            if out.len() > max {
                return Err(too_large(format!("body: must be at most {max} bytes after decompression")));
            }
            Ok(out)
        }
        Some(other) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Encoding: must be gzip or identity, got \"{other}\""),
        )),
    }
}

/// One event's bytes as sent, or why they could not be separated from the rest.
pub enum Item<'a> {
    Raw(&'a [u8]),
    Malformed(String),
}

/// Splits a decoded body into items. The index of an item is its position in the array, or its
/// 0-based line number in NDJSON (blank lines are skipped but counted).
pub fn split(body: &[u8], format: Format, max_events: usize) -> Result<Vec<(usize, Item<'_>)>, ApiError> {
    let items: Vec<(usize, Item<'_>)> = match format {
        Format::JsonArray => {
            let raws: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request("invalid_body", format!("body: must be a JSON array of event objects: {e}"))
            })?;
            if raws.len() > max_events {
                return Err(too_large(format!("body: must hold at most {max_events} events, got {}", raws.len())));
            }
            raws.into_iter().enumerate().map(|(i, r)| (i, Item::Raw(r.get().as_bytes()))).collect()
        }
        Format::Ndjson => {
            let mut items = Vec::new();
            for (i, line) in body.split(|&b| b == b'\n').enumerate() {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if items.len() == max_events {
                    return Err(too_large(format!("body: must hold at most {max_events} events")));
                }
                let item = match std::str::from_utf8(line) {
                    Ok(_) => Item::Raw(line),
                    Err(_) => Item::Malformed(format!("line {}: not valid UTF-8", i + 1)),
                };
                items.push((i, item));
            }
            items
        }
    };
    Ok(items)
}
