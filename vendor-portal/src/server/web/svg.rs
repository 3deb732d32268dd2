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
        "AWS::Lambda::EventSourceMapping" => Some((0, "trigger")),
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

/// What the page knows of a Lambda function a state invokes: the bundle function it runs and
/// how that ships (`price, compiled`).
pub type FunctionNotes = BTreeMap<String, String>;

const STATE_W: i64 = 300;
const STATE_H: i64 = 50;
const STATE_GAP: i64 = 36;
const PAD: i64 = 12;
const HEADER: i64 = 30;
const LANE: i64 = 16;

/// The space a list of states takes: its states' widest box, its lanes for transitions that
/// skip ahead or go back, and its height.
fn list_size(states: &[bundles::workflow::State]) -> (i64, i64, i64) {
    let mut widest = 0;
    let mut height = 0;
    for (i, s) in states.iter().enumerate() {
        let (w, h) = state_size(s);
        widest = widest.max(w);
        height += h + if i > 0 { STATE_GAP } else { 0 };
    }
    (widest, lane_space(states), height)
}

/// The width right of a list's boxes: a gutter for the labels of its long transitions, then
/// one lane per transition.
fn lane_space(states: &[bundles::workflow::State]) -> i64 {
    let long = long_transitions(states);
    if long.is_empty() {
        return 0;
    }
    label_gutter(&long) + long.len() as i64 * LANE + 8
}

const LABEL_CHARS: usize = 36;

fn label_gutter(long: &[(usize, usize, Option<String>)]) -> i64 {
    let chars = long
        .iter()
        .filter_map(|(_, _, label)| label.as_deref())
        .map(|l| l.chars().count().min(LABEL_CHARS))
        .max()
        .unwrap_or(0) as i64;
    chars * 6 + 12
}

fn state_size(state: &bundles::workflow::State) -> (i64, i64) {
    if state.branches.is_empty() {
        return (STATE_W, STATE_H);
    }
    let mut width = PAD;
    let mut height: i64 = 0;
    for branch in &state.branches {
        let (w, lanes, h) = list_size(branch);
        width += w + lanes + PAD;
        height = height.max(h);
    }
    (width.max(STATE_W), HEADER + height + 2 * PAD)
}

/// Transitions of a list that do not go to the next state down: (from, to, label).
fn long_transitions(states: &[bundles::workflow::State]) -> Vec<(usize, usize, Option<String>)> {
    let index = |name: &str| states.iter().position(|s| s.name == name);
    let mut out = Vec::new();
    for (i, s) in states.iter().enumerate() {
        for t in &s.next {
            if let Some(j) = index(&t.to)
                && j != i + 1
            {
                out.push((i, j, t.label.clone()));
            }
        }
    }
    out
}

fn draw_states(
    svg: &mut String,
    states: &[bundles::workflow::State],
    (x, y): (i64, i64),
    notes: &FunctionNotes,
    id: &str,
) {
    let (widest, _, _) = list_size(states);
    let mut tops = Vec::with_capacity(states.len());
    let mut top = y;
    for s in states {
        let (w, h) = state_size(s);
        let left = x + (widest - w) / 2;
        tops.push((left, top, w, h));
        top += h + STATE_GAP;
    }
    let arrow = |svg: &mut String,
                 d: String,
                 label: Option<&str>,
                 at: (i64, i64),
                 title: String| {
        let _ = write!(
            svg,
            r##"<path d="{d}" fill="none" stroke="#5b6475" stroke-width="1.5" marker-end="url(#{id}-arrow)"><title>{}</title></path>"##,
            escape(&title)
        );
        if let Some(label) = label {
            let _ = write!(
                svg,
                r##"<text x="{}" y="{}" font-size="11" fill="#5b6475" font-family="sans-serif">{}</text>"##,
                at.0,
                at.1,
                escape(&truncate(label, LABEL_CHARS))
            );
        }
    };
    for (i, s) in states.iter().enumerate() {
        let (left, top, w, h) = tops[i];
        if let Some(&(next_left, next_top, next_w, _)) = tops.get(i + 1) {
            for t in s.next.iter().filter(|t| t.to == states[i + 1].name) {
                let cx = left + w / 2;
                let nx = next_left + next_w / 2;
                arrow(
                    svg,
                    format!("M {cx} {} L {nx} {next_top}", top + h),
                    t.label.as_deref(),
                    (cx + 6, top + h + STATE_GAP / 2 + 4),
                    format!("{} → {}", s.name, t.to),
                );
            }
        }
    }
    let long = long_transitions(states);
    let gutter = label_gutter(&long);
    for (lane, (i, j, label)) in long.into_iter().enumerate() {
        let (left, top, w, h) = tops[i];
        let (to_left, to_top, to_w, to_h) = tops[j];
        let lane_x = x + widest + gutter + lane as i64 * LANE;
        let (from_y, to_y) = (top + h / 2, to_top + to_h / 2);
        arrow(
            svg,
            format!(
                "M {} {from_y} H {lane_x} V {to_y} H {}",
                left + w,
                to_left + to_w
            ),
            label.as_deref(),
            (left + w + 6, from_y - 5),
            format!("{} → {}", states[i].name, states[j].name),
        );
    }
    for (s, &(left, top, w, h)) in states.iter().zip(&tops) {
        let (fill, stroke) = match (s.kind.as_str(), &s.function) {
            (_, Some(_)) => ("#fdf1dc", "#8a94a6"),
            ("Task", None) => ("#e6f4ea", "#8a94a6"),
            ("Choice", _) => ("#efe7fb", "#8a94a6"),
            ("Succeed", _) => ("#e6f4ea", "#2e7d32"),
            ("Fail", _) => ("#fbe7e7", "#b3261e"),
            _ if !s.branches.is_empty() => ("#f5f7fa", "#8a94a6"),
            _ => ("#ffffff", "#8a94a6"),
        };
        let dash = if s.branches.is_empty() {
            ""
        } else {
            r#" stroke-dasharray="5 3""#
        };
        let line = s.does(notes);
        let _ = write!(
            svg,
            r##"<g class="state" data-state="{name}" data-type="{kind}"><title>{kind} {name}: {line}</title><rect x="{left}" y="{top}" width="{w}" height="{h}" rx="8" fill="{fill}" stroke="{stroke}"{dash}/><text x="{}" y="{}" font-size="13" font-weight="700" fill="#1d2330" font-family="sans-serif">{}</text><text x="{}" y="{}" font-size="11" fill="#5b6475" font-family="sans-serif">{}</text></g>"##,
            left + 10,
            top + 19,
            escape(&truncate(&s.name, 36)),
            left + 10,
            top + 36,
            escape(&truncate(&line, 44)),
            name = escape(&s.name),
            kind = escape(&s.kind),
            line = escape(&line),
        );
        let mut branch_x = left + PAD;
        for branch in &s.branches {
            let (bw, lanes, _) = list_size(branch);
            draw_states(svg, branch, (branch_x, top + HEADER + PAD), notes, id);
            branch_x += bw + lanes + PAD;
        }
    }
}

fn count_states(states: &[bundles::workflow::State]) -> (usize, usize) {
    states.iter().fold((0, 0), |(all, tasks), s| {
        let (a, t) = s
            .branches
            .iter()
            .map(|b| count_states(b))
            .fold((0, 0), |x, y| (x.0 + y.0, x.1 + y.1));
        (all + 1 + a, tasks + usize::from(s.function.is_some()) + t)
    })
}

/// A state machine's graph: its states top to bottom in the order a run meets them, the
/// function or service call of each task, choices and catches as labelled arrows (on the right
/// when they skip ahead or go back), and the branches of `Parallel` and `Map` states side by side
/// inside them.
pub fn state_machine(machine: &bundles::workflow::StateMachine, notes: &FunctionNotes) -> String {
    let (widest, lanes, height) = list_size(&machine.states);
    let top = 44;
    let width = (widest + lanes + 20).max(360);
    let height = top + height.max(STATE_H) + 16;
    let (states, functions) = count_states(&machine.states);
    // CloudFormation's logical ids are alphanumeric; keep only that in element ids (a space
    // would split aria-labelledby's list).
    let id: String = format!(
        "sm-{}",
        machine
            .logical_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
    );
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-labelledby="{id}-title {id}-desc" class="state-machine" data-machine="{name}">"#,
        name = escape(&machine.logical_id)
    );
    let _ = write!(
        svg,
        r#"<title id="{id}-title">State machine {}</title><desc id="{id}-desc">{states} states, {functions} of them invoking Lambda functions.{}</desc>"#,
        escape(&machine.logical_id),
        machine
            .note
            .as_deref()
            .map(|n| format!(" Not all of it is drawn: {}.", escape(n)))
            .unwrap_or_default()
    );
    let _ = write!(
        svg,
        r##"<defs><marker id="{id}-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#5b6475"/></marker></defs>"##
    );
    let _ = write!(
        svg,
        r##"<text x="10" y="18" font-size="15" font-weight="700" fill="#1d2330" font-family="sans-serif">{}</text>"##,
        escape(&machine.logical_id)
    );
    let Some(first) = machine.states.first() else {
        let _ = write!(
            svg,
            r##"<text x="10" y="{}" font-size="13" fill="#5b6475" font-family="sans-serif">Not drawn: {}.</text>"##,
            top + 20,
            escape(machine.note.as_deref().unwrap_or("no states"))
        );
        svg.push_str("</svg>");
        return svg;
    };
    let first_w = state_size(first).0;
    let first_x = 10 + (widest - first_w) / 2 + first_w / 2;
    let _ = write!(
        svg,
        r##"<circle cx="{first_x}" cy="28" r="5" fill="#1d2330"/><path d="M {first_x} 33 L {first_x} {top}" stroke="#1d2330" stroke-width="1.5" marker-end="url(#{id}-arrow)"/>"##
    );
    draw_states(&mut svg, &machine.states, (10, top), notes, &id);
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
    fn state_machine_names_cannot_inject_markup() {
        let template = serde_json::json!({"Resources": {
            "Fn": {"Type": "AWS::Lambda::Function"},
            "M</svg><script>": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {
                "DefinitionString": {"Fn::Sub": r#"{"StartAt":"<img src=x onerror=alert(1)>","States":{
                    "<img src=x onerror=alert(1)>":{"Type":"Choice","Choices":[
                        {"Variable":"$.a\"><script>","StringEquals":"</text>","Next":"Run & done"}],
                        "Default":"<img src=x onerror=alert(1)>"},
                    "Run & done":{"Type":"Task","Resource":"${Fn.Arn}","End":true}}}"#}}}
        }});
        let machine = &bundles::workflow::state_machines(&template)[0];
        let notes = FunctionNotes::from([("Fn".to_owned(), "f<b>, compiled".to_owned())]);
        let svg = state_machine(machine, &notes);
        for bad in ["<script", "<img", "<b>", "& done"] {
            assert!(!svg.contains(bad), "{bad} in {svg}");
        }
        assert!(svg.contains("Run &amp; done"));
        assert!(
            svg.contains("$.a&quot;&gt;&lt;script&gt; == &lt;/text&gt;"),
            "{svg}"
        );
        assert!(svg.contains(r#"aria-labelledby="sm-Msvgscript-title sm-Msvgscript-desc""#));
        assert!(svg.contains("invokes Fn (f&lt;b&gt;, compiled)"));
        assert_eq!(svg.matches(r#"class="state""#).count(), 2);
        // The loop back to the first state is drawn as one arrow, not followed.
        assert!(svg.contains("default"), "{svg}");
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
