//! Fixed-window rate limits kept in the database, so that every portal process behind a load
//! balancer counts against the same budget.

use sqlx::{Any, Executor, Row as _};

use crate::server::domain::error::{DomainError, DomainResult};

/// Counts one hit on `bucket` in the current `window`-second window and refuses it with 429 when
/// the window already had `limit` hits. A limit of 0 means unlimited.
pub async fn hit<'e, E>(
    exec: E,
    bucket: &str,
    window: i64,
    limit: u64,
    what: &str,
) -> DomainResult<()>
where
    E: Executor<'e, Database = Any>,
{
    if limit == 0 {
        return Ok(());
    }
    let now = crate::server::base::now();
    let start = now - now.rem_euclid(window);
    let row = sqlx::query(
        "INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, 1) \
         ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1 \
         RETURNING hits",
    )
    .bind(bucket)
    .bind(start)
    .fetch_one(exec)
    .await?;
    let hits: i64 = row.try_get("hits")?;
    if u64::try_from(hits).unwrap_or(u64::MAX) > limit {
        let retry = u64::try_from(start + window - now).unwrap_or(1);
        return Err(DomainError::rate_limited(
            format!("too many {what}: at most {limit} per {window} s; retry in {retry} s"),
            retry,
        ));
    }
    Ok(())
}

/// The hits on `bucket` in the current window, without counting one.
pub async fn current<'e, E>(exec: E, bucket: &str, window: i64) -> DomainResult<(u64, u64)>
where
    E: Executor<'e, Database = Any>,
{
    let now = crate::server::base::now();
    let start = now - now.rem_euclid(window);
    let row = sqlx::query("SELECT hits FROM rate_limits WHERE bucket = $1 AND window_start = $2")
        .bind(bucket)
        .bind(start)
        .fetch_optional(exec)
        .await?;
    let hits = match row {
        Some(row) => row.try_get::<i64, _>("hits")?,
        None => 0,
    };
    Ok((
        u64::try_from(hits).unwrap_or(0),
        u64::try_from(start + window - now).unwrap_or(1),
    ))
}

/// Counts `n` hits on `bucket` at once and returns how many of them the limit allows (the
/// first ones in order); 0 means unlimited.
pub async fn hit_many<'e, E>(
    exec: E,
    bucket: &str,
    window: i64,
    limit: u64,
    n: usize,
) -> DomainResult<usize>
where
    E: Executor<'e, Database = Any>,
{
    if limit == 0 {
        return Ok(n);
    }
    let now = crate::server::base::now();
    let start = now - now.rem_euclid(window);
    let added = i64::try_from(n).unwrap_or(i64::MAX);
    let row = sqlx::query(
        "INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, $3) \
         ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + $3 \
         RETURNING hits",
    )
    .bind(bucket)
    .bind(start)
    .bind(added)
    .fetch_one(exec)
    .await?;
    let hits: i64 = row.try_get("hits")?;
    let before = u64::try_from(hits - added).unwrap_or(0);
    Ok(usize::try_from(limit.saturating_sub(before))
        .unwrap_or(usize::MAX)
        .min(n))
}

/// The 429 for a refused license change.
pub fn license_writes_refused(limit: u64) -> DomainError {
    let now = crate::server::base::now();
    let retry = u64::try_from(60 - now.rem_euclid(60)).unwrap_or(1);
    DomainError::rate_limited(
        format!(
            "too many license changes for this vendor: at most {limit} per 60 s; retry in {retry} s"
        ),
        retry,
    )
}
