//! A shared in-memory cache of code-server's build-addressed static files.
//!
//! code-server serves the workbench's files under `/stable-<commit>/static/…` with
//! `Cache-Control: public, max-age=31536000`, and compresses each answer anew: one
//! brotli-compressed `workbench.js` (11 MB, 3 MB compressed) costs it about 0.7 s of
//! CPU, for every browser that opens the IDE. The path names the build, so the first
//! answer is kept here (keyed by server, path, `Host` and the request's
//! `Accept-Encoding`, the only header the answer varies on) and every later browser of
//! that server gets it from memory. Never another server's: a participant controls what
//! their own instance answers, and an answer of theirs given to the users of other
//! servers would run their script in those IDEs.
//!
//! Only what HTTP lets a shared cache keep is kept: `200` answers to plain `GET`s
//! (without a query) that say `public` with a `max-age` (or `s-maxage`), carry no
//! `Set-Cookie`, vary on nothing but `Accept-Encoding`, arrive whole and fit the
//! per-entry limit; they are kept for that lifetime. A request with a validator
//! (`If-None-Match`, `If-Modified-Since`), a `Range`, an `Authorization`, `Pragma` or
//! `Cache-Control: no-cache`, `no-store` or `max-age=0` (a reload) goes to the
//! instance. The least recently used entries leave when the total passes the
//! configured size, and at most a few answers are recorded at once.

use crate::metrics::METRICS;
use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, Response, StatusCode, request};
use http_body::{Body as HttpBody, Frame, SizeHint};

/// The largest single answer kept: a fifth of the cache, at most 16 MiB (the biggest
/// file of the workbench, `workbench.js`, is 11 MB uncompressed).
const MAX_ENTRY_BYTES: usize = 16 << 20;
/// Answers recorded at once, at most: each holds up to an entry's size until it ends.
const MAX_RECORDINGS: usize = 8;

/// What identifies one cached answer: the server (its route number), the path, the
/// `Host` the browser used (a different one reaches something else, e.g. code-server's
/// `--proxy-domain` apps), and every `Accept-Encoding` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    route: u16,
    path: String,
    host: Option<HeaderValue>,
    accept_encoding: Vec<HeaderValue>,
}

struct Entry {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    stored: Instant,
    fresh_for: Duration,
    last_used: u64,
}

#[derive(Default)]
struct Entries {
    map: HashMap<CacheKey, Entry>,
    bytes: usize,
    /// Ticks on every use; the entry with the smallest `last_used` leaves first.
    clock: u64,
    /// Answers being recorded: one recording per key at a time, so that a crowd of
    /// browsers missing the same file at once does not hold a copy each.
    recording: HashSet<CacheKey>,
}

/// The cache; cloning shares it.
#[derive(Clone)]
pub struct StaticCache {
    entries: Arc<Mutex<Entries>>,
    capacity: usize,
    max_entry: usize,
}

impl StaticCache {
    /// A cache of at most `capacity` bytes of bodies; 0 keeps nothing.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Arc::default(),
            capacity,
            max_entry: (capacity / 5).min(MAX_ENTRY_BYTES),
        }
    }

    /// The key for a request (already retargeted at the instance), when its answer may
    /// come from or go into the cache: a plain `GET` of a build-addressed file without
    /// a query (the workbench asks for none; with one, anyone could fill the cache with
    /// copies of one file).
    pub fn key(&self, route: u16, parts: &request::Parts) -> Option<CacheKey> {
        if self.capacity == 0
            || parts.method != Method::GET
            || parts.uri.query().is_some()
            || !is_build_addressed(parts.uri.path())
        {
            return None;
        }
        let headers = &parts.headers;
        let bypass = [
            header::RANGE,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::AUTHORIZATION,
            header::PRAGMA,
        ]
        .iter()
        .any(|name| headers.contains_key(name))
            || directives(headers.get_all(header::CACHE_CONTROL)).any(|(name, value)| {
                // A hard reload, or a client that wants nothing older than now.
                name.eq_ignore_ascii_case("no-cache")
                    || name.eq_ignore_ascii_case("no-store")
                    || (name.eq_ignore_ascii_case("max-age") && value == Some("0"))
            });
        (!bypass).then(|| CacheKey {
            route,
            path: parts.uri.path().to_owned(),
            host: headers.get(header::HOST).cloned(),
            accept_encoding: headers
                .get_all(header::ACCEPT_ENCODING)
                .iter()
                .cloned()
                .collect(),
        })
    }

    /// The cached answer for `key`, with its `Age`, if one is fresh.
    pub fn get(&self, key: &CacheKey) -> Option<Response<Body>> {
        let found = self.lookup(key);
        let counter = match found {
            Some(_) => &METRICS.proxy.static_cache_hits,
            None => &METRICS.proxy.static_cache_misses,
        };
        counter.inc();
        found
    }

    fn lookup(&self, key: &CacheKey) -> Option<Response<Body>> {
        let mut entries = self.lock();
        let Entries {
            map, bytes, clock, ..
        } = &mut *entries;
        let entry = map.get_mut(key)?;
        let age = entry.stored.elapsed();
        if age >= entry.fresh_for {
            if let Some(stale) = map.remove(key) {
                *bytes -= stale.body.len();
                METRICS
                    .proxy
                    .static_cache_bytes
                    .sub(gauge_bytes(stale.body.len()));
            }
            return None;
        }
        *clock += 1;
        entry.last_used = *clock;
        let mut response = Response::new(Body::from(entry.body.clone()));
        *response.status_mut() = entry.status;
        *response.headers_mut() = entry.headers.clone();
        response
            .headers_mut()
            .insert(header::AGE, HeaderValue::from(age.as_secs()));
        Some(response)
    }

    /// Passes `response` (its headers already as the client gets them) on; if it may
    /// be kept, its body is copied into the cache as it streams, and stored once it
    /// has arrived whole.
    pub fn store_as_it_streams(&self, key: CacheKey, response: Response<Body>) -> Response<Body> {
        let Some(fresh_for) = storable_for(&response, self.max_entry) else {
            return response;
        };
        {
            let mut entries = self.lock();
            if entries.recording.len() >= MAX_RECORDINGS || !entries.recording.insert(key.clone()) {
                return response;
            }
        }
        let (parts, body) = response.into_parts();
        let recording = Recording {
            cache: self.clone(),
            key,
            status: parts.status,
            headers: parts.headers.clone(),
            fresh_for,
            expected_size: content_length(&parts.headers),
            chunks: Vec::new(),
            size: 0,
        };
        let tee = Tee {
            inner: body,
            recording: Some(recording),
        };
        Response::from_parts(parts, Body::new(tee))
    }

    fn insert(&self, key: CacheKey, entry: Entry) {
        let mut entries = self.lock();
        let before = entries.bytes;
        entries.clock += 1;
        let size = entry.body.len();
        let entry = Entry {
            last_used: entries.clock,
            ..entry
        };
        if let Some(old) = entries.map.insert(key, entry) {
            entries.bytes -= old.body.len();
        }
        entries.bytes += size;
        while entries.bytes > self.capacity {
            let Some(oldest) = entries
                .map
                .iter()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some(evicted) = entries.map.remove(&oldest) {
                entries.bytes -= evicted.body.len();
            }
        }
        let gauge = &METRICS.proxy.static_cache_bytes;
        gauge.add(gauge_bytes(entries.bytes));
        gauge.sub(gauge_bytes(before));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The map stays consistent whatever panicked while it was held.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `/stable-<commit>/static/…`: a file of one code-server build (the commit is hex).
fn is_build_addressed(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/stable-") else {
        return false;
    };
    let Some((commit, _)) = rest.split_once("/static/") else {
        return false;
    };
    commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_hexdigit())
}

/// How long `response` may be kept, if a shared cache may keep it at all.
fn storable_for(response: &Response<Body>, max_entry: usize) -> Option<Duration> {
    let headers = response.headers();
    // Nothing that the proxy rewrites per prefix (the key is shared by all of them).
    if response.status() != StatusCode::OK
        || headers.contains_key(header::SET_COOKIE)
        || headers.contains_key(header::LOCATION)
    {
        return None;
    }
    let varies_on_more = directives(headers.get_all(header::VARY))
        .any(|(name, _)| !name.eq_ignore_ascii_case("accept-encoding"));
    let too_big = content_length(headers).is_some_and(|length| length > max_entry);
    if varies_on_more || too_big {
        return None;
    }
    let seconds = |value: Option<&str>| value?.trim_matches('"').parse::<u64>().ok();
    let (mut public, mut max_age, mut shared_max_age) = (false, None, None);
    for (name, value) in directives(headers.get_all(header::CACHE_CONTROL)) {
        match name.to_ascii_lowercase().as_str() {
            "public" => public = true,
            "max-age" => max_age = seconds(value),
            // For shared caches, `s-maxage` overrides `max-age`.
            "s-maxage" => shared_max_age = seconds(value),
            "private" | "no-store" | "no-cache" => return None,
            _ => {}
        }
    }
    // What an earlier cache on the way already spent of it.
    let age = seconds(headers.get(header::AGE).and_then(|v| v.to_str().ok())).unwrap_or(0);
    let lifetime = shared_max_age.or(max_age)?.checked_sub(age)?;
    (public && lifetime > 0).then(|| Duration::from_secs(lifetime))
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The comma-separated `name[=value]` items of a list header (`Cache-Control`, `Vary`).
fn directives<'a>(
    values: header::GetAll<'a, HeaderValue>,
) -> impl Iterator<Item = (&'a str, Option<&'a str>)> {
    values
        .into_iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim())),
            None => (item, None),
        })
}

/// A body on its way to the cache.
struct Recording {
    cache: StaticCache,
    key: CacheKey,
    status: StatusCode,
    headers: HeaderMap,
    fresh_for: Duration,
    /// `Content-Length`: a body that ends shorter (the instance closed the connection
    /// early) is not kept.
    expected_size: Option<usize>,
    chunks: Vec<Bytes>,
    size: usize,
}

impl Recording {
    /// Keeps `data`; `false` once the body has grown past what one entry may hold.
    fn record(&mut self, data: &Bytes) -> bool {
        self.size += data.len();
        self.chunks.push(data.clone());
        self.size <= self.cache.max_entry
    }

    fn finish(&mut self) {
        if self
            .expected_size
            .is_some_and(|expected| expected != self.size)
        {
            return;
        }
        // One copy of its own: a chunk as received shares (and would keep alive) the
        // whole buffer it was read into.
        let body = Bytes::from(std::mem::take(&mut self.chunks).concat());
        let entry = Entry {
            status: self.status,
            headers: std::mem::take(&mut self.headers),
            body,
            stored: Instant::now(),
            fresh_for: self.fresh_for,
            last_used: 0,
        };
        self.cache.insert(self.key.clone(), entry);
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.cache.lock().recording.remove(&self.key);
    }
}

/// Passes a body through unchanged while recording it; an answer that ends in an
/// error, has trailers or is dropped before its end is not stored.
struct Tee {
    inner: Body,
    recording: Option<Recording>,
}

impl HttpBody for Tee {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(recording) = this.recording.as_mut()
                    && !frame.data_ref().is_some_and(|data| recording.record(data))
                {
                    // Trailers, or more than an entry may hold.
                    this.recording = None;
                }
            }
            Some(Err(_)) => this.recording = None,
            None => {}
        }
        // hyper stops polling a body of known length after its last byte, so the end
        // is noticed here rather than by waiting for `None`.
        if (frame.is_none() || this.inner.is_end_stream())
            && let Some(mut recording) = this.recording.take()
        {
            recording.finish();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A byte count as a gauge takes it.
fn gauge_bytes(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    const SCRIPT: &str = "/stable-409c64e0df4d/static/out/workbench.js";
    /// The route number of the server the requests are for.
    const ROUTE: u16 = 8010;

    #[test]
    fn one_servers_answers_are_never_another_servers() {
        let cache = StaticCache::new(1 << 20);
        let ours = cache.key(ROUTE, &request(SCRIPT, &[])).unwrap();
        let theirs = cache.key(ROUTE + 1, &request(SCRIPT, &[])).unwrap();
        assert_ne!(ours, theirs);
    }

    fn request(path: &str, headers: &[(&str, &str)]) -> request::Parts {
        let mut builder = axum::http::Request::get(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn answer(headers: &[(&str, &str)], body: &'static str) -> Response<Body> {
        answer_with(headers, Body::from(body))
    }

    /// A body of `chunks`, one frame each, of no known length.
    fn streamed(chunks: &[&'static str]) -> Body {
        let frames = chunks
            .iter()
            .map(|chunk| Ok::<_, std::io::Error>(Bytes::from_static(chunk.as_bytes())));
        Body::from_stream(futures_util::stream::iter(frames.collect::<Vec<_>>()))
    }

    fn answer_with(headers: &[(&str, &str)], body: Body) -> Response<Body> {
        let mut builder = Response::builder().status(200);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(body).unwrap()
    }

    const IMMUTABLE: (&str, &str) = ("cache-control", "public, max-age=31536000");

    /// Streams `response` through the cache to its end, as the client would.
    async fn pass(cache: &StaticCache, key: &CacheKey, response: Response<Body>) -> Bytes {
        body_of(cache.store_as_it_streams(key.clone(), response)).await
    }

    async fn body_of(response: Response<Body>) -> Bytes {
        response.into_body().collect().await.unwrap().to_bytes()
    }

    #[test]
    fn only_plain_gets_of_build_addressed_files_have_a_key() {
        let cache = StaticCache::new(1 << 20);
        assert!(cache.key(ROUTE, &request(SCRIPT, &[])).is_some());
        for path in [
            &format!("{SCRIPT}?v=1"),
            "/static/out/workbench.js",
            "/stable-xyz123456/static/a.js",
            "/stable-409c64e0df4d/out/a.js",
            "/vscode-remote-resource?path=/a.js",
        ] {
            assert!(cache.key(ROUTE, &request(path, &[])).is_none(), "{path}");
        }
        for header in [
            ("range", "bytes=0-9"),
            ("if-none-match", "W/\"1\""),
            ("if-modified-since", "Sat, 28 Nov 2026 21:25:26 GMT"),
            ("authorization", "Basic eDp5"),
            ("cache-control", "no-cache"),
            ("cache-control", "max-age=0"),
            ("cache-control", "no-store"),
            ("pragma", "no-cache"),
        ] {
            assert!(
                cache.key(ROUTE, &request(SCRIPT, &[header])).is_none(),
                "{header:?}"
            );
        }
        let mut post = request(SCRIPT, &[]);
        post.method = Method::POST;
        assert!(cache.key(ROUTE, &post).is_none());
        assert!(
            StaticCache::new(0)
                .key(ROUTE, &request(SCRIPT, &[]))
                .is_none()
        );
        // The encodings a client accepts (every line of them) and its `Host` are part
        // of the key.
        let key = |headers: &[(&str, &str)]| cache.key(ROUTE, &request(SCRIPT, headers)).unwrap();
        let gzip = ("accept-encoding", "gzip");
        assert_ne!(key(&[gzip]), key(&[]));
        assert_ne!(key(&[gzip, ("accept-encoding", "br")]), key(&[gzip]));
        assert_ne!(key(&[("host", "a.example")]), key(&[("host", "b.example")]));
        assert_eq!(
            key(&[gzip, ("host", "a.example")]),
            key(&[("host", "a.example"), gzip])
        );
    }

    #[test]
    fn only_public_answers_with_a_max_age_may_be_kept() {
        let keep = |headers: &[(&str, &str)]| storable_for(&answer(headers, "x"), 100);
        assert_eq!(keep(&[IMMUTABLE]), Some(Duration::from_secs(31_536_000)));
        assert_eq!(
            keep(&[
                ("cache-control", "max-age=60, public"),
                ("vary", "Accept-Encoding")
            ]),
            Some(Duration::from_secs(60))
        );
        for refused in [
            vec![("cache-control", "public, max-age=0")],
            vec![("cache-control", "public, max-age=60"), ("age", "60")],
            vec![("cache-control", "max-age=600")],
            vec![("cache-control", "public")],
            vec![("cache-control", "public, max-age=600, no-store")],
            vec![("cache-control", "public, max-age=600, private")],
            vec![IMMUTABLE, ("vary", "Origin")],
            vec![IMMUTABLE, ("set-cookie", "a=1")],
            vec![IMMUTABLE, ("location", "/elsewhere")],
            vec![IMMUTABLE, ("content-length", "101")],
            vec![],
        ] {
            assert_eq!(keep(&refused), None, "{refused:?}");
        }
        let mut not_found = answer(&[IMMUTABLE], "x");
        *not_found.status_mut() = StatusCode::NOT_FOUND;
        assert_eq!(storable_for(&not_found, 100), None);
    }

    #[tokio::test]
    async fn an_answer_streamed_to_its_end_is_served_from_memory_with_its_age() {
        let cache = StaticCache::new(1 << 20);
        let key = cache.key(ROUTE, &request(SCRIPT, &[])).unwrap();
        assert!(cache.get(&key).is_none());
        let headers = [IMMUTABLE, ("content-type", "text/javascript")];
        assert_eq!(
            pass(&cache, &key, answer(&headers, "let x;")).await,
            "let x;"
        );
        let cached = cache.get(&key).expect("kept");
        assert_eq!(cached.status(), StatusCode::OK);
        assert_eq!(cached.headers()["content-type"], "text/javascript");
        assert_eq!(cached.headers()["age"], "0");
        assert_eq!(body_of(cached).await, "let x;");
    }

    #[tokio::test]
    async fn answers_not_received_whole_or_not_storable_are_not_kept() {
        let cache = StaticCache::new(1 << 20);
        let key = cache.key(ROUTE, &request(SCRIPT, &[])).unwrap();
        // The client went away before the end.
        drop(cache.store_as_it_streams(key.clone(), answer(&[IMMUTABLE], "partial")));
        assert!(cache.get(&key).is_none());
        pass(&cache, &key, answer(&[("cache-control", "no-store")], "x")).await;
        assert!(cache.get(&key).is_none());
        // Larger than one entry may be (a fifth of the cache), without a length.
        let small = StaticCache::new(50);
        let key = small.key(ROUTE, &request(SCRIPT, &[])).unwrap();
        pass(&small, &key, answer(&[IMMUTABLE], "0123456789abc")).await;
        assert!(small.get(&key).is_none());
    }

    #[tokio::test]
    async fn a_streamed_answer_is_kept_only_when_it_arrives_whole() {
        let cache = StaticCache::new(1 << 20);
        let key = cache.key(ROUTE, &request(SCRIPT, &[])).unwrap();
        let chunked = |chunks: &[&'static str]| answer_with(&[IMMUTABLE], streamed(chunks));
        // The client reads one piece of three, then goes away.
        let response = cache.store_as_it_streams(key.clone(), chunked(&["a", "b", "c"]));
        let mut body = response.into_body();
        assert!(body.frame().await.is_some());
        drop(body);
        assert!(cache.get(&key).is_none(), "a partial answer is not kept");
        // Shorter than its Content-Length (the instance closed early): not kept either.
        let short = answer_with(&[IMMUTABLE, ("content-length", "9")], streamed(&["abc"]));
        pass(&cache, &key, short).await;
        assert!(cache.get(&key).is_none(), "a truncated answer is not kept");
        // Read to its end, in pieces of unknown total length: kept whole.
        assert_eq!(pass(&cache, &key, chunked(&["a", "b", "c"])).await, "abc");
        let cached = cache.get(&key).expect("kept");
        assert_eq!(body_of(cached).await, "abc");
    }

    #[tokio::test]
    async fn one_recording_per_file_at_a_time() {
        let cache = StaticCache::new(1 << 20);
        let key = cache.key(ROUTE, &request(SCRIPT, &[])).unwrap();
        let first = cache.store_as_it_streams(key.clone(), answer(&[IMMUTABLE], "first"));
        // A second miss while the first is on its way passes through unrecorded.
        assert_eq!(
            pass(&cache, &key, answer(&[IMMUTABLE], "second")).await,
            "second"
        );
        assert!(cache.get(&key).is_none());
        first.into_body().collect().await.unwrap();
        let cached = cache.get(&key).expect("the first is kept");
        assert_eq!(body_of(cached).await, "first");
        // An abandoned recording frees its key.
        let other = cache
            .key(ROUTE, &request(&format!("{SCRIPT}.map"), &[]))
            .unwrap();
        drop(cache.store_as_it_streams(other.clone(), answer(&[IMMUTABLE], "lost")));
        pass(&cache, &other, answer(&[IMMUTABLE], "again")).await;
        assert!(cache.get(&other).is_some());
    }

    #[tokio::test]
    async fn stale_answers_leave_and_the_least_recently_used_go_first() {
        // Entries of 10 bytes: five fit, and none is over a fifth of the cache.
        let cache = StaticCache::new(50);
        let key = |n: u32| {
            cache
                .key(ROUTE, &request(&format!("{SCRIPT}{n}"), &[]))
                .unwrap()
        };
        for n in 0..5 {
            pass(&cache, &key(n), answer(&[IMMUTABLE], "0123456789")).await;
        }
        assert!(cache.get(&key(0)).is_some(), "all five fit");
        // A sixth pushes out the least recently used: 1 (0 was just read).
        pass(&cache, &key(5), answer(&[IMMUTABLE], "0123456789")).await;
        assert!(cache.get(&key(1)).is_none());
        for n in [0, 2, 3, 4, 5] {
            assert!(cache.get(&key(n)).is_some(), "{n} stays");
        }
        assert_eq!(cache.lock().bytes, 50);

        let brief = cache.key(ROUTE, &request(SCRIPT, &[])).unwrap();
        let one_second = ("cache-control", "public, max-age=1");
        pass(&cache, &brief, answer(&[one_second], "x")).await;
        cache.lock().map.get_mut(&brief).unwrap().stored -= Duration::from_secs(2);
        assert!(cache.get(&brief).is_none(), "stale");
        assert!(!cache.lock().map.contains_key(&brief), "and gone");
    }
}
