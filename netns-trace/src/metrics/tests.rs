use crate::model::{Lost, NetnsObject, TaskNetns};
use netns_trace_common::EventKind;
use std::io::{Read, Write};

use super::*;
use crate::collector::CollectorConfig;
use crate::collector::synthetic::{self, SyntheticConfig};
use crate::model::Hook;

const GRACE: u64 = 1_000_000_000;

/// The value of the sample whose line starts with `series` (name and labels, exactly as
/// encoded), or None when there is no such sample.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn samples_named<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .collect()
}

/// A collector and metrics fed the way the live pipeline feeds its sink.
struct Fed {
    collector: Collector,
    metrics: Metrics,
    registry: Arc<Registry>,
}

impl Fed {
    fn new() -> Self {
        let (metrics, registry) = Metrics::new();
        let collector = Collector::new(CollectorConfig {
            grace_ns: GRACE,
            notices: true,
            ..Default::default()
        });
        Self {
            collector,
            metrics,
            registry,
        }
    }

    fn feed(&mut self, ev: &Event) {
        self.metrics.event(ev);
        let notices = self.collector.handle(ev).to_vec();
        if !notices.is_empty() {
            self.metrics.notices(&self.collector, &notices);
        }
    }

    fn finish(&mut self, at: u64) {
        let notices = self.collector.finish(at);
        self.metrics.notices(&self.collector, &notices);
    }

    /// What a scrape sees after the live loop's once-a-second status call.
    fn text(&mut self) -> String {
        self.metrics.refresh_if_stale(&self.collector);
        encode(&self.registry)
    }
}

fn leaky_stream() -> (SyntheticConfig, Vec<Event>) {
    let cfg = SyntheticConfig {
        namespaces: 60,
        seed: 5,
        concurrency: 6,
        leak_every: 10,
        ..Default::default()
    };
    let events = synthetic::generate(cfg.clone()).collect();
    (cfg, events)
}

#[test]
fn leaked_namespaces_get_one_labelled_series_each_and_counters_match_the_collector() {
    let (cfg, events) = leaky_stream();
    let mut fed = Fed::new();
    for e in &events {
        fed.feed(e);
    }
    fed.finish(events.last().unwrap().ts_ns + GRACE + 1);
    let text = fed.text();

    let leaked_ids: Vec<String> = (0..cfg.namespaces)
        .filter(|&i| synthetic::synthetic_leaks(&cfg, i))
        .map(|i| synthetic::synthetic_netns(&cfg, i).to_string())
        .collect();
    assert_eq!(leaked_ids.len(), 6);
    let series = samples_named(&text, "netns_trace_leaked_namespace");
    assert_eq!(
        series.len(),
        leaked_ids.len(),
        "one series per leaked namespace and no other: {series:#?}"
    );
    for id in &leaked_ids {
        let line = series
            .iter()
            .find(|l| l.contains(&format!("netns=\"{id}\"")))
            .unwrap_or_else(|| panic!("no series for {id} in {series:#?}"));
        assert!(line.ends_with(" 1"), "{line}");
        assert!(
            line.contains("pin=\"/"),
            "the bind mount that pins it is a label: {line}"
        );
    }

    let counts = fed.collector.state_counts();
    for state in NsState::ALL {
        let v = sample(
            &text,
            &format!("netns_trace_namespaces{{state=\"{state}\"}}"),
        );
        assert_eq!(v, Some(counts[&state] as f64), "state {state} in\n{text}");
    }
    assert_eq!(counts[&NsState::Leaked], 6);

    let leak_findings = fed
        .collector
        .findings()
        .iter()
        .filter(|f| f.kind() == "leaked_netns")
        .count();
    assert_eq!(
        sample(&text, "netns_trace_findings_total{kind=\"leaked_netns\"}"),
        Some(leak_findings as f64)
    );
    assert_eq!(
        sample(&text, "netns_trace_findings_total{kind=\"duplicate_ip\"}"),
        Some(0.0),
        "kinds exist from the start"
    );

    let total_events: f64 = samples_named(&text, "netns_trace_events_total")
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(total_events, events.len() as f64);
    let tasks = events
        .iter()
        .filter(|e| matches!(e.body, EventBody::Task(TaskNetns { .. })))
        .count();
    assert_eq!(
        sample(&text, "netns_trace_events_total{type=\"task\"}"),
        Some(tasks as f64)
    );
}

#[test]
fn a_leaked_namespace_loses_its_series_when_destroyed() {
    let (cfg, events) = leaky_stream();
    let mut fed = Fed::new();
    for e in &events {
        fed.feed(e);
    }
    let end = events.last().unwrap().ts_ns + GRACE + 1;
    fed.finish(end);
    let first = (0..cfg.namespaces)
        .find(|&i| synthetic::synthetic_leaks(&cfg, i))
        .unwrap();
    let id = synthetic::synthetic_netns(&cfg, first);
    assert!(fed.text().contains(&format!("netns=\"{id}\"")));
    fed.feed(&Event::observed(
        end + 1,
        EventBody::NetnsTeardown(NetnsObject {
            netns: id,
            net_ptr: 0,
            hook: Hook::Fentry,
        }),
    ));
    let text = fed.text();
    assert!(!text.contains(&format!("netns=\"{id}\"")), "{text}");
    assert_eq!(
        samples_named(&text, "netns_trace_leaked_namespace").len(),
        5
    );
    assert_eq!(
        sample(&text, "netns_trace_namespaces{state=\"leaked\"}"),
        Some(5.0)
    );
    assert_eq!(
        sample(&text, "netns_trace_findings_total{kind=\"leaked_netns\"}"),
        Some(6.0),
        "a counter never goes down"
    );
}

#[test]
fn lost_records_are_counted_per_kind_once() {
    let mut fed = Fed::new();
    let kind = EventKind::Task as u16;
    fed.feed(&Event::observed(
        10,
        EventBody::Lost(Lost { kind, count: 5 }),
    ));
    fed.feed(&Event::observed(
        20,
        EventBody::Lost(Lost { kind, count: 2 }),
    ));
    // A refresh from unrelated notices must not count the same losses again.
    fed.metrics.refresh(&fed.collector);
    let text = fed.text();
    assert_eq!(
        sample(&text, "netns_trace_lost_events_total{kind=\"task\"}"),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "netns_trace_lost_events_total{kind=\"arp\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "netns_trace_events_total{type=\"lost\"}"),
        Some(2.0)
    );
}

#[test]
fn probe_mode_and_probe_table_are_info_series() {
    use crate::probes::registry::Mechanism;
    let (mut metrics, registry) = Metrics::new();
    let probe = |name, status, mechanism| ProbeStatus {
        name,
        purpose: "",
        status,
        mechanism,
        targets: vec![],
        detail: vec![],
    };
    metrics.started(
        "tracepoint",
        &[
            probe("netns_created", "attached", Some(Mechanism::Tracepoint)),
            probe("nsfs_evict", "unavailable", None),
        ],
    );
    let text = encode(&registry);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        sample(
            &text,
            &format!("netns_trace_probe_mode_info{{mode=\"tracepoint\",version=\"{version}\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "netns_trace_probe_info{probe=\"netns_created\",status=\"attached\",mechanism=\"tracepoint\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "netns_trace_probe_info{probe=\"nsfs_evict\",status=\"unavailable\",mechanism=\"none\"}"
        ),
        Some(1.0)
    );
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
}

#[test]
fn event_types_are_the_json_type_tags() {
    let (_, events) = leaky_stream();
    let mut seen = std::collections::BTreeSet::new();
    for e in &events {
        let json = serde_json::to_value(e).unwrap();
        assert_eq!(json["type"], event_type(&e.body), "{json}");
        seen.insert(event_type(&e.body));
    }
    let lost = Event::observed(1, EventBody::Lost(Lost { kind: 1, count: 1 }));
    assert_eq!(
        serde_json::to_value(&lost).unwrap()["type"],
        event_type(&lost.body)
    );
    assert!(seen.len() >= 8, "the stream covers most types: {seen:?}");
}

/// One HTTP/1.1 request on a fresh connection; the whole response as text.
fn http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_server_answers_get_metrics_and_refuses_the_rest() {
    let (mut metrics, registry) = Metrics::new();
    metrics.started("full", &[]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (addr, _task) = rt
        .block_on(server::serve(
            "127.0.0.1:0".parse().unwrap(),
            registry.clone(),
        ))
        .unwrap();

    let ok = http(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(
        ok.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{ok}"
    );
    assert!(
        ok.contains("netns_trace_probe_mode_info{mode=\"full\""),
        "{ok}"
    );
    assert!(ok.ends_with("# EOF\n"), "{ok}");

    let post = http(
        addr,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let missing = http(
        addr,
        "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let garbage = http(addr, "\x00\x01 not http\r\n\r\n");
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"),
        "{garbage:?}"
    );

    // A taken port fails at bind, with the address in the message.
    let err = rt
        .block_on(server::serve(addr, registry))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&addr.to_string()), "{err}");
}

/// Issue 14: 200 connections that never finished their request headers all stayed open (no
/// header timeout, no cap), each holding a task and an fd. Past the cap they are closed at
/// once; the rest when the header timeout runs out; and /metrics answers meanwhile.
#[test]
fn slow_clients_are_capped_and_timed_out_and_metrics_still_answers() {
    use std::time::{Duration, Instant};
    let (mut metrics, registry) = Metrics::new();
    metrics.started("full", &[]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (addr, _task) = rt
        .block_on(server::serve(
            "127.0.0.1:0".parse().unwrap(),
            registry.clone(),
        ))
        .unwrap();
    let start = Instant::now();
    let mut slow: Vec<std::net::TcpStream> = (0..200)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    // Every one of them is closed by the server: by the cap at once, or by the header
    // timeout. The bound is generous: it only has to be finite.
    let bound = server::HEADER_TIMEOUT * 4;
    for s in &mut slow {
        s.set_read_timeout(Some(
            bound
                .saturating_sub(start.elapsed())
                .max(Duration::from_millis(10)),
        ))
        .unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf);
        assert!(
            matches!(n, Ok(0))
                || n.as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset)
                || n.as_ref()
                    .is_ok_and(|n| buf[..*n].starts_with(b"HTTP/1.1 408")),
            "a slow client was still open after {:?}: {n:?}",
            start.elapsed()
        );
    }
    drop(slow);
    let ok = http(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}
