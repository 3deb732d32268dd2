//! The test AWS account that scripts/test installs answers like AWS: STS says who we are.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a broken fixture should fail the test loudly"
)]

use tests::moto::Moto;

#[test]
fn moto_answers_sts_get_caller_identity_with_the_default_account() {
    let moto = Moto::start();
    let (status, body) = moto
        .aws_query("sts", "Action=GetCallerIdentity&Version=2011-06-15")
        .expect("moto answered");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<Account>123456789012</Account>"), "{body}");
}
