//! Just enough of the W3C WebDriver protocol to drive Debian's headless Chromium through its
//! chromedriver: open a page, find, click and type into elements, run a script, take a
//! screenshot. (A plain JSON-over-HTTP protocol; no browser download, no extra client crate.)

use crate::{free_port, wait_for, Proc};
use anyhow::{bail, Context, Result};
use base64::Engine;
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A browser session; chromedriver (and with it the browser) is killed on drop.
pub struct Browser {
    http: Client,
    session: String,
    _driver: Proc,
}

pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session of `width`×`height`.
    pub fn start(log_dir: &Path, width: u32, height: u32) -> Result<Browser> {
        for p in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(p).exists() {
                bail!("{p} is missing: install Debian's chromium and chromium-driver (deploy/test.sh does)");
            }
        }
        let port = free_port();
        let driver = Proc::spawn(
            "chromedriver",
            Command::new(CHROMEDRIVER).arg(format!("--port={port}")),
            &log_dir.join("chromedriver.out"),
        )?;
        let base = format!("http://127.0.0.1:{port}");
        let http = Client::builder().timeout(Duration::from_secs(60)).build()?;
        wait_for("chromedriver", Duration::from_secs(20), || {
            http.get(format!("{base}/status")).send().is_ok_and(|r| r.status().is_success())
        })?;
        let profile = log_dir.join("chromium-profile");
        // Without the background-networking flags Chromium keeps dialling Google's hosts, which
        // this closed network refuses.
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args}
        }}});
        let resp: Value = http.post(format!("{base}/session")).json(&caps).send()?.json()?;
        let session = resp["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("chromedriver did not open a session: {resp}"))?
            .to_owned();
        Ok(Browser { http, session: format!("{base}/session/{session}"), _driver: driver })
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp: Value = req.send()?.json()?;
        if let Some(err) = resp["value"].get("error") {
            bail!("webdriver {path}: {err} {}", resp["value"]["message"]);
        }
        Ok(resp["value"].clone())
    }

    pub fn goto(&self, url: &str) -> Result<()> {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).map(|_| ())
    }

    pub fn find(&self, css: &str) -> Result<Element> {
        let v = self.call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css})))?;
        Ok(Element(v[ELEMENT_KEY].as_str().with_context(|| format!("no element id for {css}"))?.to_owned()))
    }

    pub fn click(&self, css: &str) -> Result<()> {
        let e = self.find(css)?;
        self.call(reqwest::Method::POST, &format!("/element/{}/click", e.0), Some(json!({}))).map(|_| ())
    }

    pub fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let e = self.find(css)?;
        self.call(reqwest::Method::POST, &format!("/element/{}/clear", e.0), Some(json!({})))?;
        self.call(reqwest::Method::POST, &format!("/element/{}/value", e.0), Some(json!({"text": text}))).map(|_| ())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns its value.
    pub fn eval(&self, script: &str, args: Value) -> Result<Value> {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": args})))
    }

    /// Polls `script` until it returns true.
    pub fn wait_until(&self, what: &str, timeout: Duration, script: &str, args: Value) -> Result<()> {
        let mut last_err = None;
        let ok = wait_for(what, timeout, || match self.eval(script, args.clone()) {
            Ok(v) => v == Value::Bool(true),
            Err(e) => {
                last_err = Some(e);
                false
            }
        });
        ok.with_context(|| format!("last script error: {last_err:?}"))
    }

    pub fn screenshot(&self, path: &Path) -> Result<()> {
        let v = self.call(reqwest::Method::GET, "/screenshot", None)?;
        let png =
            base64::engine::general_purpose::STANDARD.decode(v.as_str().context("screenshot is not a string")?)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.session).send();
    }
}
