//! The license agent's lifecycle with a controllable clock: the grace ladder when the portal is
//! unreachable, expiry and renewal, revocation, and the attacks on check-ins (a replayed status,
//! an old status, a skewed clock, a forged status, a lower-`seq` license). The portal's side is
//! played by the vendor's own keys signing statuses, so every moment can be chosen.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use license::checkin::fresh_nonce;
use license::claims::Claims;
use license::status::{LicenseState, StatusClaims, sign_status};
use license::{Agent, Denial, LicenseRequest, Memory, SigningKey, State, UnixTime};
use tests::{Vendor, now};

const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

/// Claims with `extra` JSON fields (policy, times) on top of a plain license.
fn claims(vendor: &Vendor, extra: &str, issued: UnixTime) -> Claims {
    let json = format!(
        r#"{{"sub":"globex","aud":"serverless-blog","exp":1830000000,"features":["posts"]{extra}}}"#
    );
    LicenseRequest::from_json(json.as_bytes())
        .unwrap()
        .into_claims(vendor.keyset.issuer.as_ref(), issued)
        .unwrap()
}

/// The portal's answer: a status signed by the vendor's license key.
fn status(vendor: &Vendor, c: &Claims, state: LicenseState, time: UnixTime, nonce: &str) -> String {
    let claims = StatusClaims {
        iss: c.iss.clone(),
        jti: c.jti.clone(),
        state,
        seq: c.seq,
        time,
        nonce: nonce.into(),
    };
    sign_status(&claims, &vendor.kid, &vendor.signer).unwrap()
}

/// A check-in at `at` that the portal answers with `state`.
fn check_in(agent: &Agent, vendor: &Vendor, c: &Claims, state: LicenseState, at: UnixTime) {
    let nonce = fresh_nonce().unwrap();
    agent
        .accept(&status(vendor, c, state, at, &nonce), None, &nonce, at)
        .unwrap();
}

fn state_at(agent: &Agent, at: UnixTime) -> State {
    agent.lifecycle(at).state
}

#[test]
fn unreachable_portal_walks_the_grace_ladder_of_the_default_policy() {
    // The default policy: a check-in a day, seven days of grace after a missed one.
    let vendor = Vendor::new();
    let t0 = now();
    let c = claims(&vendor, "", t0);
    let agent = Agent::new(vendor.trusted(), &vendor.sign(&c), Memory::default(), t0).unwrap();
    check_in(&agent, &vendor, &c, LicenseState::Active, t0);

    // One hour unreachable: nothing missed yet.
    assert_eq!(state_at(&agent, t0.plus(HOUR)), State::Active);
    assert!(agent.check("posts", t0.plus(HOUR)).is_ok());
    // Three days: the daily check-in was missed, entitled work goes on with a deadline.
    let grace = agent.lifecycle(t0.plus(3 * DAY));
    assert_eq!(grace.state, State::Grace);
    assert_eq!(grace.until, Some(t0.plus(DAY + 7 * DAY)));
    assert!(agent.check("posts", t0.plus(3 * DAY)).is_ok());
    // The last second of grace still works; the deadline itself does not.
    assert!(agent.check("posts", t0.plus(8 * DAY - 1)).is_ok());
    assert!(matches!(
        agent.check("posts", t0.plus(8 * DAY)),
        Err(Denial::Restricted { .. })
    ));
    // Fifteen days: RESTRICTED, with the reason.
    assert_eq!(state_at(&agent, t0.plus(15 * DAY)), State::Restricted);
    let denial = agent.check("posts", t0.plus(15 * DAY)).unwrap_err();
    assert!(
        denial.to_string().contains("no successful check-in"),
        "{denial}"
    );
    // The portal comes back: one good check-in and the agent is ACTIVE again.
    check_in(&agent, &vendor, &c, LicenseState::Active, t0.plus(15 * DAY));
    assert_eq!(state_at(&agent, t0.plus(15 * DAY)), State::Active);
    assert!(agent.check("posts", t0.plus(15 * DAY)).is_ok());
}

#[test]
fn unreachable_portal_walks_the_ladder_each_policy_sets() {
    let vendor = Vendor::new();
    let t0 = now();
    // (policy, state after 1 hour, 3 days, 15 days)
    let cases = [
        // Hourly check-ins, two days of grace: strict.
        (
            r#","checkin_interval":1800,"offline_grace":172800"#,
            [State::Grace, State::Restricted, State::Restricted],
        ),
        // Weekly check-ins, thirty days of grace: lenient.
        (
            r#","checkin_interval":604800,"offline_grace":2592000"#,
            [State::Active, State::Active, State::Grace],
        ),
        // Air-gapped: no check-ins required at all.
        (
            r#","checkin_required":false"#,
            [State::Active, State::Active, State::Active],
        ),
    ];
    for (policy, expected) in cases {
        let c = claims(&vendor, policy, t0);
        let agent = Agent::new(vendor.trusted(), &vendor.sign(&c), Memory::default(), t0).unwrap();
        let got = [HOUR, 3 * DAY, 15 * DAY].map(|d| state_at(&agent, t0.plus(d)));
        assert_eq!(got, expected, "policy {policy}");
    }
}

#[test]
fn an_agent_that_never_reaches_the_portal_is_not_pending_for_ever() {
    // No check-in ever: the offline clock starts when the agent first ran, and survives a
    // restart through the agent's memory.
    let vendor = Vendor::new();
    let t0 = now();
    let c = claims(&vendor, "", t0);
    let armored = vendor.sign(&c);
    let first = Agent::new(vendor.trusted(), &armored, Memory::default(), t0).unwrap();
    let memory = first.memory();
    let restarted = Agent::new(vendor.trusted(), &armored, memory, t0.plus(10 * DAY)).unwrap();
    assert_eq!(state_at(&restarted, t0.plus(10 * DAY)), State::Restricted);
}

#[test]
fn term_end_grace_then_expiry_then_renewal_without_restart() {
    let vendor = Vendor::new();
    let t0 = now();
    // The contract ends in 10 days; the license stays valid 5 days more (grace after the term).
    let json = format!(
        r#"{{"sub":"globex","aud":"serverless-blog","features":["posts"],"checkin_required":false,
            "term_end":{},"exp":{}}}"#,
        t0.plus(10 * DAY).as_secs(),
        t0.plus(15 * DAY).as_secs()
    );
    let c = LicenseRequest::from_json(json.as_bytes())
        .unwrap()
        .into_claims(vendor.keyset.issuer.as_ref(), t0)
        .unwrap();
    let agent = Agent::new(vendor.trusted(), &vendor.sign(&c), Memory::default(), t0).unwrap();
    // The 30-day lead is capped at a quarter of the 10-day term: quiet on day 1, announced in
    // the last two and a half days.
    assert!(agent.lifecycle(t0.plus(DAY)).warning.is_none());
    let warned = agent.lifecycle(t0.plus(8 * DAY));
    assert_eq!(warned.state, State::Active);
    assert!(warned.warning.is_some(), "the term's end is announced");
    assert_eq!(state_at(&agent, t0.plus(12 * DAY)), State::Grace);
    assert!(agent.check("posts", t0.plus(12 * DAY)).is_ok());
    let expired_at = t0.plus(16 * DAY);
    assert_eq!(state_at(&agent, expired_at), State::Restricted);
    assert!(matches!(
        agent.check("posts", expired_at),
        Err(Denial::Expired { .. })
    ));
    // An expired license still loads after a restart (RESTRICTED, waiting for the renewal).
    let restarted = Agent::new(
        vendor.trusted(),
        &vendor.sign(&c),
        agent.memory(),
        expired_at,
    )
    .unwrap();
    assert_eq!(state_at(&restarted, expired_at), State::Restricted);

    // The renewal arrives with a check-in: the same license, seq 2, a year more.
    let mut renewed = c.clone();
    renewed.seq = 2;
    renewed.term.end = t0.plus(400 * DAY);
    renewed.exp = t0.plus(400 * DAY);
    let nonce = fresh_nonce().unwrap();
    let accepted = restarted
        .accept(
            &status(&vendor, &renewed, LicenseState::Active, expired_at, &nonce),
            Some(&vendor.sign(&renewed)),
            &nonce,
            expired_at,
        )
        .unwrap();
    assert!(accepted.renewed);
    assert_eq!(restarted.license().claims().seq, 2);
    assert_eq!(state_at(&restarted, expired_at), State::Active);
    assert!(restarted.check("posts", expired_at).is_ok());
}

#[test]
fn revocation_is_denied_from_the_next_check_in_on() {
    let vendor = Vendor::new();
    let t0 = now();
    let c = claims(&vendor, "", t0);
    let agent = Agent::new(vendor.trusted(), &vendor.sign(&c), Memory::default(), t0).unwrap();
    check_in(&agent, &vendor, &c, LicenseState::Active, t0);
    assert!(agent.check("posts", t0.plus(60)).is_ok());
    check_in(&agent, &vendor, &c, LicenseState::Revoked, t0.plus(120));
    assert_eq!(agent.check("posts", t0.plus(121)), Err(Denial::Revoked));
    assert_eq!(state_at(&agent, t0.plus(121)), State::Restricted);
    // A restart remembers it.
    let restarted = Agent::new(
        vendor.trusted(),
        &vendor.sign(&c),
        agent.memory(),
        t0.plus(200),
    )
    .unwrap();
    assert_eq!(restarted.check("posts", t0.plus(200)), Err(Denial::Revoked));
    // Suspension is lifted by the next status that says active.
    check_in(
        &restarted,
        &vendor,
        &c,
        LicenseState::Suspended,
        t0.plus(300),
    );
    assert_eq!(
        restarted.check("posts", t0.plus(301)),
        Err(Denial::Suspended)
    );
    check_in(&restarted, &vendor, &c, LicenseState::Active, t0.plus(400));
    assert!(restarted.check("posts", t0.plus(401)).is_ok());
}

#[test]
fn replayed_status_is_refused_and_reported() {
    let vendor = Vendor::new();
    let t0 = now();
    let c = claims(&vendor, "", t0);
    let agent = Agent::new(vendor.trusted(), &vendor.sign(&c), Memory::default(), t0).unwrap();
    // An "active" answer recorded earlier is played back to the next check-in.
    let old_nonce = fresh_nonce().unwrap();
    let recorded = status(&vendor, &c, LicenseState::Active, t0, &old_nonce);
    agent.accept(&recorded, None, &old_nonce, t0).unwrap();
    let revoked_at = t0.plus(DAY);
    let fresh = fresh_nonce().unwrap();
    let report = agent
        .accept(&recorded, None, &fresh, revoked_at)
        .unwrap_err();
    assert_eq!(report.code, "replayed_status");
    // It is not a successful check-in: the offline clock keeps running from t0.
    assert_eq!(agent.memory().last_checkin, Some(t0));
    assert_eq!(
        agent.memory().reports.len(),
        1,
        "kept for the next check-in"
    );
    agent.reports_delivered(1);
    assert!(agent.memory().reports.is_empty());
}

#[test]
fn old_status_with_a_fresh_nonce_is_refused() {
    // Only the portal's key can sign a fresh nonce; an older time than one already accepted
    // still means the answer was held back and released later.
    let vendor = Vendor::new();
    let t0 = now();
    let c = claims(&vendor, "", t0);
    let agent = Agent::new(vendor.trusted(), &vendor.sign(&c), Memory::default(), t0).unwrap();
    check_in(&agent, &vendor, &c, LicenseState::Revoked, t0.plus(240));
    let nonce = fresh_nonce().unwrap();
    let held_back = status(&vendor, &c, LicenseState::Active, t0, &nonce);
    let report = agent
        .accept(&held_back, None, &nonce, t0.plus(250))
        .unwrap_err();
    assert_eq!(report.code, "old_status");
    assert_eq!(agent.check("posts", t0.plus(250)), Err(Denial::Revoked));
}

#[test]
fn clock_more_than_five_minutes_from_the_portal_is_tampering() {
    let vendor = Vendor::new();
    let t0 = now();
    let c = claims(&vendor, "", t0);
    let agent = Agent::new(vendor.trusted(), &vendor.sign(&c), Memory::default(), t0).unwrap();
    for skew in [301_i64, -301] {
        let nonce = fresh_nonce().unwrap();
        let portal_time = if skew > 0 {
            t0.plus(301)
        } else {
            t0.minus(301)
        };
        let report = agent
            .accept(
                &status(&vendor, &c, LicenseState::Active, portal_time, &nonce),
                None,
                &nonce,
                t0,
            )
            .unwrap_err();
        assert_eq!(report.code, "clock_skew", "skew {skew}");
    }
    // Five minutes exactly is within tolerance.
    let nonce = fresh_nonce().unwrap();
    agent
        .accept(
            &status(&vendor, &c, LicenseState::Active, t0.plus(300), &nonce),
            None,
            &nonce,
            t0,
        )
        .unwrap();
}

#[test]
fn forged_status_is_refused() {
    let vendor = Vendor::new();
    let t0 = now();
    let c = claims(&vendor, "", t0);
    let agent = Agent::new(vendor.trusted(), &vendor.sign(&c), Memory::default(), t0).unwrap();
    check_in(&agent, &vendor, &c, LicenseState::Revoked, t0);
    // Someone between the agent and the portal answers "active" with a key of their own.
    let forger = SigningKey::generate().unwrap();
    let nonce = fresh_nonce().unwrap();
    let claims = StatusClaims {
        iss: c.iss.clone(),
        jti: c.jti.clone(),
        state: LicenseState::Active,
        seq: c.seq,
        time: t0.plus(10),
        nonce: nonce.clone(),
    };
    let forged = sign_status(&claims, &vendor.kid, &forger).unwrap();
    let report = agent
        .accept(&forged, None, &nonce, t0.plus(10))
        .unwrap_err();
    assert_eq!(report.code, "bad_status");
    assert_eq!(agent.check("posts", t0.plus(10)), Err(Denial::Revoked));
}

#[test]
fn lower_seq_license_is_refused() {
    let vendor = Vendor::new();
    let t0 = now();
    let c1 = claims(&vendor, "", t0);
    let mut c3 = c1.clone();
    c3.seq = 3;
    let agent = Agent::new(vendor.trusted(), &vendor.sign(&c3), Memory::default(), t0).unwrap();
    // Put back from a file: refused, the newer revision stays.
    assert!(matches!(
        agent.offer_license(&vendor.sign(&c1), t0),
        Err(license::Error::Rollback {
            seq: 1,
            seen: 3,
            ..
        })
    ));
    assert_eq!(agent.license().claims().seq, 3);
    // Sent with a check-in: refused and reported.
    let nonce = fresh_nonce().unwrap();
    let report = agent
        .accept(
            &status(&vendor, &c3, LicenseState::Active, t0, &nonce),
            Some(&vendor.sign(&c1)),
            &nonce,
            t0,
        )
        .unwrap_err();
    assert_eq!(report.code, "license_rollback");
    // A restart with the old file and the agent's memory: refused.
    assert!(matches!(
        Agent::new(vendor.trusted(), &vendor.sign(&c1), agent.memory(), t0),
        Err(license::Error::Rollback { .. })
    ));
    // A status naming an older revision than the agent has seen: reported.
    let nonce = fresh_nonce().unwrap();
    let report = agent
        .accept(
            &status(&vendor, &c1, LicenseState::Active, t0, &nonce),
            None,
            &nonce,
            t0,
        )
        .unwrap_err();
    assert_eq!(report.code, "license_rollback");
}

#[test]
fn a_status_about_another_license_is_refused() {
    let vendor = Vendor::new();
    let t0 = now();
    let c = claims(&vendor, "", t0);
    let other = claims(&vendor, "", t0);
    let agent = Agent::new(vendor.trusted(), &vendor.sign(&c), Memory::default(), t0).unwrap();
    let nonce = fresh_nonce().unwrap();
    let report = agent
        .accept(
            &status(&vendor, &other, LicenseState::Active, t0, &nonce),
            None,
            &nonce,
            t0,
        )
        .unwrap_err();
    assert_eq!(report.code, "bad_status");
}

#[test]
fn clock_set_back_a_year_gives_no_extension() {
    // A license issued two years ago, so a clock a year back is still inside its term.
    let t0 = now();
    let vendor = Vendor::with_keys_from(1, t0.minus(3 * 365 * DAY));
    let c = claims(&vendor, "", t0.minus(2 * 365 * DAY));
    let agent = Agent::new(vendor.trusted(), &vendor.sign(&c), Memory::default(), t0).unwrap();
    check_in(&agent, &vendor, &c, LicenseState::Active, t0);
    // The portal is unreachable for 15 days; the agent's daily rounds see the time pass, and the
    // default policy (a day, then seven of grace) has run out.
    for day in 1..=15 {
        agent.observe(t0.plus(day * DAY));
    }
    let later = t0.plus(15 * DAY);
    assert_eq!(state_at(&agent, later), State::Restricted);
    // The customer sets the clock back a year: still RESTRICTED, and nothing is allowed.
    let back = later.minus(365 * DAY);
    assert_eq!(state_at(&agent, back), State::Restricted);
    assert!(agent.check("posts", back).is_err());
    // Nor after a restart from what the agent saved.
    let restarted = Agent::new(vendor.trusted(), &vendor.sign(&c), agent.memory(), back).unwrap();
    assert_eq!(state_at(&restarted, back), State::Restricted);
    assert!(restarted.check("posts", back).is_err());
    // Without any round recorded, time still never runs back behind the last signed status:
    // a clock a year back reads as that status's time.
    let fresh = Agent::new(vendor.trusted(), &vendor.sign(&c), Memory::default(), t0).unwrap();
    check_in(&fresh, &vendor, &c, LicenseState::Active, t0);
    let lifecycle = fresh.lifecycle(t0.minus(365 * DAY));
    assert_eq!(lifecycle, fresh.lifecycle(t0), "{lifecycle:?}");
}

#[test]
fn deleting_the_agents_state_buys_no_new_grace_period() {
    // A license signed thirty days ago under the default policy (a check-in a day, seven days of
    // grace). The customer deletes the agent's state and keeps the portal away: the agent starts
    // from nothing, but its offline clock runs from when the license was signed, so it is
    // RESTRICTED at once rather than granted eight fresh days.
    let t0 = now();
    let vendor = Vendor::with_keys_from(1, t0.minus(60 * DAY));
    let c = claims(&vendor, "", t0.minus(30 * DAY));
    let agent = Agent::new(vendor.trusted(), &vendor.sign(&c), Memory::default(), t0).unwrap();
    assert_eq!(state_at(&agent, t0), State::Restricted);
    assert!(matches!(
        agent.check("posts", t0),
        Err(Denial::Restricted { .. })
    ));
    // Until the next signed status: one check-in and work goes on.
    check_in(&agent, &vendor, &c, LicenseState::Active, t0);
    assert_eq!(state_at(&agent, t0), State::Active);
    assert!(agent.check("posts", t0).is_ok());

    // A license signed an hour ago keeps the grace it was issued with, from its signing time.
    let fresh = claims(&vendor, "", t0.minus(HOUR));
    let agent = Agent::new(
        vendor.trusted(),
        &vendor.sign(&fresh),
        Memory::default(),
        t0,
    )
    .unwrap();
    assert_eq!(state_at(&agent, t0), State::Active);
    let grace = agent.lifecycle(t0.plus(3 * DAY));
    assert_eq!(grace.state, State::Grace);
    assert_eq!(grace.until, Some(t0.minus(HOUR).plus(8 * DAY)));
}

/// A license and the agents of two Lambda environments of one installation, started at `t0`.
fn two_environments(vendor: &Vendor, t0: UnixTime) -> (Claims, Agent, Agent) {
    let c = claims(vendor, "", t0);
    let armored = vendor.sign(&c);
    let start = || Agent::new(vendor.trusted(), &armored, Memory::default(), t0).unwrap();
    let (a, b) = (start(), start());
    (c, a, b)
}

#[test]
fn a_revocation_one_environment_saw_applies_in_another_that_merges_its_memory() {
    // Two Lambda environments of one installation share their memory through a table: each
    // merges what is stored with its own before writing it back.
    let vendor = Vendor::new();
    let t0 = now();
    let (c, a, b) = two_environments(&vendor, t0);
    check_in(&a, &vendor, &c, LicenseState::Active, t0);
    check_in(&b, &vendor, &c, LicenseState::Active, t0.plus(HOUR));
    // A hears of the revocation; B does not reach the portal.
    check_in(&a, &vendor, &c, LicenseState::Revoked, t0.plus(2 * HOUR));
    b.absorb(&a.memory());
    assert!(matches!(
        b.check("posts", t0.plus(2 * HOUR)),
        Err(Denial::Revoked)
    ));
    // An older memory merged in never undoes the newer status, in either order.
    let mut stale = Memory::default();
    stale.merge(&b.memory());
    stale.portal_state = Some(LicenseState::Active);
    stale.status_time = Some(t0);
    b.absorb(&stale);
    assert!(matches!(
        b.check("posts", t0.plus(2 * HOUR)),
        Err(Denial::Revoked)
    ));
    let mut merged = stale.clone();
    merged.merge(&a.memory());
    assert_eq!(merged.portal_state, Some(LicenseState::Revoked));
    assert_eq!(merged.status_time, Some(t0.plus(2 * HOUR)));
    assert_eq!(
        merged.started_at,
        a.memory().started_at.min(stale.started_at)
    );
}

#[test]
fn tamper_reports_carried_home_by_one_environment_are_not_sent_again_by_another() {
    let vendor = Vendor::new();
    let t0 = now();
    let (_, a, b) = two_environments(&vendor, t0);
    a.report(t0, "bad_status", "one".into());
    b.absorb(&a.memory());
    b.report(t0.plus(1), "clock_skew", "two".into());
    // B's check-in carries both home; A, merging B's memory, keeps neither.
    assert_eq!(b.memory().reports.len(), 2);
    b.reports_delivered(2);
    a.absorb(&b.memory());
    assert!(a.memory().reports.is_empty(), "{:?}", a.memory().reports);
    // A report A sees afterwards is still kept.
    a.report(t0.plus(2), "old_status", "three".into());
    a.absorb(&b.memory());
    assert_eq!(a.memory().reports.len(), 1);
}

#[test]
fn edited_state_gets_no_more_than_deleted_state() {
    // The customer holds the agent's state (a file on their host, an item in their table) and
    // edits it. A license signed thirty days ago, checked in daily, revoked yesterday.
    let t0 = now();
    let vendor = Vendor::with_keys_from(1, t0.minus(60 * DAY));
    let c = claims(&vendor, "", t0.minus(30 * DAY));
    let armored = vendor.sign(&c);
    let agent = Agent::new(
        vendor.trusted(),
        &armored,
        Memory::default(),
        t0.minus(20 * DAY),
    )
    .unwrap();
    check_in(
        &agent,
        &vendor,
        &c,
        LicenseState::Active,
        t0.minus(20 * DAY),
    );
    let before_revocation = agent.memory();
    check_in(&agent, &vendor, &c, LicenseState::Revoked, t0.minus(DAY));
    let revoked = agent.memory();
    let restart = |memory: Memory| Agent::new(vendor.trusted(), &armored, memory, t0).unwrap();

    // "Active" written over the portal's answer: the signed status kept with it says revoked.
    let mut edited = revoked.clone();
    edited.portal_state = Some(LicenseState::Active);
    assert!(matches!(
        restart(edited).check("posts", t0),
        Err(Denial::Revoked)
    ));

    // The signed status removed and every time moved to now: nothing vouches for a check-in,
    // and the offline clock runs from the license's signing time.
    let mut edited = revoked.clone();
    edited.status = None;
    edited.portal_state = Some(LicenseState::Active);
    edited.status_time = Some(t0);
    edited.last_checkin = Some(t0);
    edited.started_at = Some(t0);
    let agent = restart(edited);
    assert_eq!(state_at(&agent, t0), State::Restricted);
    assert!(matches!(
        agent.check("posts", t0),
        Err(Denial::Restricted { .. })
    ));

    // An older genuine answer played back: its time is its time, twenty days ago, long past
    // the grace it gave.
    let agent = restart(before_revocation);
    assert_eq!(state_at(&agent, t0), State::Restricted);
}
