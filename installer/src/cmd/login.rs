//! `installer login`: verify the license against the vendor's keyset, pin the root key, load
//! the app's TUF metadata.

use anyhow::{Context as _, Result, anyhow};
use installer::deploy::{self};
use installer::home::Login;
use installer::portal::Portal;
use installer::release::{self};
use license::{Keyset, TrustPin};
use serde_json::json;

use super::{Output, print_json};

/// Logs in to the portal at `portal_url` with the license at `license_path`.
pub async fn login(
    portal_url: &str,
    license_path: &std::path::Path,
    trust_root: Option<String>,
    aws: &installer::aws::AwsOptions,
    output: Output,
) -> Result<()> {
    let text = std::fs::read_to_string(license_path)
        .with_context(|| format!("cannot read the license {}", license_path.display()))?;
    let unverified = license::verify::decode_unverified(&text)
        .with_context(|| format!("{} is not a license", license_path.display()))?;
    let (vendor, app) = vendor_and_app(&unverified)?;
    let portal = Portal::new(portal_url)?;
    let keyset_bytes = portal.keyset(&vendor).await?;
    let shown = Keyset::verify(
        &keyset_bytes,
        &TrustPin {
            root_fingerprint: None,
            min_seq: 0,
        },
    )
    .context("the vendor's keyset is not valid")?
    .root_fingerprint();
    let root = confirmed_root(&vendor, shown, trust_root)?;
    let licensed = release::verify_license(&keyset_bytes, &root, 0, &text)?;
    let claims = licensed.license.claims();
    let login = Login {
        portal: portal.base().to_owned(),
        vendor: vendor.clone(),
        app: app.clone(),
        root_fingerprint: root.clone(),
        keyset_seq: licensed.keyset.keyset().seq,
        license: text,
    };
    let repo = installer::tuf::load_over_http(
        &portal.tuf_base(&vendor, &app),
        &root,
        |n| portal.root(&vendor, &app, n),
        &login.datastore()?,
    )
    .await?;
    let releases = installer::tuf::releases(&repo)?;
    let proven = prove_account(&portal, &login.license, aws).await?;
    login.save()?;
    let summary = json!({
        "portal": login.portal,
        "vendor": vendor,
        "app": app,
        "customer": claims.sub.as_str(),
        "license": claims.jti.as_str(),
        "plan": claims.plan.as_str(),
        "expires": claims.exp.to_string(),
        "features": claims.entitlements.features,
        "aws_accounts": claims.bindings.aws_accounts,
        "regions": claims.bindings.regions,
        "root_fingerprint": root,
        "releases": releases.len(),
        "proven_account": proven.as_ref().ok().map(|p| &p.account),
        "proven_arn": proven.as_ref().ok().map(|p| &p.arn),
    });
    match output {
        Output::Json => print_json(&summary),
        Output::Text => {
            println!(
                "Logged in to {} as {} for {app} (license {}, expires {}).",
                login.portal, claims.sub, claims.jti, claims.exp
            );
            println!("Vendor {vendor}'s root key {root} is pinned.");
            match &proven {
                Ok(p) => println!(
                    "AWS account {} is proven to the portal (as {}).",
                    p.account, p.arn
                ),
                Err(why) => println!(
                    "Your AWS account is not proven yet ({why}); `installer install` proves it."
                ),
            }
            println!(
                "{} published; `installer versions` lists {}.",
                license::process::count(releases.len() as u64, "release", "releases"),
                if releases.len() == 1 { "it" } else { "them" }
            );
            Ok(())
        }
    }
}

/// Proves the account of the admin's AWS credentials to the portal for `license`: the portal's
/// refusal (another account than the license's, a trial already used there) stops the login;
/// credentials that cannot be found only leave the account unproven (`Err` with the reason),
/// for the install to prove.
async fn prove_account(
    portal: &Portal,
    license: &str,
    options: &installer::aws::AwsOptions,
) -> Result<std::result::Result<license::proof::Identity, String>> {
    let aws = match installer::aws::Aws::connect(options).await {
        Ok(aws) => aws,
        Err(e) => return Ok(Err(format!("{e:#}"))),
    };
    let Some(proof) = aws.prove(portal).await? else {
        return Ok(Err(
            "the portal is older than account proofs and takes none".to_owned(),
        ));
    };
    Ok(Ok(portal.prove(license, proof).await?))
}

/// The vendor (`iss`) and app (`aud`) a license names, before it is verified: they say which
/// keyset and which TUF repository to fetch.
fn vendor_and_app(unverified: &license::verify::UnverifiedLicense) -> Result<(String, String)> {
    let claim = |name: &str| {
        unverified
            .claims
            .get(name)
            .and_then(|v| v.as_str())
            .and_then(|v| license::claims::Slug::new(v).ok())
            .map(|v| v.as_str().to_owned())
            .ok_or_else(|| {
                anyhow!("the license names no valid {name}: it is not a Consign license")
            })
    };
    Ok((claim("iss")?, claim("aud")?))
}

/// The root key fingerprint to pin: the one given with `--trust-root` if the portal's keyset is
/// rooted in it, else the one the portal shows once the admin confirms it in a terminal.
fn confirmed_root(vendor: &str, shown: String, trust_root: Option<String>) -> Result<String> {
    if let Some(pinned) = trust_root {
        if pinned != shown {
            installer::refuse!(
                UntrustedRoot,
                "the portal's keyset is rooted in {shown}, not in the pinned {pinned}: do not trust this portal for {vendor} until the vendor confirms the fingerprint"
            );
        }
        return Ok(pinned);
    }
    use std::io::IsTerminal as _;
    if !std::io::stdin().is_terminal() {
        installer::refuse!(
            UntrustedRoot,
            "{vendor}'s root key fingerprint is {shown}: confirm it with the vendor out of band, then pass --trust-root {shown}"
        );
    }
    deploy::confirm(
        &format!(
            "{vendor}'s root key fingerprint is\n  {shown}\nDoes it match the one the vendor gave you?"
        ),
        false,
        "not logged in: the fingerprint was not confirmed",
    )?;
    Ok(shown)
}
