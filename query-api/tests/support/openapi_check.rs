//! Checks real answers against the OpenAPI document the query API serves: the status must be
//! documented for the route, a JSON body must validate against its schema (formats included),
//! and a CSV body must start with the documented header line. Shared by the query API's own
//! tests and the end-to-end tests (included there by path).

use serde_json::Value;

pub struct OpenApi {
    doc: Value,
}

/// A JSON pointer segment inside a URI fragment.
fn fragment_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1").replace('{', "%7B").replace('}', "%7D")
}

impl OpenApi {
    pub fn load() -> OpenApi {
        OpenApi { doc: serde_json::from_str(query_api::OPENAPI).expect("openapi.json is JSON") }
    }

    pub fn templates(&self) -> Vec<String> {
        self.doc["paths"].as_object().expect("paths").keys().cloned().collect()
    }

    /// The documented template a concrete path matches (`{name}` matches one segment).
    pub fn template_for(&self, path: &str) -> Option<String> {
        let path = path.split('?').next().unwrap_or(path);
        let segs: Vec<&str> = path.split('/').collect();
        self.templates().into_iter().find(|t| {
            let ts: Vec<&str> = t.split('/').collect();
            ts.len() == segs.len() && ts.iter().zip(&segs).all(|(a, b)| (a.starts_with('{') && !b.is_empty()) || a == b)
        })
    }

    fn response(&self, template: &str, status: u16) -> Result<&Value, String> {
        let r = &self.doc["paths"][template]["get"]["responses"][status.to_string()];
        if r.is_null() {
            return Err(format!("GET {template}: status {status} is not documented"));
        }
        Ok(r)
    }

    /// Checks one answer of `GET path` (a concrete path, query string allowed).
    pub fn check(&self, path: &str, status: u16, content_type: &str, body: &str) -> Result<(), String> {
        let template = self.template_for(path).ok_or_else(|| format!("GET {path}: no documented route"))?;
        let resp = self.response(&template, status)?;
        let media = content_type.split(';').next().unwrap_or("").trim();
        let Some(content) = resp["content"].get(media) else {
            return if body.is_empty() && resp.get("content").is_none() {
                Ok(())
            } else {
                Err(format!("GET {template} {status}: content type {media} is not documented"))
            };
        };
        if media == "text/csv" {
            let header = content["example"].as_str().unwrap_or_default().trim_end();
            return match body.split("\r\n").next() {
                Some(first) if first == header => Ok(()),
                other => Err(format!("GET {template} {status}: CSV header {other:?}, documented {header:?}")),
            };
        }
        if media != "application/json" {
            return Ok(());
        }
        let value: Value = serde_json::from_str(body).map_err(|e| format!("GET {path}: body is not JSON: {e}"))?;
        let mut schema = self.doc.clone();
        schema["$schema"] = Value::String("https://json-schema.org/draft/2020-12/schema".into());
        schema["$ref"] = Value::String(format!(
            "#/paths/{}/get/responses/{status}/content/application~1json/schema",
            fragment_segment(&template)
        ));
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&schema)
            .map_err(|e| format!("openapi.json schema for {template}: {e}"))?;
        let errors: Vec<String> =
            validator.iter_errors(&value).map(|e| format!("{} at {}", e, e.instance_path)).collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("GET {path} {status}: {}", errors.join("; ")))
        }
    }
}
