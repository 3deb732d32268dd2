//! Pictures drawn on the server as SVG: a release's architecture and a usage chart. Both carry
//! a `<title>` and `<desc>` for screen readers, and every text is escaped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Escapes text for SVG (XML).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The column a resource type is drawn in, and its label; `None`: not drawn (roles, deployments
/// and permissions are plumbing, listed in the resource table instead).
fn column(kind: &str) -> Option<(usize, &'static str)> {
    match kind {
        "AWS::ApiGateway::Method" | "AWS::ApiGatewayV2::Route" | "AWS::Lambda::Url" => {
            Some((0, "route"))
        }
        "AWS::Events::Rule" | "AWS::Scheduler::Schedule" => Some((0, "schedule")),
        "AWS::Lambda::Function" => Some((1, "function")),
        "AWS::StepFunctions::StateMachine" => Some((1, "state machine")),
        "AWS::DynamoDB::Table" => Some((2, "table")),
        "AWS::SQS::Queue" => Some((2, "queue")),
        "AWS::SNS::Topic" => Some((2, "topic")),
        "AWS::S3::Bucket" => Some((2, "bucket")),
        "AWS::Kinesis::Stream" => Some((2, "stream")),
        "AWS::SecretsManager::Secret" | "AWS::SSM::Parameter" => Some((2, "secret")),
        _ => None,
    }
}

const HEADINGS: [&str; 3] = ["Routes and triggers", "Functions", "Data"];

/// The architecture of a release from its summary (resources and references): routes,
/// functions and data stores in three columns, with arrows for references. A reference through
/// an IAM role (function → role → table) is drawn as one arrow from the function.
pub fn architecture(summary: &serde_json::Value, name: &str) -> String {
    let mut kinds: BTreeMap<String, String> = BTreeMap::new();
    for r in summary
        .get("resources")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
    {
        if let (Some(id), Some(kind)) = (
            r.get("logical_id").and_then(|v| v.as_str()),
            r.get("type").and_then(|v| v.as_str()),
        ) {
            kinds.insert(id.to_owned(), kind.to_owned());
        }
    }
    let mut refs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in summary
        .get("references")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
    {
        if let (Some(from), Some(to)) = (
            r.get("from").and_then(|v| v.as_str()),
            r.get("to").and_then(|v| v.as_str()),
        ) {
            refs.entry(from.to_owned())
                .or_default()
                .insert(to.to_owned());
        }
    }
    let drawn = |id: &str| kinds.get(id).and_then(|k| column(k));
    // Edges between drawn nodes, following one hop through anything not drawn (a role).
    let mut edges = BTreeSet::new();
    for (from, targets) in &refs {
        if drawn(from).is_none() {
            continue;
        }
        for to in targets {
            if drawn(to).is_some() {
                edges.insert((from.clone(), to.clone()));
            } else {
                for next in refs.get(to).into_iter().flatten() {
                    if drawn(next).is_some() && next != from {
                        edges.insert((from.clone(), next.clone()));
                    }
                }
            }
        }
    }
    let mut columns: [Vec<(&str, &str)>; 3] = Default::default();
    for (id, kind) in &kinds {
        if let Some((c, label)) = column(kind) {
            columns[c].push((id.as_str(), label));
        }
    }
    const BOX_W: i64 = 220;
    const BOX_H: i64 = 40;
    const GAP: i64 = 16;
    const COL_X: [i64; 3] = [10, 330, 650];
    const TOP: i64 = 44;
    let rows = columns.iter().map(Vec::len).max().unwrap_or(0).max(1) as i64;
    let height = TOP + rows * (BOX_H + GAP) + 10;
    let width = COL_X[2] + BOX_W + 10;
    let mut at: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for (c, nodes) in columns.iter().enumerate() {
        for (i, (id, _)) in nodes.iter().enumerate() {
            at.insert(id, (COL_X[c], TOP + i as i64 * (BOX_H + GAP)));
        }
    }
    let node_count: usize = columns.iter().map(Vec::len).sum();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-labelledby="arch-title arch-desc" class="architecture">"#
    );
    let _ = write!(
        svg,
        r#"<title id="arch-title">Architecture of {}</title><desc id="arch-desc">{} resources drawn ({} routes and triggers, {} functions, {} data stores) and {} references between them.</desc>"#,
        escape(name),
        node_count,
        columns[0].len(),
        columns[1].len(),
        columns[2].len(),
        edges.len()
    );
    svg.push_str(r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#5b6475"/></marker></defs>"##);
    for (c, heading) in HEADINGS.iter().enumerate() {
        let _ = write!(
            svg,
            r##"<text x="{}" y="24" font-size="15" font-weight="700" fill="#1d2330" font-family="sans-serif">{heading}</text>"##,
            COL_X[c]
        );
    }
    for (from, to) in &edges {
        let (Some(&(x1, y1)), Some(&(x2, y2))) = (at.get(from.as_str()), at.get(to.as_str()))
        else {
            continue;
        };
        let (sx, sy) = (x1 + BOX_W, y1 + BOX_H / 2);
        let (ex, ey) = if x2 > x1 {
            (x2, y2 + BOX_H / 2)
        } else {
            // Same or earlier column: come in from the right side.
            (x2 + BOX_W, y2 + BOX_H / 2)
        };
        let bend = ((ex - sx).abs() / 2).max(40);
        let _ = write!(
            svg,
            r##"<path d="M {sx} {sy} C {} {sy}, {} {ey}, {ex} {ey}" fill="none" stroke="#5b6475" stroke-width="1.5" marker-end="url(#arrow)"><title>{} uses {}</title></path>"##,
            sx + bend,
            if x2 > x1 { ex - bend } else { ex + bend },
            escape(from),
            escape(to)
        );
    }
    let fills = ["#e7effb", "#fdf1dc", "#e6f4ea"];
    for (c, nodes) in columns.iter().enumerate() {
        for (id, label) in nodes {
            let Some(&(x, y)) = at.get(id) else { continue };
            let _ = write!(
                svg,
                r##"<g><title>{label} {id}</title><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="{}" stroke="#8a94a6"/><text x="{}" y="{}" font-size="13" fill="#1d2330" font-family="sans-serif">{}</text><text x="{}" y="{}" font-size="11" fill="#5b6475" font-family="sans-serif">{label}</text></g>"##,
                fills[c],
                x + 10,
                y + 17,
                escape(&truncate(id, 28)),
                x + 10,
                y + 32,
                id = escape(id),
                label = label
            );
        }
    }
    if node_count == 0 {
        let _ = write!(
            svg,
            r##"<text x="10" y="{}" font-size="13" fill="#5b6475" font-family="sans-serif">This release declares no routes, functions or data stores.</text>"##,
            TOP + 20
        );
    }
    svg.push_str("</svg>");
    svg
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(max - 1).collect();
        short.push('…');
        short
    }
}

/// A bar chart of daily units: `days` is (day's first second, units), oldest first.
pub fn usage_chart(dimension: &str, days: &[(i64, i64)]) -> String {
    const W: i64 = 720;
    const H: i64 = 220;
    const LEFT: i64 = 56;
    const BOTTOM: i64 = 30;
    const TOP: i64 = 16;
    let max = days.iter().map(|d| d.1).max().unwrap_or(0).max(1);
    let total = days.iter().fold(0i64, |sum, d| sum.saturating_add(d.1));
    let n = days.len().max(1) as i64;
    let plot_w = W - LEFT - 10;
    let plot_h = H - TOP - BOTTOM;
    let bar_w = (plot_w / n).max(2);
    let id = format!("usage-{}", escape(dimension));
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-labelledby="{id}-title {id}-desc" class="chart">"#
    );
    let _ = write!(
        svg,
        r#"<title id="{id}-title">Daily {dim} over the last {n} days</title><desc id="{id}-desc">{total} {dim} in all; the busiest day had {max}.</desc>"#,
        dim = escape(dimension)
    );
    // Axes and the top gridline with its value.
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{}" y2="{TOP}" stroke="#d8dde6"/><text x="{}" y="{}" font-size="11" text-anchor="end" fill="#5b6475" font-family="sans-serif">{max}</text>"##,
        W - 10,
        LEFT - 6,
        TOP + 4
    );
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="#8a94a6"/><text x="{}" y="{}" font-size="11" text-anchor="end" fill="#5b6475" font-family="sans-serif">0</text>"##,
        TOP + plot_h,
        W - 10,
        TOP + plot_h,
        LEFT - 6,
        TOP + plot_h + 4
    );
    for (i, (day, units)) in days.iter().enumerate() {
        // In 128 bits: units near i64::MAX times the plot's height would overflow 64.
        let h = i64::try_from(i128::from(*units) * i128::from(plot_h) / i128::from(max))
            .unwrap_or(plot_h);
        let x = LEFT + i as i64 * bar_w;
        let _ = write!(
            svg,
            r##"<rect x="{}" y="{}" width="{}" height="{h}" fill="#1f5fbf"><title>{}: {units}</title></rect>"##,
            x + 1,
            TOP + plot_h - h,
            (bar_w - 2).max(1),
            super::date(*day)
        );
    }
    if let (Some(first), Some(last)) = (days.first(), days.last()) {
        let _ = write!(
            svg,
            r##"<text x="{LEFT}" y="{}" font-size="11" fill="#5b6475" font-family="sans-serif">{}</text><text x="{}" y="{}" font-size="11" text-anchor="end" fill="#5b6475" font-family="sans-serif">{}</text>"##,
            H - 8,
            super::date(first.0),
            W - 10,
            H - 8,
            super::date(last.0)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Sums hourly usage into days ending today: `days` entries, oldest first, zero where nothing
/// was reported.
pub fn daily(
    hours: impl IntoIterator<Item = (i64, i64)>,
    today: i64,
    days: i64,
) -> Vec<(i64, i64)> {
    let today = today - today.rem_euclid(86_400);
    let first = today - (days - 1) * 86_400;
    let mut out: Vec<(i64, i64)> = (0..days).map(|i| (first + i * 86_400, 0)).collect();
    for (hour, units) in hours {
        let day = hour - hour.rem_euclid(86_400);
        if day >= first && day <= today {
            let i = ((day - first) / 86_400) as usize;
            if let Some(slot) = out.get_mut(i) {
                slot.1 = slot.1.saturating_add(units);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn architecture_collapses_roles_and_escapes_names() {
        let summary = serde_json::json!({
            "resources": [
                {"logical_id": "Get<script>", "type": "AWS::ApiGateway::Method"},
                {"logical_id": "Fn", "type": "AWS::Lambda::Function"},
                {"logical_id": "Role", "type": "AWS::IAM::Role"},
                {"logical_id": "Posts", "type": "AWS::DynamoDB::Table"},
            ],
            "references": [
                {"from": "Get<script>", "to": "Fn"},
                {"from": "Fn", "to": "Role"},
                {"from": "Role", "to": "Posts"},
            ],
        });
        let svg = architecture(&summary, "blog 1.0.0");
        assert!(svg.contains("Get&lt;script&gt; uses Fn"));
        assert!(svg.contains("Fn uses Posts"), "{svg}");
        assert!(!svg.contains("<script>"));
        assert!(!svg.contains(">Role<"), "roles are not drawn");
        assert!(svg.contains("3 resources drawn"));
        assert!(svg.contains("2 references"));
    }

    #[test]
    fn daily_sums_hours_into_days() {
        let today = 1_700_000_000 - 1_700_000_000 % 86_400;
        let days = daily(
            [
                (today + 3600, 2),
                (today + 7200, 3),
                (today - 86_400, 5),
                (today - 40 * 86_400, 9),
            ],
            today + 10,
            3,
        );
        assert_eq!(
            days,
            [(today - 2 * 86_400, 0), (today - 86_400, 5), (today, 5)]
        );
        let svg = usage_chart("users", &days);
        assert!(svg.contains("10 users in all"));
        assert_eq!(svg.matches("<rect").count(), 3);
    }
}
