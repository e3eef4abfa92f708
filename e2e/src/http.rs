//! Plain HTTP/1.1 requests to the server's HTTP listener and parsing of its
//! Prometheus metrics.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `GET path` and returns the status code and body. The request asks
/// the server to close the connection, so the body ends at end of stream.
pub async fn get(addr: &str, path: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .expect("connect to the HTTP listener");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        response
    };
    let response = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| panic!("no HTTP response to GET {path} within 10 s"));
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "this helper reads only unchunked bodies: {head}"
    );
    (status, body.to_owned())
}

/// Fetches `/metrics` and parses it as Prometheus text format.
pub async fn scrape(addr: &str) -> prometheus_parse::Scrape {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "GET /metrics: {body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("/metrics parses as Prometheus text format")
}

/// Returns the value of the sample named `metric` whose labels include
/// `labels`: a counter or gauge value, or a histogram's count.
pub fn sample(
    scrape: &prometheus_parse::Scrape,
    metric: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

/// Scrapes `/metrics` every 50 ms until the sample equals `expected` or
/// `timeout` passes; returns the last value seen.
pub async fn wait_for_sample(
    addr: &str,
    metric: &str,
    labels: &[(&str, &str)],
    expected: f64,
    timeout: Duration,
) -> Option<f64> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let value = sample(&scrape(addr).await, metric, labels);
        if value == Some(expected) || tokio::time::Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
