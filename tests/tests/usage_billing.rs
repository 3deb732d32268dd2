//! Usage a vendor can bill from: `GET /api/v1/usage/export` through `vendor-portal usage
//! export`, per hour and per day, in CSV and JSON; overage computed within each quota's own
//! period (usage before the exported range counts toward it), so that hourly rows add up to the
//! daily ones. On SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use serde_json::Value;
use tests::agent::{AgentWorld, SignedAgent};

fn rfc3339(secs: u64) -> String {
    jiff::Timestamp::from_second(i64::try_from(secs).unwrap())
        .unwrap()
        .to_string()
}

fn export_json(world: &AgentWorld, args: &[&str]) -> Value {
    let mut all = vec!["usage", "export", "--format", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&world.vendor(&all)).unwrap()
}

/// (start, quantity, included, overage) of each row.
fn cells(export: &Value) -> Vec<(String, u64, u64, u64)> {
    export["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["start"].as_str().unwrap().to_owned(),
                r["quantity"].as_u64().unwrap(),
                r["included"].as_u64().unwrap(),
                r["overage"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn overage_is_billed_once_within_each_quota_period(postgres: bool) {
    let world = AgentWorld::new(postgres, &[]);
    let (file, _) = world.metered_license(60, r#"{"amount": 100, "period": "day"}"#);
    let mut agent = SignedAgent::activate_license(&world, &file, "shop");
    let now = license::UnixTime::now().as_secs();
    let today = now - now % 86_400;
    let yesterday = today - 86_400;
    // Yesterday: 60, 70 (30 over the daily 100), 20 (all over); today: 50 (a new period).
    for (hour, quantity) in [
        (yesterday + 10 * 3600, 60),
        (yesterday + 11 * 3600, 70),
        (yesterday + 12 * 3600, 20),
        (today, 50),
    ] {
        agent.hour = hour;
        let (status, answer) = agent.send(&[quantity]);
        assert_eq!(status, 200, "{answer}");
    }
    let from = rfc3339(yesterday);

    let hourly = export_json(&world, &["--granularity", "hour", "--from", &from]);
    assert_eq!(
        cells(&hourly),
        vec![
            (rfc3339(yesterday + 10 * 3600), 60, 60, 0),
            (rfc3339(yesterday + 11 * 3600), 70, 40, 30),
            (rfc3339(yesterday + 12 * 3600), 20, 0, 20),
            (rfc3339(today), 50, 50, 0),
        ]
    );
    let row = &hourly["rows"][1];
    assert_eq!(row["customer"], "globex");
    assert_eq!(row["plan"], "metered");
    assert_eq!(row["quota"], 100);
    assert_eq!(row["quota_period"], "day");
    assert_eq!(
        row["id"].as_str().unwrap(),
        format!(
            "{}:api-calls:hour:{}",
            row["license"].as_str().unwrap(),
            yesterday + 11 * 3600
        )
    );

    let daily = export_json(&world, &["--granularity", "day", "--from", &from]);
    assert_eq!(
        cells(&daily),
        vec![
            (rfc3339(yesterday), 150, 100, 50),
            (rfc3339(today), 50, 50, 0)
        ]
    );

    // A range starting mid-period still counts the usage before it toward the quota.
    let later = export_json(
        &world,
        &[
            "--granularity",
            "hour",
            "--from",
            &rfc3339(yesterday + 11 * 3600),
        ],
    );
    assert_eq!(
        cells(&later)[0],
        (rfc3339(yesterday + 11 * 3600), 70, 40, 30)
    );

    // CSV, to a file, with the documented columns; a customer filter narrows it.
    let csv_path = world.dir.path().join("usage.csv");
    world.vendor(&[
        "usage",
        "export",
        "--granularity",
        "day",
        "--from",
        &from,
        "-o",
        csv_path.to_str().unwrap(),
    ]);
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "id,customer,license,app,plan,dimension,granularity,start,end,quantity,records,quota,quota_period,included,overage"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[1].ends_with(",150,3,100,day,100,50"), "{}", lines[1]);
    let none = world.vendor(&["usage", "export", "--customer", "initech", "--from", &from]);
    assert_eq!(none.lines().count(), 1, "{none}");

    // Bad input gets one sentence and a non-zero exit.
    let out = world.setup.client(
        &world.portal.url,
        &world.token,
        &["usage", "export", "--granularity", "week"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("hour, day or month"));
}

#[test]
fn overage_is_billed_once_within_each_quota_period_on_sqlite() {
    overage_is_billed_once_within_each_quota_period(false);
}

#[test]
fn overage_is_billed_once_within_each_quota_period_on_postgres() {
    overage_is_billed_once_within_each_quota_period(true);
}
