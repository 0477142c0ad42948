//! Headless Chromium for end-to-end UI tests, driven over WebDriver (chromedriver + fantoccini).
//!
//! Each [`Browser`] starts its own chromedriver on a free loopback port with a fresh temporary
//! profile, opens one Chromium window 360 px wide in Japanese, and kills both on drop. It trusts
//! any certificate (`acceptInsecureCerts`), since the node serves a certificate of the test CA.
//!
//! Chromium and chromedriver come from Debian (`chromium`, `chromium-driver`, and
//! `fonts-noto-cjk` for the glyphs); `.ci/run` installs them. When they are missing,
//! [`Browser::start`] fails the test: a UI test that silently skips tests nothing.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// Debian's Chromium launcher.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The window width of a new browser: a small phone.
pub const PHONE_WIDTH: u32 = 360;
const HEIGHT: u32 = 800;

/// One headless Chromium window, and the chromedriver that drives it.
pub struct Browser {
    client: Client,
    session_id: Option<String>,
    // Dropped after `client`: kills chromedriver and Chromium.
    driver: Driver,
}

/// A chromedriver process listening on `port` of 127.0.0.1.
struct Driver {
    child: Child,
    port: u16,
    /// Chromium's profile and chromedriver's log; removed once both are killed.
    tmp: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port of 127.0.0.1 and opens a window 360 × 800 px.
    ///
    /// Panics, failing the test, when Chromium or chromedriver is not installed.
    pub async fn start() -> Browser {
        Self::try_start().await.unwrap_or_else(|e| panic!("cannot start headless Chromium: {e:#}"))
    }

    async fn try_start() -> Result<Browser> {
        let chromedriver = on_path("chromedriver");
        if !Path::new(CHROMIUM).exists() || chromedriver.is_none() {
            bail!(
                "the browser tests need Chromium at {CHROMIUM} and chromedriver on PATH; run `.ci/run` \
                 (it installs them) or `apt-get install chromium chromium-driver fonts-noto-cjk`"
            );
        }
        let tmp = tempfile::tempdir().context("temporary directory")?;
        let log = tmp.path().join("chromedriver.log");
        let port = free_port()?;
        let child = Command::new(chromedriver.expect("checked above"))
            // chromedriver accepts connections from the loopback addresses only by default.
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that drop can kill Chromium along with it.
            .process_group(0)
            .spawn()
            .context("starting chromedriver")?;
        let mut driver = Driver { child, port, tmp };
        driver.wait_until_ready().await?;

        let profile = driver.tmp.path().join("profile");
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-extensions".to_owned(),
            format!("--window-size={PHONE_WIDTH},{HEIGHT}"),
            "--lang=ja".to_owned(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let Value::Object(capabilities) = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        }) else {
            unreachable!("a JSON object")
        };
        // chromedriver speaks plain HTTP on loopback: no TLS stack is needed to reach it.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .map_err(|e| anyhow!("new WebDriver session: {e}\n{}", driver.log()))?;
        let session_id = client.session_id().await?;
        Ok(Browser { client, session_id, driver })
    }

    /// The fantoccini client, for anything the helpers below do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url` and waits until it has loaded.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// The first element matching the CSS selector `css`; panics when there is none.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e,
            Err(e) => panic!("no element {css:?} on {}: {e}", self.current_url().await),
        }
    }

    /// Clears the field `css`, then types `text` into it (any text, Japanese included).
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap_or_else(|e| panic!("clear {css:?}: {e}"));
        field.send_keys(text).await.unwrap_or_else(|e| panic!("type into {css:?}: {e}"));
    }

    /// Clicks the element `css`, as a person would (it must be visible and not covered).
    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap_or_else(|e| panic!("click {css:?}: {e}"));
    }

    /// Chooses the `<option value=value>` of the `<select>` matched by `css`.
    pub async fn select(&self, css: &str, value: &str) {
        let select = self.find(css).await;
        select.select_by_value(value).await.unwrap_or_else(|e| panic!("select {value:?} in {css:?}: {e}"));
    }

    /// Checks the checkbox or radio button `css` (clicking it unless it is already checked).
    pub async fn check(&self, css: &str) {
        let input = self.find(css).await;
        if !input.is_selected().await.unwrap_or_else(|e| panic!("state of {css:?}: {e}")) {
            input.click().await.unwrap_or_else(|e| panic!("click {css:?}: {e}"));
        }
        assert!(input.is_selected().await.unwrap(), "{css:?} is still not checked after a click");
    }

    /// Submits the form `css` by clicking its first submit button (as a person would), and waits
    /// until the next page has loaded. A form without a button is submitted with
    /// `requestSubmit()`, which still runs its validation.
    pub async fn submit(&self, css: &str) {
        let form = self.find(css).await;
        // Marks the current document so that the wait below sees when it has been replaced.
        self.js("window.__kfBeforeSubmit = true; return null", vec![]).await;
        let button = form.find(Locator::Css("button:not([type]), button[type=submit], input[type=submit]")).await;
        match button {
            Ok(b) => b.click().await.unwrap_or_else(|e| panic!("click the submit button of {css:?}: {e}")),
            Err(_) => {
                self.js("arguments[0].requestSubmit(); return null", vec![json!(form)]).await;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let replaced = self
                .client
                .execute("return document.readyState === 'complete' && !window.__kfBeforeSubmit", vec![])
                .await;
            if replaced.is_ok_and(|v| v == json!(true)) {
                return;
            }
            assert!(Instant::now() < deadline, "submitting {css:?} loaded no new page within 15 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The visible text of the element `css`, as rendered (`innerText`).
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap_or_else(|e| panic!("text of {css:?}: {e}"))
    }

    /// The value of the attribute `name` of the element `css`, if it has one.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.find(css).await.attr(name).await.unwrap_or_else(|e| panic!("attribute {name} of {css:?}: {e}"))
    }

    /// The current DOM serialized as HTML.
    pub async fn page_source(&self) -> String {
        self.client.source().await.expect("page source")
    }

    /// The URL of the current page.
    pub async fn current_url(&self) -> String {
        self.client.current_url().await.map(|u| u.to_string()).unwrap_or_else(|e| format!("(unknown URL: {e})"))
    }

    /// Runs `script` (a function body: use `return`, and `arguments[i]` for `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Resizes the window so that the page is `px` CSS pixels wide (`window.innerWidth`).
    pub async fn set_width(&self, px: u32) {
        let (_, height) = self.client.get_window_size().await.expect("window size");
        self.client.set_window_size(px, height as u32).await.unwrap_or_else(|e| panic!("resize to {px} px: {e}"));
        let inner = self.js("return window.innerWidth", vec![]).await;
        assert_eq!(inner, json!(px), "the page is not {px} px wide after resizing the window");
    }

    /// Saves a PNG of the whole page (not only the window) at `target/screenshots/<name>.png` and
    /// returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("target/screenshots");
        // WebDriver captures the window only: make it as tall as the page for the picture.
        let (width, height) = self.client.get_window_size().await.expect("window size");
        let sizes =
            self.js("const d = document.documentElement; return [d.scrollHeight, d.clientHeight]", vec![]).await;
        let (page, inner) = (sizes[0].as_u64().unwrap_or(0), sizes[1].as_u64().unwrap_or(0));
        let tall = page > inner;
        if tall {
            let full = height + (page - inner);
            self.client.set_window_size(width as u32, full as u32).await.expect("resize for the screenshot");
        }
        let png = self.client.screenshot().await.expect("screenshot");
        if tall {
            self.client.set_window_size(width as u32, height as u32).await.expect("resize back");
        }
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// What keeps the current page from being usable by everyone, at the current window width:
    /// `<html lang="ja">`; a label for every visible form field; one `<h1>` and no skipped
    /// heading level; no horizontal scrolling. Empty when there is nothing to fix.
    pub async fn accessibility_problems(&self) -> Vec<String> {
        let found = self.js(ACCESSIBILITY_JS, vec![]).await;
        serde_json::from_value(found).expect("a list of strings")
    }

    /// Panics with every problem [`Browser::accessibility_problems`] finds on the current page.
    pub async fn assert_accessible(&self) {
        let problems = self.accessibility_problems().await;
        assert!(
            problems.is_empty(),
            "{} is not accessible at {} px:\n- {}",
            self.current_url().await,
            self.js("return window.innerWidth", vec![]).await,
            problems.join("\n- ")
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session politely: chromedriver then closes Chromium.
        if let Some(id) = &self.session_id {
            let _ = self.driver.request("DELETE", &format!("/session/{id}"));
        }
    }
}

impl Driver {
    /// Polls chromedriver's `/status` until it says it is ready, for up to 20 s.
    async fn wait_until_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("chromedriver exited with {status}\n{}", self.log());
            }
            if self.request("GET", "/status").is_ok_and(|r| r.contains("\"ready\":true")) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not answer on port {} within 20 s\n{}", self.port, self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One plain HTTP request to chromedriver, blocking; returns the whole response.
    fn request(&self, method: &str, path: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        // chromedriver keeps the connection open: read as far as Content-Length says.
        let mut response = Vec::new();
        let mut buf = [0; 4096];
        loop {
            let n = s.read(&mut buf)?;
            response.extend_from_slice(&buf[..n]);
            if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&response[..end]);
                let length = head
                    .lines()
                    .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if response.len() >= end + 4 + length {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&response).into_owned())
    }

    /// The end of chromedriver's log, for error messages.
    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.tmp.path().join("chromedriver.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        format!("chromedriver log (last lines):\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Kills whatever is left of chromedriver's process group, Chromium included.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The checks of [`Browser::accessibility_problems`], run in the page; returns a list of strings.
const ACCESSIBILITY_JS: &str = r#"
const problems = [];
const describe = (el) => el.tagName.toLowerCase()
    + (el.id ? '#' + el.id : '')
    + (el.getAttribute('name') ? '[name=' + el.getAttribute('name') + ']' : '')
    + (el.getAttribute('type') ? '[type=' + el.getAttribute('type') + ']' : '');
const visible = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';

const lang = document.documentElement.getAttribute('lang');
if (lang !== 'ja') problems.push('<html> has lang=' + JSON.stringify(lang) + ', not "ja"');

const exempt = ['hidden', 'submit', 'button', 'reset', 'image'];
for (const el of document.querySelectorAll('input, select, textarea')) {
    if (exempt.includes((el.getAttribute('type') || '').toLowerCase()) || !visible(el)) continue;
    const aria = (el.getAttribute('aria-label') || '').trim() !== '';
    const by = (el.getAttribute('aria-labelledby') || '').split(/\s+/).filter(Boolean)
        .some((id) => { const t = document.getElementById(id); return t && t.textContent.trim() !== ''; });
    // el.labels holds both <label for=id> and a <label> around the field.
    const label = Array.from(el.labels || []).some((l) => l.textContent.trim() !== '');
    if (!aria && !by && !label) problems.push('form field ' + describe(el) + ' has no label');
}

const headings = Array.from(document.querySelectorAll('h1, h2, h3, h4, h5, h6'));
const h1s = headings.filter((h) => h.tagName === 'H1').length;
if (h1s !== 1) problems.push('the page has ' + h1s + ' <h1>, not exactly one');
let previous = 0;
for (const h of headings) {
    const level = Number(h.tagName[1]);
    if (level > previous + 1) {
        problems.push('heading level skipped: <h' + level + '> "' + h.textContent.trim() + '" follows '
            + (previous ? '<h' + previous + '>' : 'no heading'));
    }
    previous = level;
}

// clientWidth is innerWidth less a vertical scrollbar: wider than that, the page scrolls sideways.
const scroll = document.documentElement.scrollWidth;
const room = document.documentElement.clientWidth;
if (scroll > room) {
    const wide = Array.from(document.body.querySelectorAll('*'))
        .filter((el) => el.getBoundingClientRect().right > room + 0.5)
        .slice(0, 5)
        .map((el) => describe(el) + (el.getAttribute('class') || '').split(/\s+/).filter(Boolean).map((c) => '.' + c).join('')
            + ' (right edge ' + Math.round(el.getBoundingClientRect().right) + ' px)');
    problems.push('horizontal scrolling: the page is ' + scroll + ' px wide in a ' + window.innerWidth
        + ' px window (' + room + ' px beside the scrollbar); too wide: ' + (wide.join(', ') || '(no single element)'));
}
return problems;
"#;

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The path of the executable `name` on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}
