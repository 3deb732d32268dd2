//! Entitlement evaluation on a verified license: the answers the agent, the installer and the
//! portal all rely on.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a broken fixture should fail the test loudly"
)]

use license::claims::Period;
use license::entitlements::period_bounds;
use license::{Denial, ReleaseRef, State, UnixTime, VerifiedLicense};
use tests::{Vendor, at_now, now};

fn verified(edit: impl FnOnce(&mut license::Claims)) -> VerifiedLicense {
    let vendor = Vendor::new();
    let mut claims = vendor.claims();
    edit(&mut claims);
    vendor
        .trusted()
        .verify_license(&vendor.sign(&claims), &at_now())
        .unwrap()
}

#[test]
fn features_are_allowed_only_when_listed_and_inside_the_validity_window() {
    let license = verified(|_| {});
    assert_eq!(license.is_feature_allowed("posts", now()), Ok(()));
    assert_eq!(
        license.is_feature_allowed("enterprise-sso", now()),
        Err(Denial::NotEntitled {
            name: "enterprise-sso".into()
        })
    );
    let exp = license.claims().exp;
    assert_eq!(
        license.is_feature_allowed("posts", exp),
        Err(Denial::Expired { exp })
    );
    let nbf = license.claims().nbf;
    assert_eq!(
        license.is_feature_allowed("posts", nbf.minus(1)),
        Err(Denial::NotYetValid { nbf })
    );
}

#[test]
fn limits_report_what_is_left_and_refuse_beyond_overage() {
    // seats: max 50, overage 10
    let license = verified(|_| {});
    let status = license.limit("seats", 20, now()).unwrap();
    assert_eq!(
        (
            status.remaining,
            status.overage_remaining,
            status.in_overage
        ),
        (30, 10, false)
    );
    let status = license.limit("seats", 55, now()).unwrap();
    assert_eq!(
        (
            status.remaining,
            status.overage_remaining,
            status.in_overage
        ),
        (0, 5, true)
    );
    assert!(license.limit("seats", 60, now()).is_ok());
    assert_eq!(
        license.limit("seats", 61, now()),
        Err(Denial::LimitExceeded {
            name: "seats".into(),
            allowed: 60,
            in_use: 61
        })
    );
    assert!(matches!(
        license.limit("tenants", 1, now()),
        Err(Denial::NotEntitled { .. })
    ));
}

#[test]
fn quotas_reset_on_calendar_boundaries() {
    // api-calls: 100000 per month, no overage
    let license = verified(|_| {});
    let status = license.quota("api-calls", 99_000, now()).unwrap();
    assert_eq!(status.remaining, 1_000);
    assert_eq!(status.period_start, UnixTime::parse("2026-11-01").unwrap());
    assert_eq!(status.period_end, UnixTime::parse("2026-12-01").unwrap());
    let denial = license.quota("api-calls", 100_001, now()).unwrap_err();
    assert!(
        matches!(denial, Denial::QuotaExhausted { period_end, .. } if period_end == status.period_end)
    );
}

#[test]
fn period_bounds_cover_hours_days_months_and_years() {
    let t = UnixTime::parse("2024-12-31T23:59:59Z").unwrap();
    let at = |s| UnixTime::parse(s).unwrap();
    assert_eq!(
        period_bounds(Period::Hour, t),
        (at("2024-12-31T23:00:00Z"), at("2025-01-01"))
    );
    assert_eq!(
        period_bounds(Period::Day, t),
        (at("2024-12-31"), at("2025-01-01"))
    );
    assert_eq!(
        period_bounds(Period::Month, t),
        (at("2024-12-01"), at("2025-01-01"))
    );
    assert_eq!(
        period_bounds(Period::Year, t),
        (at("2024-01-01"), at("2025-01-01"))
    );
    let leap = at("2024-02-29T12:00:00Z");
    assert_eq!(
        period_bounds(Period::Month, leap),
        (at("2024-02-01"), at("2024-03-01"))
    );
}

#[test]
fn the_distribution_window_decides_what_may_be_installed() {
    // versions >=1.0.0, <2.0.0 on channel stable
    let license = verified(|c| c.distribution.published_before = Some(now()));
    let v = |s: &str| license::semver::Version::parse(s).unwrap();
    let release = |version, channel, published_at| ReleaseRef {
        app: "serverless-blog",
        version,
        channel,
        published_at,
    };
    let v1 = v("1.4.2");
    assert_eq!(
        license.may_install(&release(&v1, "stable", now().minus(1))),
        Ok(())
    );
    let v2 = v("2.0.0");
    assert!(matches!(
        license.may_install(&release(&v2, "stable", now().minus(1))),
        Err(Denial::VersionNotAllowed { .. })
    ));
    assert!(matches!(
        license.may_install(&release(&v1, "beta", now().minus(1))),
        Err(Denial::ChannelNotAllowed { .. })
    ));
    assert!(matches!(
        license.may_install(&release(&v1, "stable", now())),
        Err(Denial::PublishedTooLate { .. })
    ));
    let other_app = ReleaseRef {
        app: "other-app",
        version: &v1,
        channel: "stable",
        published_at: now().minus(1),
    };
    assert!(matches!(
        license.may_install(&other_app),
        Err(Denial::WrongApp { .. })
    ));
}

#[test]
fn placement_follows_the_account_and_region_bindings() {
    let license = verified(|_| {});
    assert_eq!(license.check_placement("123456789012", "eu-west-1"), Ok(()));
    let err = license
        .check_placement("210987654321", "eu-west-1")
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("bound to AWS accounts [\"123456789012\"], not 210987654321"),
        "{err}"
    );
    assert!(matches!(
        license.check_placement("123456789012", "us-east-1"),
        Err(Denial::RegionNotAllowed { .. })
    ));
    let anywhere = verified(|c| {
        c.bindings.aws_accounts.clear();
        c.bindings.regions.clear();
    });
    assert_eq!(
        anywhere.check_placement("210987654321", "ap-south-1"),
        Ok(())
    );
}

#[test]
fn lifecycle_moves_from_active_to_grace_to_restricted_when_check_ins_stop() {
    let license = verified(|c| {
        c.policy.checkin_interval = 3600;
        c.policy.offline_grace = 86_400;
    });
    let last = now();
    assert_eq!(
        license.lifecycle(now().plus(1800), Some(last)).state,
        State::Active
    );
    let grace = license.lifecycle(now().plus(7200), Some(last));
    assert_eq!(grace.state, State::Grace);
    assert_eq!(grace.until, Some(last.plus(3600 + 86_400)));
    let restricted = license.lifecycle(now().plus(3600 + 86_400), Some(last));
    assert_eq!(restricted.state, State::Restricted);
    assert!(restricted.reason.unwrap().contains("offline grace ended"));
    // Without check-in tracking (the installer's view) only the license's own times count.
    assert_eq!(
        license.lifecycle(now().plus(10 * 86_400), None).state,
        State::Active
    );
}

#[test]
fn air_gapped_licenses_never_need_a_check_in() {
    let license = verified(|c| c.policy.checkin_required = false);
    assert_eq!(
        license
            .lifecycle(now().plus(300 * 86_400), Some(now()))
            .state,
        State::Active
    );
}

#[test]
fn after_the_term_the_license_is_in_grace_until_exp_then_restricted() {
    let license = verified(|c| c.term.end = now().plus(86_400));
    let exp = license.claims().exp;
    let lc = license.lifecycle(now().plus(2 * 86_400), None);
    assert_eq!((lc.state, lc.until), (State::Grace, Some(exp)));
    assert!(lc.reason.unwrap().contains("contract term ended"));
    assert_eq!(license.lifecycle(exp, None).state, State::Restricted);
    // Features keep working during the grace: it is the agent's warning, not an outage.
    assert_eq!(
        license.is_feature_allowed("posts", now().plus(2 * 86_400)),
        Ok(())
    );
}

#[test]
fn the_agent_warns_before_the_term_ends() {
    let license = verified(|c| {
        c.term.start = now().minus(355 * 86_400);
        c.term.end = now().plus(10 * 86_400);
        c.policy.expiry_warning = 30 * 86_400;
    });
    let lc = license.lifecycle(now(), None);
    assert_eq!(lc.state, State::Active);
    assert!(lc.warning.unwrap().contains("contract term ends"));
}

/// A 14-day trial under the default 30-day warning lead: no warning on its first day, a warning
/// in its last quarter (the lead is capped at a quarter of the term).
#[test]
fn a_trial_shorter_than_the_warning_lead_does_not_warn_from_its_first_day() {
    let start = now();
    let license = verified(|c| {
        c.term.start = start;
        c.term.end = start.plus(14 * 86_400);
        c.exp = c.term.end;
        c.policy.expiry_warning = 30 * 86_400;
    });
    assert_eq!(license.lifecycle(start.plus(3600), None).warning, None);
    assert_eq!(
        license.lifecycle(start.plus(10 * 86_400), None).warning,
        None
    );
    let late = license.lifecycle(start.plus(11 * 86_400), None);
    assert!(late.warning.unwrap().contains("contract term ends"));
}
