//! How far behind an installation is: the published releases newer than the version it runs that
//! its license may receive (the `license` crate's `may_receive`, the rule every path uses), the
//! newest of them, and the first required one (upgrades may not skip a required release).

use std::collections::HashMap;

use sqlx::{AnyConnection, Row as _};

use crate::server::domain::error::{DomainError, DomainResult};

/// A published, unyanked release, as entitlement reads it.
#[derive(Clone, Debug)]
pub struct Published {
    /// The release row's id.
    pub id: String,
    /// The app's slug.
    pub app: String,
    /// Its version.
    pub version: semver::Version,
    /// The channels it is on.
    pub channels: Vec<String>,
    /// Whether upgrades may not skip it.
    pub required: bool,
    /// When it was first published (Unix seconds).
    pub published_at: i64,
    /// The feature a license needs to receive it.
    pub entitlement: Option<String>,
}

impl Published {
    /// Whether a license with `claims` may receive this release.
    pub fn offered_to(&self, claims: &license::Claims) -> bool {
        let channels: Vec<&str> = self.channels.iter().map(String::as_str).collect();
        let published =
            license::time::UnixTime::from_secs(u64::try_from(self.published_at).unwrap_or(0))
                .unwrap_or(license::time::UnixTime::EPOCH);
        claims
            .may_receive(&license::Offer {
                app: &self.app,
                version: &self.version,
                channels: &channels,
                published_at: published,
                entitlement: self.entitlement.as_deref(),
            })
            .is_ok()
    }
}

/// The published, unyanked releases of `app_id` (or the one release `release_id`), oldest first.
pub async fn published(
    conn: &mut AnyConnection,
    app_id: Option<&str>,
    release_id: Option<&str>,
) -> DomainResult<Vec<Published>> {
    let rows = sqlx::query(
        "SELECT r.id, a.slug AS app, r.version, r.channels, r.required, r.published_at, r.entitlement \
         FROM releases r JOIN apps a ON a.id = r.app_id WHERE r.state = 'published' AND r.yanked_reason IS NULL \
         AND (CAST($1 AS TEXT) IS NULL OR r.app_id = $1) AND (CAST($2 AS TEXT) IS NULL OR r.id = $2)",
    )
    .bind(app_id)
    .bind(release_id)
    .fetch_all(conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let Ok(version) = semver::Version::parse(&row.try_get::<String, _>("version")?) else {
            continue;
        };
        out.push(Published {
            id: row.try_get("id")?,
            app: row.try_get("app")?,
            version,
            channels: serde_json::from_str(&row.try_get::<String, _>("channels")?)
                .unwrap_or_default(),
            required: row.try_get::<i64, _>("required")? != 0,
            published_at: row.try_get::<Option<i64>, _>("published_at")?.unwrap_or(0),
            entitlement: row.try_get("entitlement")?,
        });
    }
    out.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(out)
}

/// What an installation could move to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Behind {
    /// Releases newer than the installed one that the license may receive.
    pub newer: usize,
    /// The newest of them.
    pub newest: Option<semver::Version>,
    /// The first of them that is required.
    pub required: Option<semver::Version>,
}

impl Behind {
    /// Of `releases` (one app's, oldest first), those newer than `installed` that `claims` may
    /// receive.
    pub fn of(installed: &str, releases: &[Published], claims: &license::Claims) -> Self {
        let Ok(installed) = semver::Version::parse(installed) else {
            return Self::default();
        };
        let newer: Vec<&Published> = releases
            .iter()
            .filter(|r| r.version > installed && r.offered_to(claims))
            .collect();
        Self {
            newer: newer.len(),
            newest: newer.last().map(|r| r.version.clone()),
            required: newer.iter().find(|r| r.required).map(|r| r.version.clone()),
        }
    }

    /// In words, for a table: `up to date`, `2 behind (newest 1.2.0)`, `… 1.1.0 required`.
    pub fn describe(&self) -> String {
        match (&self.newest, &self.required) {
            (None, _) => "up to date".into(),
            (Some(newest), None) => format!("{} behind (newest {newest})", self.newer),
            (Some(newest), Some(required)) => {
                format!(
                    "{} behind (newest {newest}; {required} required)",
                    self.newer
                )
            }
        }
    }
}

/// How far behind each (license id, installed version) is, in words, in the same order.
pub async fn describe_all(
    conn: &mut AnyConnection,
    installations: &[(String, String)],
) -> DomainResult<Vec<String>> {
    let mut claims: HashMap<String, (String, license::Claims)> = HashMap::new();
    let mut releases: HashMap<String, Vec<Published>> = HashMap::new();
    let mut out = Vec::with_capacity(installations.len());
    for (license_id, version) in installations {
        if !claims.contains_key(license_id) {
            let row = sqlx::query("SELECT app_id, claims FROM licenses WHERE id = $1")
                .bind(license_id)
                .fetch_one(&mut *conn)
                .await?;
            let parsed: license::Claims =
                serde_json::from_str(&row.try_get::<String, _>("claims")?)
                    .map_err(DomainError::internal)?;
            claims.insert(license_id.clone(), (row.try_get("app_id")?, parsed));
        }
        let (app_id, license) = &claims[license_id];
        if !releases.contains_key(app_id) {
            let list = published(conn, Some(app_id), None).await?;
            releases.insert(app_id.clone(), list);
        }
        out.push(Behind::of(version, &releases[app_id], license).describe());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_reads_as_a_table_cell() {
        let v = |s: &str| semver::Version::parse(s).ok();
        assert_eq!(Behind::default().describe(), "up to date");
        let newer = Behind {
            newer: 2,
            newest: v("1.2.0"),
            required: None,
        };
        assert_eq!(newer.describe(), "2 behind (newest 1.2.0)");
        let required = Behind {
            required: v("1.1.0"),
            ..newer
        };
        assert_eq!(
            required.describe(),
            "2 behind (newest 1.2.0; 1.1.0 required)"
        );
    }
}
