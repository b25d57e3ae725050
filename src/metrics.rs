//! devbox's own Prometheus metrics (`GET /metrics`): what the controller, provisioning,
//! the proxy and the log streams count as they work, and the figures read at each
//! scrape (servers by phase, each server's CPU and memory).
//!
//! One process serves one set of counters, so they live in one registry for the
//! process ([`METRICS`]), as with the `metrics` crate's global recorder: the places that
//! count (a proxied request, an extension copy) need no handle threaded down to them.
//! The text is the classic Prometheus format of the `prometheus` crate:
//! `prometheus-client` writes OpenMetrics only, whose counters Debian's `promtool check
//! metrics` (2.42) reads as help-less families of another name.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use prometheus::core::Collector;
use prometheus::{
    CounterVec, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::status::Phase;
use crate::usage::Usage;

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Seconds buckets from a tenth of a second to two minutes: starts, clones, installs.
const SLOW_BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 90.0, 120.0,
];
/// Seconds buckets from half a millisecond to ten seconds: proxied requests.
const FAST_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

/// Every metric devbox exports, by what it measures.
pub struct Metrics {
    registry: Registry,
    /// Held while a scrape sets the figures read at scrape time and gathers.
    scrape: Mutex<()>,
    pub controller: ControllerMetrics,
    pub provisioning: ProvisioningMetrics,
    pub proxy: ProxyMetrics,
    pub log_streams: LogStreamMetrics,
    pub pools: PoolMetrics,
    servers: IntGaugeVec,
    server_cpu: CounterVec,
    server_memory: IntGaugeVec,
}

/// What happens to servers.
pub struct ControllerMetrics {
    pub starts: IntCounter,
    pub crashes: IntCounter,
    /// By reason: `crash`, `exit`, `unhealthy`, `spec_change`.
    pub restarts: IntCounterVec,
    pub culls: IntCounter,
    pub adoptions: IntCounter,
    /// From the controller acting on a spec to the server answering healthy.
    pub ready_seconds: Histogram,
}

/// Workspaces and extensions.
pub struct ProvisioningMetrics {
    /// By source (`git`, `zip`, `folder`, `empty`) and outcome (`ok`, `error`).
    pub workspace_seconds: HistogramVec,
    /// By outcome: `installed` (the installer ran), `cached` (copied from the
    /// extension cache), `present` (already in place), `failed`.
    pub extension_seconds: HistogramVec,
    /// Git mirror lookups by result: `hit` (fresh, cloned from as it is), `miss`.
    pub git_mirror_lookups: IntCounterVec,
}

/// The reverse proxy to the IDEs. Its hot path counts on counters resolved once (a
/// labelled family hashes its labels on every lookup).
pub struct ProxyMetrics {
    /// Forwarded HTTP requests by status class: `1xx` … `5xx`, in that order.
    requests_by_class: [IntCounter; 5],
    /// Time to the instance's response headers (or the cache's).
    request_seconds: Histogram,
    /// Body bytes streamed to browsers (of tunnels: counted when they close).
    pub bytes_to_client: IntCounter,
    /// Body bytes streamed to instances (of tunnels: counted when they close).
    pub bytes_to_instance: IntCounter,
    websocket_tunnels: IntGauge,
    pub static_cache_hits: IntCounter,
    pub static_cache_misses: IntCounter,
    pub static_cache_bytes: IntGauge,
}

/// Something open (a tunnel, a log stream), counted in its gauge until dropped.
pub struct Open(&'static IntGauge);

impl Open {
    fn count_in(gauge: &'static IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The WebSocket log streams.
pub struct LogStreamMetrics {
    clients: IntGauge,
    /// Lines a slow client missed (it fell behind the live feed).
    pub dropped_lines: IntCounter,
}

impl LogStreamMetrics {
    /// Counts a stream client as connected until the returned guard drops.
    pub fn client_connected(&'static self) -> Open {
        Open::count_in(&self.clients)
    }
}

/// The pools of prebuilt servers, by template.
pub struct PoolMetrics {
    size: IntGaugeVec,
    ready: IntGaugeVec,
    claims: IntCounterVec,
    fallbacks: IntCounterVec,
    refill_seconds: HistogramVec,
}

impl PoolMetrics {
    /// A pool's size now, and its members ready to be claimed.
    pub fn set(&self, template: &str, size: u32, ready: usize) {
        self.size
            .with_label_values(&[template])
            .set(i64::from(size));
        self.ready
            .with_label_values(&[template])
            .set(i64::try_from(ready).unwrap_or(i64::MAX));
    }

    /// A create from `template` was handed a pool member.
    pub fn claimed(&self, template: &str) {
        self.claims.with_label_values(&[template]).inc();
    }

    /// A create from `template` found no member ready and made a server afresh.
    pub fn fell_back(&self, template: &str) {
        self.fallbacks.with_label_values(&[template]).inc();
    }

    /// A member of `template`'s pool became ready, `took` after it was written.
    pub fn refilled(&self, template: &str, took: Duration) {
        self.refill_seconds
            .with_label_values(&[template])
            .observe(took.as_secs_f64());
    }
}

/// One server as a scrape sees it.
pub struct ServerFigures<'a> {
    pub name: &'a str,
    /// The owner's name; empty for the admin's servers.
    pub owner: &'a str,
    pub phase: Phase,
    /// CPU and memory, while it runs.
    pub usage: Option<Usage>,
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new_custom(Some("devbox".into()), None)
            .unwrap_or_else(|err| unreachable!("a fixed valid prefix: {err}"));
        let r = &registry;
        let restarts = counter_vec(
            r,
            "server_restarts_total",
            "Restarts by reason: crash, exit (a clean exit under restart_policy always), unhealthy, spec_change.",
            &["reason"],
        );
        let git_mirror_lookups = counter_vec(
            r,
            "git_mirror_lookups_total",
            "Clones by whether their git mirror was fresh (hit) or fetched first (miss).",
            &["result"],
        );
        // Every series a dashboard plots exists from the start, at 0.
        for reason in ["crash", "exit", "unhealthy", "spec_change"] {
            restarts.with_label_values(&[reason]);
        }
        for result in ["hit", "miss"] {
            git_mirror_lookups.with_label_values(&[result]);
        }
        let controller = ControllerMetrics {
            starts: counter(r, "server_starts_total", "Instances launched."),
            crashes: counter(
                r,
                "server_crashes_total",
                "Instances that failed: exited non-zero on their own, or exited during their start.",
            ),
            restarts,
            culls: counter(r, "server_culls_total", "Servers stopped as idle."),
            adoptions: counter(
                r,
                "server_adoptions_total",
                "Running instances taken over from an earlier devbox.",
            ),
            ready_seconds: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "server_ready_seconds",
                        "From the controller acting on a spec to the server answering /healthz.",
                    )
                    .buckets(SLOW_BUCKETS.to_vec()),
                ),
            ),
        };
        let provisioning = ProvisioningMetrics {
            workspace_seconds: histogram_vec(
                r,
                "workspace_prepare_seconds",
                "Workspace preparation by source (git, zip, folder, empty) and outcome (ok, error).",
                &["source", "outcome"],
                &SLOW_BUCKETS,
            ),
            extension_seconds: histogram_vec(
                r,
                "extension_install_seconds",
                "Extension installs by outcome: installed, cached, present, failed.",
                &["outcome"],
                &SLOW_BUCKETS,
            ),
            git_mirror_lookups,
        };
        let requests = counter_vec(
            r,
            "proxy_requests_total",
            "HTTP requests forwarded to IDEs, by status class.",
            &["class"],
        );
        let bytes = counter_vec(
            r,
            "proxy_bytes_total",
            "Body bytes through the proxy by direction (to_client, to_instance); tunnels' when they close.",
            &["direction"],
        );
        let static_cache_lookups = counter_vec(
            r,
            "proxy_static_cache_lookups_total",
            "Static cache lookups by result (hit, miss).",
            &["result"],
        );
        let proxy = ProxyMetrics {
            requests_by_class: ["1xx", "2xx", "3xx", "4xx", "5xx"]
                .map(|class| requests.with_label_values(&[class])),
            request_seconds: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "proxy_request_duration_seconds",
                        "Time to a forwarded request's response headers.",
                    )
                    .buckets(FAST_BUCKETS.to_vec()),
                ),
            ),
            bytes_to_client: bytes.with_label_values(&["to_client"]),
            bytes_to_instance: bytes.with_label_values(&["to_instance"]),
            websocket_tunnels: gauge(
                r,
                "proxy_websocket_tunnels",
                "WebSocket tunnels open to IDEs.",
            ),
            static_cache_hits: static_cache_lookups.with_label_values(&["hit"]),
            static_cache_misses: static_cache_lookups.with_label_values(&["miss"]),
            static_cache_bytes: gauge(
                r,
                "proxy_static_cache_bytes",
                "Bytes of responses held in the static cache.",
            ),
        };
        let log_streams = LogStreamMetrics {
            clients: gauge(r, "log_stream_clients", "Open log stream WebSockets."),
            dropped_lines: counter(
                r,
                "log_stream_dropped_lines_total",
                "Log lines slow stream clients missed.",
            ),
        };
        let pools = PoolMetrics {
            size: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "pool_size",
                        "Servers each template's pool keeps ready, unclaimed.",
                    ),
                    &["template"],
                ),
            ),
            ready: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "pool_ready",
                        "Pool servers running and healthy, ready to be claimed.",
                    ),
                    &["template"],
                ),
            ),
            claims: counter_vec(
                r,
                "pool_claims_total",
                "Creates from a template that were handed a ready pool server.",
                &["template"],
            ),
            fallbacks: counter_vec(
                r,
                "pool_fallbacks_total",
                "Creates from a template with a pool that found no server ready and made one afresh.",
                &["template"],
            ),
            refill_seconds: histogram_vec(
                r,
                "pool_refill_seconds",
                "From a pool server's spec being written to the server answering healthy.",
                &["template"],
                &SLOW_BUCKETS,
            ),
        };
        let servers = register(
            r,
            IntGaugeVec::new(Opts::new("servers", "Servers by phase."), &["phase"]),
        );
        let server_cpu = register(
            r,
            CounterVec::new(
                Opts::new(
                    "server_cpu_seconds_total",
                    "CPU time of each running server's instance since it started.",
                ),
                &["server", "owner"],
            ),
        );
        let server_memory = register(
            r,
            IntGaugeVec::new(
                Opts::new(
                    "server_memory_bytes",
                    "Memory in use by each running server's instance.",
                ),
                &["server", "owner"],
            ),
        );
        Self {
            registry,
            scrape: Mutex::new(()),
            controller,
            provisioning,
            proxy,
            log_streams,
            pools,
            servers,
            server_cpu,
            server_memory,
        }
    }

    /// The text of a scrape: every counter, and `servers` as they are now.
    pub fn render<'a>(
        &self,
        servers: impl IntoIterator<Item = ServerFigures<'a>>,
    ) -> Result<String, prometheus::Error> {
        let _scrape = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        for phase in Phase::ALL {
            self.servers.with_label_values(&[phase.name()]).set(0);
        }
        // Servers that are gone leave no series behind.
        self.server_cpu.reset();
        self.server_memory.reset();
        let mut seen = HashSet::new();
        for server in servers {
            if !seen.insert(server.name) {
                continue;
            }
            self.servers.with_label_values(&[server.phase.name()]).inc();
            if let Some(usage) = server.usage {
                let labels = [server.name, server.owner];
                self.server_cpu
                    .with_label_values(&labels)
                    .inc_by(usage.cpu_seconds.max(0.0));
                self.server_memory
                    .with_label_values(&labels)
                    .set(i64::try_from(usage.memory_bytes).unwrap_or(i64::MAX));
            }
        }
        let mut text = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut text)?;
        String::from_utf8(text).map_err(|err| prometheus::Error::Msg(err.to_string()))
    }
}

impl ProxyMetrics {
    /// Counts one forwarded request's answer.
    pub fn answered(&self, status: StatusCode, took: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.requests_by_class[class].inc();
        self.request_seconds.observe(took.as_secs_f64());
    }

    /// Counts a tunnel as open until the returned guard drops.
    pub fn tunnel_opened(&'static self) -> Open {
        Open::count_in(&self.websocket_tunnels)
    }
}

/// Registers `metric` in `registry`. The names are fixed and unique (a test builds the
/// whole set), so a refusal is a bug of this file.
fn register<M: Collector + Clone + 'static>(
    registry: &Registry,
    metric: Result<M, prometheus::Error>,
) -> M {
    let metric = metric.unwrap_or_else(|err| unreachable!("a metric of fixed shape: {err}"));
    if let Err(err) = registry.register(Box::new(metric.clone())) {
        unreachable!("metric names are unique: {err}");
    }
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(registry, IntCounter::new(name, help))
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::new(name, help))
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    register(
        registry,
        HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(name: &str, phase: Phase, cpu: f64) -> ServerFigures<'_> {
        ServerFigures {
            name,
            owner: "ada",
            phase,
            usage: (phase == Phase::Running).then(|| Usage {
                cpu_seconds: cpu,
                memory_bytes: 1 << 20,
                ..Usage::default()
            }),
        }
    }

    #[test]
    fn a_scrape_shows_every_phase_and_only_the_servers_of_now() {
        let metrics = Metrics::new();
        metrics.controller.starts.inc();
        let first = metrics
            .render([
                figures("a", Phase::Running, 1.5),
                figures("b", Phase::Stopped, 0.0),
            ])
            .expect("render");
        assert!(first.contains("devbox_server_starts_total 1\n"), "{first}");
        assert!(
            first.contains("devbox_servers{phase=\"running\"} 1\n"),
            "{first}"
        );
        assert!(
            first.contains("devbox_servers{phase=\"invalid\"} 0\n"),
            "{first}"
        );
        assert!(
            first.contains("devbox_server_cpu_seconds_total{owner=\"ada\",server=\"a\"} 1.5\n"),
            "{first}"
        );
        let second = metrics
            .render([figures("b", Phase::Running, 2.0)])
            .expect("render");
        assert!(!second.contains("server=\"a\""), "{second}");
        assert!(
            second.contains("devbox_server_memory_bytes{owner=\"ada\",server=\"b\"} 1048576\n"),
            "{second}"
        );
        assert!(
            second.contains("devbox_servers{phase=\"running\"} 1\n"),
            "{second}"
        );
    }

    #[test]
    fn status_classes() {
        let metrics = Metrics::new();
        metrics
            .proxy
            .answered(StatusCode::NO_CONTENT, Duration::from_millis(3));
        metrics
            .proxy
            .answered(StatusCode::BAD_GATEWAY, Duration::from_millis(3));
        metrics.proxy.bytes_to_client.inc_by(10);
        let text = metrics.render([]).expect("render");
        assert!(
            text.contains("devbox_proxy_requests_total{class=\"2xx\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("devbox_proxy_requests_total{class=\"5xx\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("devbox_proxy_bytes_total{direction=\"to_client\"} 10\n"),
            "{text}"
        );
    }
}
