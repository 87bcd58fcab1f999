//! A headless Chromium driven over the DevTools protocol, for tests of the
//! cell view page: navigate, evaluate JavaScript, move the mouse, take a
//! screenshot. Debian's `chromium` package is what `.ci/run` installs.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Where Chromium is: `$CHROMIUM`, or Debian's and others' usual paths.
pub fn find() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// Chromium for a browser test, or `None` to skip it (saying so). With
/// `TESSERA_BROWSER_TESTS=required` (as `.ci/run` sets) a missing Chromium
/// fails the test instead.
pub fn for_test() -> Option<PathBuf> {
    let found = find();
    if found.is_none() {
        let required = std::env::var("TESSERA_BROWSER_TESTS").is_ok_and(|v| v == "required");
        assert!(
            !required,
            "TESSERA_BROWSER_TESTS=required but no Chromium was found"
        );
        eprintln!("skipped: no Chromium (install Debian's chromium package, or set CHROMIUM)");
    }
    found
}

/// A child process killed when dropped, so a browser that fails to come
/// up is not left running.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running browser with one page.
pub struct Browser {
    _child: Killed,
    page: WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `chromium` headless with a fresh profile, `width` × `height`.
    pub fn start(chromium: &Path, width: u32, height: u32) -> Result<Browser, String> {
        let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
        let child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", chromium.display()))?;
        let mut child = Killed(child);
        let stderr = child.0.stderr.take().ok_or("no stderr")?;
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find("ws://") {
                    let _ = tx.send(line[i..].trim().to_string());
                }
            }
        });
        let ws = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "chromium printed no DevTools address".to_string())?;
        let port = ws
            .trim_start_matches("ws://")
            .split(['/', ':'])
            .nth(1)
            .ok_or("no port in the DevTools address")?
            .to_string();
        let page_ws = page_target(&port)?;
        let (page, _) = tungstenite::connect(page_ws.as_str()).map_err(|e| e.to_string())?;
        // A browser that stops answering fails the call instead of hanging.
        if let MaybeTlsStream::Plain(s) = page.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(30)))
                .map_err(|e| e.to_string())?;
        }
        let mut b = Browser {
            _child: child,
            page,
            next: 1,
            _profile: profile,
        };
        b.call("Page.enable", json!({}))?;
        b.call("Runtime.enable", json!({}))?;
        Ok(b)
    }

    /// Sends one command and waits for its answer (events are skipped).
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next;
        self.next += 1;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.page
            .send(Message::Text(msg.into()))
            .map_err(|e| e.to_string())?;
        loop {
            let m = self.page.read().map_err(|e| e.to_string())?;
            let Message::Text(text) = m else { continue };
            let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            if v["id"] == id {
                if let Some(err) = v.get("error") {
                    return Err(format!("{method}: {err}"));
                }
                return Ok(v["result"].clone());
            }
        }
    }

    /// Opens `url` in the page.
    pub fn goto(&mut self, url: &str) -> Result<(), String> {
        self.call("Page.navigate", json!({"url": url})).map(|_| ())
    }

    /// The value of a JavaScript expression.
    pub fn eval(&mut self, expr: &str) -> Result<Value, String> {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        )?;
        if let Some(e) = r.get("exceptionDetails") {
            return Err(format!("{expr}: {e}"));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Evaluates `expr` until it is `true` (a hang guard of `secs`).
    pub fn wait_for(&mut self, expr: &str, secs: u64) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if self.eval(expr)? == Value::Bool(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("never true: {expr}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Moves the mouse to (x, y) in CSS pixels.
    pub fn mouse_to(&mut self, x: f64, y: f64) -> Result<(), String> {
        self.call(
            "Input.dispatchMouseEvent",
            json!({"type": "mouseMoved", "x": x, "y": y}),
        )
        .map(|_| ())
    }

    /// A PNG of the page as it is.
    pub fn screenshot(&mut self) -> Result<Vec<u8>, String> {
        use base64::Engine;
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}))?;
        let data = r["data"].as_str().ok_or("no screenshot data")?;
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| e.to_string())
    }
}

/// The DevTools WebSocket address of the browser's first page.
fn page_target(port: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Chromium names the host it was asked by in the page's address.
        let body = tessera_tools::viz::fetch(&format!("http://127.0.0.1:{port}/json/list"))
            .map_err(|e| e.to_string())?;
        let list: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let page = list
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_string));
        if let Some(ws) = page {
            return Ok(ws);
        }
        if Instant::now() > deadline {
            return Err("chromium shows no page target".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
