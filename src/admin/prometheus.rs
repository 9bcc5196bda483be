//! The Prometheus endpoint's text: ZooKeeper 3.8's `PrometheusMetricsProvider` names and
//! types (its simpleclient 0.9 names counters without `_total`), encoded by the
//! `prometheus` crate's text encoder. Summaries carry ZooKeeper's quantiles: 0.5 for its
//! basic ones, 0.5/0.9/0.99 for its advanced ones (the read and update latencies). The
//! process figures that ZooKeeper's `exportJvmInfo` adds (`process_*`) come from the
//! server (`ServerInfo::process`); the JVM's own (`jvm_*`) have no counterpart.

use super::monitor::{self, Kind, Value};
use super::ServerInfo;
use crate::engine::Engine;
use prometheus::proto::{self, MetricFamily, MetricType};

fn family(name: &str, kind: MetricType, metric: proto::Metric) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(name.to_string());
    f.set_field_type(kind);
    f.set_metric(vec![metric]);
    f
}

fn scalar(name: &str, kind: Kind, v: f64) -> Option<MetricFamily> {
    let mut m = proto::Metric::default();
    let t = match kind {
        Kind::Gauge => {
            let mut g = proto::Gauge::default();
            g.set_value(v);
            m.set_gauge(g);
            MetricType::GAUGE
        }
        Kind::Counter => {
            let mut c = proto::Counter::default();
            c.set_value(v);
            m.set_counter(c);
            MetricType::COUNTER
        }
        Kind::Info => return None,
    };
    Some(family(name, t, m))
}

/// Every metric family, in the order `mntr` lists them.
pub fn families(engine: &Engine, info: &ServerInfo) -> Vec<MetricFamily> {
    let summary_keys: Vec<&str> = monitor::summaries(engine, info)
        .iter()
        .map(|s| s.key)
        .collect();
    let expanded = |key: &str| {
        [
            "avg_", "min_", "max_", "cnt_", "sum_", "p50_", "p95_", "p99_", "p999_",
        ]
        .iter()
        .any(|p| {
            key.strip_prefix(p)
                .is_some_and(|k| summary_keys.contains(&k))
        })
    };
    let mut out: Vec<MetricFamily> = monitor::rows(engine, info)
        .into_iter()
        .filter(|r| !expanded(&r.key))
        .filter_map(|r| {
            let v = match r.value {
                Value::Int(n) => n as f64,
                Value::Float(x) => x,
                Value::Text(_) => return None,
            };
            scalar(&r.key, r.kind, v)
        })
        .collect();
    for s in monitor::summaries(engine, info) {
        let quantiles: &[f64] = if s.percentiles {
            &[0.5, 0.9, 0.99]
        } else {
            &[0.5]
        };
        let mut p = proto::Summary::default();
        p.set_sample_count(s.summary.count);
        p.set_sample_sum(s.summary.sum as f64);
        p.set_quantile(
            quantiles
                .iter()
                .map(|q| {
                    let mut x = proto::Quantile::default();
                    x.set_quantile(*q);
                    x.set_value(s.summary.quantile(*q) as f64);
                    x
                })
                .collect(),
        );
        let mut m = proto::Metric::default();
        m.set_summary(p);
        out.push(family(s.key, MetricType::SUMMARY, m));
    }
    for (name, kind, v) in &info.process {
        out.extend(scalar(name, *kind, *v));
    }
    out
}

/// The text exposition format (version 0.0.4).
pub fn render(engine: &Engine, info: &ServerInfo) -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let enc = prometheus::TextEncoder::new();
    if let Err(e) = enc.encode(&families(engine, info), &mut buf) {
        tracing::warn!(error = %e, "encoding the metrics failed");
    }
    String::from_utf8(buf).unwrap_or_default()
}
