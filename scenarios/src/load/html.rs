//! `scenarios load --html FILE`: the report as one self-contained page (inline SVG charts
//! drawn with plotters, the shared inlined CSS, no script, nothing fetched).

use maud::{PreEscaped, html};
use mock_common::page::document;
use plotters::prelude::*;

use super::report::LoadReport;
use crate::reconcile::Verdict;

const WIDTH: u32 = 760;
const HEIGHT: u32 = 300;

/// The whole page, in the look the viewer and the scenario report share.
pub fn page(r: &LoadReport) -> anyhow::Result<String> {
    let charts = [
        (
            "Throughput",
            "Stored messages per second in each 10-second span: the raw client (ceiling) and the connector (import).",
            throughput(r)?,
        ),
        (
            "Latency",
            "Percentiles in seconds. Import: from an item being staged, ready to send, to its mailbox's answer.",
            latency(r)?,
        ),
        (
            "Mailboxes",
            "Share of Graph's per-mailbox budgets each mailbox used in the import (10,000 requests per 10 minutes, 150 MB per 5 minutes), busiest first.",
            budgets(r)?,
        ),
        (
            "Connector memory",
            "Resident memory of the connector process at the end of each 10-second span.",
            memory(r)?,
        ),
    ];
    Ok(document(
        &format!("Load test: {}", r.day.description),
        html! {},
        html! {
            h1 { "Load test of the daily import" }
            p { (r.day.description) }
            @match r.verdict {
                Verdict::Pass => p.pass { "PASS: every item reconciled, the accounting adds up" },
                Verdict::Fail => p.fail { "FAIL: the run lost, duplicated or misdelivered something" },
            }
            div.cards {
                div.card { b { (format!("{:.1} %", r.ratio * 100.0)) } "connector / ceiling" }
                div.card { b { (format!("{:.0}", r.import.per_second)) } "deliveries/s (connector)" }
                div.card { b { (format!("{:.0}", r.ceiling.per_second)) } "messages/s (raw client)" }
                div.card { b { (format!("{:.0}", r.capacity.per_second)) } (format!("messages/s, the fake's most ({} in flight)", r.capacity.concurrency)) }
                @if let Some(b) = &r.graph_bound {
                    div.card { b { (format!("{:.2}", b.import_over_bound)) } "import time / Graph bound" }
                }
            }
            pre { (r.table()) }
            @for (title, caption, svg) in charts {
                section {
                    h2 { (title) }
                    p { (caption) }
                    // plotters' SVG: drawn here from numbers, never from outside text.
                    (PreEscaped(svg))
                }
            }
        },
    )
    .into_string())
}

/// Draws into an SVG string; plotters' errors become anyhow's.
fn svg(
    draw: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    let mut buf = String::new();
    {
        let area = SVGBackend::with_string(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        area.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        draw(&area)?;
        area.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(buf)
}

/// A named, coloured line.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

fn lines(
    x_min: f64,
    caption_y: &str,
    caption_x: &str,
    series: &[Series],
) -> anyhow::Result<String> {
    let x_max = series
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|(x, _)| *x))
        .fold(1.0f64, f64::max);
    let y_max = series
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|(_, y)| *y))
        .fold(1.0f64, f64::max)
        * 1.1;
    svg(|area| {
        let e = |e: &dyn std::fmt::Display| anyhow::anyhow!("{e}");
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(x_min..x_max, 0f64..y_max)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_desc(caption_x)
            .y_desc(caption_y)
            .draw()
            .map_err(|x| e(&x))?;
        for (name, color, points) in series {
            let color = *color;
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|x| e(&x))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|x| e(&x))?;
        Ok(())
    })
}

fn throughput(r: &LoadReport) -> anyhow::Result<String> {
    // Steps: each bucket's rate held over its span (a phase shorter than one bucket
    // still shows).
    let points = |b: &[super::usage::Bucket]| -> Vec<(f64, f64)> {
        let span = super::usage::BUCKET.as_secs_f64();
        b.iter()
            .flat_map(|b| {
                let from = b.from_second as f64;
                [(from, b.per_second), (from + span, b.per_second)]
            })
            .collect()
    };
    let mut series = vec![
        ("ceiling (raw client)", BLUE, points(&r.ceiling.buckets)),
        ("import (connector)", RED, points(&r.import.buckets)),
    ];
    // The mean rate at which the import would have finished in exactly the Graph bound,
    // held over the bound's length.
    if let Some(b) = &r.graph_bound {
        let rate = r.import.deliveries as f64 / b.seconds.max(1e-9);
        series.push((
            "Graph bound (mean rate)",
            GREEN,
            vec![(0.0, rate), (b.seconds, rate)],
        ));
    }
    lines(0.0, "per second", "seconds into the phase", &series)
}

fn latency(r: &LoadReport) -> anyhow::Result<String> {
    let points = |l: Option<&connector::report::Latency>| -> Vec<(f64, f64)> {
        l.map(|l| {
            vec![
                (50.0, l.p50_ms as f64 / 1000.0),
                (95.0, l.p95_ms as f64 / 1000.0),
                (99.0, l.p99_ms as f64 / 1000.0),
                (100.0, l.max_ms as f64 / 1000.0),
            ]
        })
        .unwrap_or_default()
    };
    lines(
        45.0,
        "seconds",
        "percentile (100 = max)",
        &[
            ("ceiling", BLUE, points(r.ceiling.latency.as_ref())),
            (
                "import",
                RED,
                points(r.import.latency.iter().max_by_key(|l| l.p99_ms)),
            ),
        ],
    )
}

fn budgets(r: &LoadReport) -> anyhow::Result<String> {
    let mut requests: Vec<f64> = r
        .mailboxes
        .per_mailbox
        .iter()
        .map(|m| m.request_share * 100.0)
        .collect();
    requests.sort_by(|a, b| b.total_cmp(a));
    let uploads: Vec<f64> = r
        .mailboxes
        .per_mailbox
        .iter()
        .map(|m| m.upload_share * 100.0)
        .collect();
    let ranked = |v: &[f64]| -> Vec<(f64, f64)> {
        v.iter()
            .enumerate()
            .map(|(i, y)| (i as f64 + 1.0, *y))
            .collect()
    };
    lines(
        0.0,
        "% of the budget",
        "mailboxes, busiest first",
        &[
            ("uploads", RED, ranked(&uploads)),
            ("requests", BLUE, ranked(&requests)),
        ],
    )
}

fn memory(r: &LoadReport) -> anyhow::Result<String> {
    let points: Vec<(f64, f64)> = r
        .import
        .buckets
        .iter()
        .filter_map(|b| {
            b.connector_rss_bytes
                .map(|rss| (b.from_second as f64 + 10.0, rss as f64 / 1e6))
        })
        .collect();
    lines(
        0.0,
        "MB resident",
        "seconds into the import",
        &[("connector RSS", GREEN, points)],
    )
}
