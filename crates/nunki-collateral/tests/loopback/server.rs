//! A tiny HTTP/1.1 server on a loopback socket that plays AMD KDS and can misbehave on request.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Misbehaviour applied to one request (in arrival order).
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status (and optional `Retry-After` value) instead of the route.
    Status(u16, Option<&'static str>),
    /// Sleep this long before answering normally.
    Delay(Duration),
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub target: String,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone)]
struct Route {
    body: Vec<u8>,
    content_length: bool,
}

#[derive(Debug, Default)]
struct State {
    routes: Mutex<HashMap<String, Route>>,
    faults: Mutex<VecDeque<Fault>>,
    hits: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
}

/// Handle to a running server; the accept thread lives until the test process exits.
#[derive(Debug, Clone)]
pub struct TestServer {
    base: String,
    state: Arc<State>,
}

impl TestServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State::default());
        let st = Arc::clone(&state);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let st = Arc::clone(&st);
                // One thread per connection so a delayed answer does not block other requests.
                thread::spawn(move || {
                    let _ = serve(&st, stream);
                });
            }
        });
        Self { base, state }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Serves `body` for the exact request target `path_and_query`.
    pub fn route(&self, path_and_query: &str, body: Vec<u8>) {
        self.insert(path_and_query, body, true);
    }

    /// Like [`route`](Self::route) but without `Content-Length` (body delimited by close).
    pub fn route_unsized(&self, path_and_query: &str, body: Vec<u8>) {
        self.insert(path_and_query, body, false);
    }

    fn insert(&self, path_and_query: &str, body: Vec<u8>, content_length: bool) {
        assert!(path_and_query.starts_with('/'), "{path_and_query}");
        self.state.routes.lock().unwrap().insert(
            path_and_query.to_string(),
            Route {
                body,
                content_length,
            },
        );
    }

    /// Applies `fault` to each of the next `n` requests.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        let mut q = self.state.faults.lock().unwrap();
        q.extend(std::iter::repeat_n(fault, n));
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

fn serve(state: &State, mut stream: TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let target = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("")
        .to_string();
    let user_agent = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("user-agent")
            .then(|| v.trim().to_string())
    });
    state.hits.fetch_add(1, Ordering::SeqCst);
    state.seen.lock().unwrap().push(Seen {
        target: target.clone(),
        user_agent,
    });

    let fault = state.faults.lock().unwrap().pop_front();
    match fault {
        Some(Fault::Status(code, retry_after)) => {
            let extra = retry_after
                .map(|v| format!("Retry-After: {v}\r\n"))
                .unwrap_or_default();
            return respond(&mut stream, code, &extra, b"injected failure", true);
        }
        Some(Fault::Delay(d)) => thread::sleep(d),
        None => {}
    }
    let route = state.routes.lock().unwrap().get(&target).cloned();
    match route {
        Some(r) => respond(&mut stream, 200, "", &r.body, r.content_length),
        None => respond(&mut stream, 404, "", b"not found", true),
    }
}

fn respond(
    stream: &mut TcpStream,
    code: u16,
    extra: &str,
    body: &[u8],
    content_length: bool,
) -> io::Result<()> {
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Whatever",
    };
    let length = if content_length {
        format!("Content-Length: {}\r\n", body.len())
    } else {
        String::new()
    };
    let head = format!("HTTP/1.1 {code} {reason}\r\nConnection: close\r\n{length}{extra}\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}
