//! A real browser for the tests: Debian's headless Chromium, driven over
//! the DevTools protocol through a pair of pipes (`--remote-debugging-pipe`:
//! commands in on fd 3, answers out on fd 4, each a JSON text ended by a
//! NUL byte). The tests load a page, click, drag and type on it as a person
//! would (real mouse and key events), and read what it shows.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long one answer, or one condition waited for, may take.
const PATIENCE: Duration = Duration::from_secs(30);

/// A headless Chromium with one page open.
pub struct Browser {
    child: Child,
    commands: std::fs::File,
    answers: Receiver<Value>,
    next_id: u64,
    session: String,
    profile: PathBuf,
}

/// A pipe: (read end, write end), both closed on exec.
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 succeeded: both descriptors are open and ours alone.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Browser {
    /// Starts Chromium (a fresh profile under `dir`), with a 1280x800 page
    /// showing `url`, once its `load` event has fired.
    pub fn open(url: &str, dir: &Path) -> Browser {
        assert!(
            Path::new("/usr/bin/chromium").exists(),
            "chromium is missing: install Debian's chromium (scripts/install-deps does)"
        );
        let profile = dir.join("chromium-profile");
        let _ = std::fs::remove_dir_all(&profile);
        let (command_read, command_write) = pipe();
        let (answer_read, answer_write) = pipe();
        let (cr, aw) = (command_read.as_raw_fd(), answer_write.as_raw_fd());
        let mut command = Command::new("/usr/bin/chromium");
        command
            .env("HOME", &profile)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--remote-debugging-pipe",
                "--window-size=1280,800",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec only fcntl and dup2 run, which are
        // async-signal-safe. Both ends are first copied above 10 (closed on
        // exec), so that neither is 3 or 4 itself (dup2 onto itself would
        // keep it closed on exec); the copies dup2 makes on 3 and 4 stay
        // open across exec.
        unsafe {
            command.pre_exec(move || {
                let high = |fd| libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
                let (cr, aw) = (high(cr), high(aw));
                if cr < 0 || aw < 0 || libc::dup2(cr, 3) < 0 || libc::dup2(aw, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start chromium");
        drop((command_read, answer_write));
        let (send, answers) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut from = BufReader::new(std::fs::File::from(answer_read));
            let mut message = Vec::new();
            while from.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                message.pop_if(|b| *b == 0);
                if let Ok(v) = serde_json::from_slice(&message) {
                    if send.send(v).is_err() {
                        return;
                    }
                }
                message.clear();
            }
        });
        let mut browser = Browser {
            child,
            commands: std::fs::File::from(command_write),
            answers,
            next_id: 0,
            session: String::new(),
            profile,
        };
        let target = browser.send("Target.createTarget", json!({"url": "about:blank"}));
        let target = target["targetId"]
            .as_str()
            .expect("a target id")
            .to_string();
        let attached = browser.send(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}),
        );
        browser.call("Page.enable", json!({}));
        browser.call("Page.navigate", json!({"url": url}));
        browser.wait_for("document.readyState === 'complete'", "the page to load");
        browser
    }

    /// Sends a command (to the page once attached) and waits for its answer.
    fn send(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("chromium is gone ({e}) before {method}"));
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.answers.recv_timeout(left) {
                Ok(v) if v["id"] == json!(id) => {
                    if let Some(e) = v.get("error") {
                        panic!("{method}: {e}");
                    }
                    return v["result"].clone();
                }
                Ok(_) => {} // an event, or another answer
                Err(RecvTimeoutError::Timeout) => panic!("no answer to {method} in {PATIENCE:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("chromium closed its pipe"),
            }
        }
    }

    /// A command to the page.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params)
    }

    /// The value of a JavaScript expression on the page (promises
    /// awaited); panics on an exception.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Waits until `condition` (JavaScript) is true on the page.
    pub fn wait_for(&mut self, condition: &str, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        while self.eval(&format!("!!({condition})")) != json!(true) {
            if Instant::now() >= deadline {
                let state = self.eval(
                    "JSON.stringify([location.href, document.readyState, \
                     performance.getEntriesByType('resource').map(r => [r.name, Math.round(r.duration)])])",
                );
                panic!("gave up waiting for {what}; the page: {state}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the page has answered what was last asked of it.
    pub fn settled(&mut self) {
        self.wait_for(
            "document.body.dataset.ready === 'true'",
            "the page to settle",
        );
    }

    fn mouse(&mut self, kind: &str, x: f64, y: f64, modifiers: u32) {
        let (button, buttons) = match kind {
            "mouseMoved" => ("none", 0),
            _ => ("left", 1),
        };
        self.call(
            "Input.dispatchMouseEvent",
            json!({"type": kind, "x": x, "y": y, "button": button, "buttons": buttons,
                   "clickCount": 1, "modifiers": modifiers}),
        );
    }

    /// A left click at (x, y) in the page's CSS pixels, with Shift held
    /// if `shift`.
    pub fn click(&mut self, x: f64, y: f64, shift: bool) {
        let modifiers = if shift { 8 } else { 0 };
        self.mouse("mouseMoved", x, y, modifiers);
        self.mouse("mousePressed", x, y, modifiers);
        self.mouse("mouseReleased", x, y, modifiers);
    }

    /// A drag with the left button from (x0, y) to (x1, y), in steps.
    pub fn drag(&mut self, x0: f64, x1: f64, y: f64) {
        self.mouse("mouseMoved", x0, y, 0);
        self.mouse("mousePressed", x0, y, 0);
        for i in 1..=10 {
            let x = x0 + (x1 - x0) * f64::from(i) / 10.0;
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": "mouseMoved", "x": x, "y": y, "button": "left", "buttons": 1}),
            );
        }
        self.mouse("mouseReleased", x1, y, 0);
    }

    /// Presses and releases a key (`ArrowRight`, `Enter`) on the focused
    /// element.
    pub fn key(&mut self, key: &str) {
        for kind in ["keyDown", "keyUp"] {
            self.call(
                "Input.dispatchKeyEvent",
                json!({"type": kind, "key": key, "code": key}),
            );
        }
    }

    /// The box of the first element `selector` finds: (left, top, width,
    /// height) in CSS pixels.
    pub fn rect(&mut self, selector: &str) -> (f64, f64, f64, f64) {
        let r = self.eval(&format!(
            "(() => {{ const r = document.querySelector({}).getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; }})()",
            json!(selector)
        ));
        let n = |i: usize| {
            r[i].as_f64()
                .unwrap_or_else(|| panic!("no {selector}: {r}"))
        };
        (n(0), n(1), n(2), n(3))
    }

    /// A PNG of the whole page, written to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let data = shot["data"].as_str().expect("png data");
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64");
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Its helper processes, which may outlive it.
        let _ = Command::new("pkill")
            .args(["-f", "--"])
            .arg(format!("--user-data-dir={}", self.profile.display()))
            .status();
    }
}
