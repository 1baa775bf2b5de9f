//! `watch --metrics-addr` under the incident scenario: the leaked pod's namespace appears as a
//! labelled series and the findings are counted, in the /metrics text (checked by an
//! independent OpenMetrics parser) and, where Debian's `prometheus` is installed (the host;
//! `cargo xtask bootstrap` installs it), in a real Prometheus server scraping `watch` every
//! second and queried through its HTTP API. QEMU guests have no Prometheus; there the direct
//! scrape and parser check still run.
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::watch::{Watch, findings};
use common::{Scenario, require_root, wait_until};
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};
use serde_json::Value;

/// A port free right now on loopback (Prometheus' config needs it before `watch` binds it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.0 (the server closes the connection; no chunked bodies).
/// Returns (status, content type, body), or None when nothing answers.
fn http_get(addr: SocketAddr, path_and_query: &str) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(format!("GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let content_type = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    Some((status, content_type, body.to_string()))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

type Exposition = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

/// One scrape of /metrics, checked and parsed by the OpenMetrics parser.
fn scrape(addr: SocketAddr) -> (String, Exposition) {
    let (status, content_type, body) =
        http_get(addr, "/metrics").unwrap_or_else(|| panic!("nothing answers on {addr}"));
    assert_eq!(status, 200, "{body}");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let parsed = openmetrics_parser::openmetrics::parse_openmetrics(&body)
        .unwrap_or_else(|e| panic!("/metrics is not valid OpenMetrics: {e:?}\n{body}"));
    (body, parsed)
}

/// (labels, value) of every sample of a family (a counter's family name has no `_total`).
fn samples(exp: &Exposition, family: &str) -> Vec<(Vec<(String, String)>, f64)> {
    let Some(f) = exp.families.get(family) else {
        return vec![];
    };
    f.iter_samples()
        .map(|s| {
            let labels = s
                .get_labelset()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let value = match &s.value {
                OpenMetricsValue::Gauge(n) | OpenMetricsValue::Unknown(n) => n.as_f64(),
                OpenMetricsValue::Counter(c) => c.value.as_f64(),
                other => panic!("unexpected value {other:?} in {family}"),
            };
            (labels, value)
        })
        .collect()
}

fn label<'a>(labels: &'a [(String, String)], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn value_with(exp: &Exposition, family: &str, name: &str, value: &str) -> Option<f64> {
    samples(exp, family)
        .into_iter()
        .find(|(l, _)| label(l, name) == Some(value))
        .map(|(_, v)| v)
}

/// A Prometheus server on loopback with its own config and data directory, scraping one
/// target every second. Killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

fn prometheus_bin() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
}

impl Prometheus {
    fn start(bin: &Path, target: SocketAddr) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("netns-trace-prometheus-")
            .tempdir()
            .unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: netns-trace\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .args(["--log.level=warn", "--storage.tsdb.retention.time=1h"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let p = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        let ready = wait_until(Duration::from_secs(60), || {
            http_get(addr, "/-/ready").is_some_and(|(s, _, _)| s == 200)
        });
        assert!(
            ready,
            "Prometheus not ready on {addr} within 60 s; log:\n{}",
            p.log()
        );
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The `data.result` of an instant query.
    fn query(&self, promql: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let (status, _, body) = http_get(self.addr, &path)
            .unwrap_or_else(|| panic!("Prometheus on {} does not answer", self.addr));
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{promql}: bad JSON {e}: {body}"));
        assert!(
            status == 200 && v["status"] == "success",
            "{promql}: {status} {body}"
        );
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Polls `promql` until it returns a series (Prometheus scrapes every second).
    fn query_until_nonempty(&self, promql: &str, timeout: Duration) -> Vec<Value> {
        let mut result = vec![];
        wait_until(timeout, || {
            result = self.query(promql);
            if result.is_empty() {
                std::thread::sleep(Duration::from_millis(250));
            }
            !result.is_empty()
        });
        assert!(
            !result.is_empty(),
            "no result for {promql} within {timeout:?}; Prometheus log:\n{}",
            self.log()
        );
        result
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sample_value(series: &Value) -> f64 {
    series["value"][1].as_str().unwrap().parse().unwrap()
}

#[test]
fn the_leaked_pod_namespace_is_a_metric_scraped_by_prometheus() {
    if !require_root() {
        return;
    }
    let prometheus = prometheus_bin();
    if prometheus.is_none() {
        eprintln!(
            "NOTE: no prometheus binary on PATH (QEMU guests have none; on the host `cargo xtask bootstrap` installs \
             Debian's package): checking /metrics directly with the OpenMetrics parser only"
        );
    }
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let watch = Watch::start(&["--grace", "2", "--metrics-addr", &metrics_addr.to_string()]);
    let prometheus = prometheus.map(|bin| Prometheus::start(&bin, metrics_addr));

    // Before anything happens: every family is there, the probe mode is stated.
    let (_, before) = scrape(metrics_addr);
    let mode = samples(&before, "netns_trace_probe_mode_info");
    assert_eq!(mode.len(), 1, "{mode:?}");
    assert!(
        matches!(label(&mode[0].0, "mode"), Some("full" | "tracepoint")),
        "{mode:?}"
    );
    assert!(
        samples(&before, "netns_trace_probe_info")
            .iter()
            .any(|(l, _)| label(l, "status") == Some("attached"))
    );
    for state in [
        "alive",
        "draining",
        "persistent",
        "leaked",
        "leak_suspect",
        "destroyed",
    ] {
        assert!(
            value_with(&before, "netns_trace_namespaces", "state", state).is_some(),
            "no namespaces{{state={state}}}"
        );
    }
    assert!(
        value_with(&before, "netns_trace_namespaces", "state", "alive").unwrap() >= 1.0,
        "the host namespace is alive"
    );
    assert_eq!(
        value_with(&before, "netns_trace_lost_events", "kind", "task").map(|v| v >= 0.0),
        Some(true)
    );
    let snapshots = value_with(&before, "netns_trace_events", "type", "snapshot");
    assert_eq!(
        snapshots,
        Some(1.0),
        "the start snapshot is the first event"
    );

    let sc = Scenario::start("incident", &["--ip", "10.231.43.10/24"]);
    let pod_a = sc.u64_at("/pod_a/netns_inum").to_string();
    let pod_b = sc.u64_at("/pod_b/netns_inum").to_string();
    let pin = sc.str_at("/pod_a/pin").to_string();

    // Past the grace period the leak verdict is in /metrics.
    let mut last = String::new();
    let leaked = wait_until(Duration::from_secs(60), || {
        let (text, exp) = scrape(metrics_addr);
        last = text;
        samples(&exp, "netns_trace_leaked_namespace")
            .iter()
            .any(|(l, _)| label(l, "inum") == Some(pod_a.as_str()))
    });
    assert!(
        leaked,
        "pod A (net:[{pod_a}]) never appeared as leaked:\n{last}"
    );
    let (text, exp) = scrape(metrics_addr);
    let series = samples(&exp, "netns_trace_leaked_namespace");
    let (labels, value) = series
        .iter()
        .find(|(l, _)| label(l, "inum") == Some(pod_a.as_str()))
        .unwrap();
    assert_eq!(*value, 1.0);
    assert_eq!(
        label(labels, "pin"),
        Some(pin.as_str()),
        "the pin that holds it: {labels:?}"
    );
    assert!(
        label(labels, "netns")
            .unwrap()
            .starts_with(&format!("net:[{pod_a}]")),
        "{labels:?}"
    );
    assert!(
        !series
            .iter()
            .any(|(l, _)| label(l, "inum") == Some(pod_b.as_str())),
        "pod B is alive, not leaked:\n{text}"
    );
    assert!(value_with(&exp, "netns_trace_namespaces", "state", "leaked").unwrap() >= 1.0);
    let leak_findings = value_with(&exp, "netns_trace_findings", "kind", "leaked_netns").unwrap();
    let duplicate_findings =
        value_with(&exp, "netns_trace_findings", "kind", "duplicate_ip").unwrap();
    assert!(leak_findings >= 1.0 && duplicate_findings >= 1.0, "{text}");
    assert!(
        value_with(&exp, "netns_trace_events", "type", "task").unwrap() > 0.0,
        "{text}"
    );

    if let Some(prom) = &prometheus {
        // Prometheus parsed the exposition (a parse failure makes `up` 0) ...
        let up = prom.query_until_nonempty("up{job=\"netns-trace\"} == 1", Duration::from_secs(30));
        assert_eq!(up.len(), 1, "{up:?}");
        // ... and has the leaked namespace with its labels, findable by one query.
        let leaked = prom.query_until_nonempty(
            &format!("netns_trace_leaked_namespace{{inum=\"{pod_a}\"}} == 1"),
            Duration::from_secs(30),
        );
        assert_eq!(leaked.len(), 1, "{leaked:?}");
        let m = &leaked[0]["metric"];
        assert_eq!(m["pin"], pin.as_str(), "{m}");
        assert_eq!(m["job"], "netns-trace");
        assert!(
            prom.query(&format!("netns_trace_leaked_namespace{{inum=\"{pod_b}\"}}"))
                .is_empty(),
            "pod B never leaked"
        );
        let by_kind = prom.query_until_nonempty(
            "sum by (kind) (netns_trace_findings_total) > 0",
            Duration::from_secs(30),
        );
        let kinds: Vec<&str> = by_kind
            .iter()
            .filter_map(|s| s["metric"]["kind"].as_str())
            .collect();
        assert!(
            kinds.contains(&"leaked_netns") && kinds.contains(&"duplicate_ip"),
            "{by_kind:?}"
        );
        let leaks = by_kind
            .iter()
            .find(|s| s["metric"]["kind"] == "leaked_netns")
            .unwrap();
        assert!(sample_value(leaks) >= 1.0);
        let states = prom.query("netns_trace_namespaces");
        assert_eq!(states.len(), 6, "one series per state: {states:?}");
    }

    let lines = watch.stop();
    let live = findings(&lines);
    let leaks_in_json = live.iter().filter(|f| f["kind"] == "leaked_netns").count() as f64;
    assert!(
        leaks_in_json >= leak_findings,
        "every counted leak was streamed as a JSON finding"
    );
    // --json closes with a summary that carries the lost-event counts.
    let summary = lines
        .iter()
        .rev()
        .find(|l| l["type"] == "summary")
        .expect("a summary line");
    assert!(summary["lost_events"]["total"].is_u64(), "{summary}");
    assert!(summary["lost_events"]["by_kind"].is_object(), "{summary}");
    assert!(summary["findings"].as_u64().unwrap() >= 2, "{summary}");
    drop(prometheus);
    drop(sc);
}
