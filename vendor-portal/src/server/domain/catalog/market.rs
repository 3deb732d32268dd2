//! The marketplace's catalogue: listed apps, searched by words in their name, summary and
//! description, filtered by category and vendor, sorted, a page at a time.

use serde::Deserialize;
use sqlx::AssertSqlSafe;
use sqlx::{AnyConnection, Row as _};

use crate::server::base::db::Backend;
use crate::server::domain::error::DomainResult;
use crate::server::state::{AppState, Facets, TtlCache};

/// Apps per catalogue page.
pub const PAGE_SIZE: i64 = 24;

/// The catalogue's query string.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CatalogueQuery {
    /// Words that must each begin a word of the name, summary or description.
    #[serde(default)]
    pub q: String,
    /// A category.
    #[serde(default)]
    pub category: String,
    /// A vendor's slug.
    #[serde(default)]
    pub vendor: String,
    /// `name`, `newest` or `vendor`.
    #[serde(default)]
    pub sort: String,
    /// 1-based; anything else is the first page.
    #[serde(default)]
    pub page: String,
}

/// An app on the catalogue.
#[derive(Clone, Debug)]
pub struct Listing {
    /// The vendor's slug.
    pub vendor: String,
    /// The vendor's name.
    pub vendor_name: String,
    /// The app's slug.
    pub slug: String,
    /// Its name.
    pub name: String,
    /// One line.
    pub summary: String,
    /// Categories.
    pub categories: Vec<String>,
    /// Its newest published version.
    pub version: Option<String>,
    /// Whether a plan offers a trial.
    pub trial: bool,
}

fn like_pattern(word: &str) -> String {
    let escaped = word
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// The words of a search, lower-case: runs of letters and digits, at most 16.
pub fn search_words(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(16)
        .map(str::to_lowercase)
        .collect()
}

/// A catalogue page's identity: words, category, vendor, sort and page number.
pub type PageKey = (String, String, String, String, i64);

/// How many listings match, and one page of them.
pub type ListingPage = (i64, Vec<Listing>);

/// How long a catalogue page may be served while it is being read again: a visitor never waits
/// for the database on a page someone asked for in the last few seconds, and sees a change
/// made through another portal process within about a second.
const STALE_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// Page `page` of the listings matching `query`, and how many match in all: from the state's
/// cache of catalogue pages (cleared when an app of this process changes), read again in the
/// background once it is a second old, else from the database.
pub async fn listing_page(
    state: &AppState,
    query: &CatalogueQuery,
    page: i64,
) -> DomainResult<ListingPage> {
    let key = (
        search_words(&query.q).join(" "),
        query.category.clone(),
        query.vendor.clone(),
        query.sort.clone(),
        page,
    );
    served(state, |s| &s.listings, key, read_page).await
}

/// The catalogue's filter choices: the categories of listed apps and the vendors that have
/// any, cached like the pages.
pub async fn facets(state: &AppState) -> DomainResult<Facets> {
    served(state, |s| &s.facets, (), read_facets).await
}

/// What `cache` holds for `key` if it is at most [`STALE_FOR`] old (read again in the
/// background once it is past the cache's TTL), else what `read` reads, once for all the
/// requests that ask for it meanwhile.
async fn served<K, V, F>(
    state: &AppState,
    cache: fn(&AppState) -> &TtlCache<K, V>,
    key: K,
    read: fn(AppState, K) -> F,
) -> DomainResult<V>
where
    K: Clone + std::hash::Hash + Eq + Send + 'static,
    V: Clone + Send + 'static,
    F: Future<Output = DomainResult<V>> + Send + 'static,
{
    if let Some((hit, stale)) = cache(state).get_or_claim(&key, STALE_FOR) {
        if stale {
            let state = state.clone();
            tokio::spawn(async move {
                match read(state.clone(), key.clone()).await {
                    Ok(found) => cache(&state).put(key, found),
                    Err(e) => {
                        tracing::warn!(error = %e.detail, "a cached catalogue read (a page or the filter lists) could not be refreshed; the copy serves meanwhile");
                    }
                }
            });
        }
        return Ok(hit);
    }
    cache(state)
        .read_once(&key, STALE_FOR, || read(state.clone(), key.clone()))
        .await
}

async fn read_page(state: AppState, key: PageKey) -> DomainResult<ListingPage> {
    let (q, category, vendor, sort, page) = key;
    let query = CatalogueQuery {
        q,
        category,
        vendor,
        sort,
        page: page.to_string(),
    };
    let mut conn = state.db.pool.acquire().await?;
    search(&mut conn, state.db.backend, &query, page).await
}

async fn read_facets(state: AppState, (): ()) -> DomainResult<Facets> {
    let mut conn = state.db.pool.acquire().await?;
    let mut categories = std::collections::BTreeSet::new();
    for row in sqlx::query("SELECT DISTINCT categories FROM apps WHERE listed = 1")
        .fetch_all(&mut *conn)
        .await?
    {
        let text: String = row.try_get("categories")?;
        categories.extend(serde_json::from_str::<Vec<String>>(&text).unwrap_or_default());
    }
    // One pass over the listed apps whatever plan the database picks: a correlated EXISTS per
    // vendor walked every listing once per vendor on SQLite before its statistics existed.
    let mut vendors = Vec::new();
    for row in sqlx::query(
        "SELECT v.slug, v.name FROM vendors v \
         WHERE v.id IN (SELECT a.vendor_id FROM apps a WHERE a.listed = 1) ORDER BY v.name",
    )
    .fetch_all(&mut *conn)
    .await?
    {
        vendors.push((row.try_get("slug")?, row.try_get("name")?));
    }
    Ok((categories.into_iter().collect(), vendors))
}

/// Page `page` of the listings matching `query`, and how many match in all.
pub async fn search(
    conn: &mut AnyConnection,
    backend: Backend,
    query: &CatalogueQuery,
    page: i64,
) -> DomainResult<(i64, Vec<Listing>)> {
    let (filter, binds) = conditions(backend, query);
    // The same order inside (on the tables) and outside (on the page's rows).
    let (order, page_order) = match query.sort.as_str() {
        "newest" => ("a.created_at DESC, a.name", "p.created_at DESC, p.name"),
        "vendor" => ("v.name, a.name", "p.vendor_name, p.name"),
        _ => ("lower(a.name), v.name", "lower(p.name), p.vendor_name"),
    };
    let count_sql = format!(
        "SELECT COUNT(*) AS n FROM apps a JOIN vendors v ON v.id = a.vendor_id WHERE {filter}"
    );
    let mut count = sqlx::query(AssertSqlSafe(count_sql.as_str()));
    for b in &binds {
        count = count.bind(b);
    }
    let total: i64 = count.fetch_one(&mut *conn).await?.try_get("n")?;
    // The page is chosen first; the newest version and the trial plans are looked up for its
    // rows only, not for every match before sorting.
    let list_sql = format!(
        "SELECT p.slug, p.name, p.summary, p.categories, p.vendor, p.vendor_name, \
         (SELECT r.version FROM releases r WHERE r.app_id = p.id AND r.state = 'published' AND r.yanked_reason IS NULL \
          ORDER BY r.published_at DESC LIMIT 1) AS version, \
         (SELECT COUNT(*) FROM plans t WHERE t.app_id = p.id AND t.trial = 1) AS trials \
         FROM (SELECT a.id, a.slug, a.name, a.summary, a.categories, a.created_at, v.slug AS vendor, \
               v.name AS vendor_name FROM apps a JOIN vendors v ON v.id = a.vendor_id WHERE {filter} \
               ORDER BY {order} LIMIT {PAGE_SIZE} OFFSET {}) p \
         ORDER BY {page_order}",
        (page - 1) * PAGE_SIZE
    );
    let mut list = sqlx::query(AssertSqlSafe(list_sql.as_str()));
    for b in &binds {
        list = list.bind(b);
    }
    let mut listings = Vec::new();
    for row in list.fetch_all(&mut *conn).await? {
        let categories: String = row.try_get("categories")?;
        listings.push(Listing {
            vendor: row.try_get("vendor")?,
            vendor_name: row.try_get("vendor_name")?,
            slug: row.try_get("slug")?,
            name: row.try_get("name")?,
            summary: row.try_get("summary")?,
            categories: serde_json::from_str(&categories).unwrap_or_default(),
            version: row.try_get("version")?,
            trial: row.try_get::<i64, _>("trials")? > 0,
        });
    }
    Ok((total, listings))
}

/// The WHERE clause of a catalogue query and its bound values: listed apps, the search words
/// (through the database's full-text index), the category and the vendor.
fn conditions(backend: Backend, query: &CatalogueQuery) -> (String, Vec<String>) {
    let mut conditions = vec!["a.listed = 1".to_owned()];
    let mut binds: Vec<String> = Vec::new();
    let words = search_words(&query.q);
    if !words.is_empty() {
        // The databases' full-text indexes: every word must begin a word of the name, summary
        // or description. Words hold only letters and digits, so they are never query syntax.
        let (expression, condition) = match backend {
            Backend::Sqlite => (
                words
                    .iter()
                    .map(|w| format!("\"{w}\"*"))
                    .collect::<Vec<_>>()
                    .join(" "),
                "a.rowid IN (SELECT rowid FROM apps_fts WHERE apps_fts MATCH $N)",
            ),
            Backend::Postgres => (
                words
                    .iter()
                    .map(|w| format!("{w}:*"))
                    .collect::<Vec<_>>()
                    .join(" & "),
                "a.search @@ to_tsquery('simple', $N)",
            ),
        };
        binds.push(expression);
        conditions.push(condition.replace("$N", &format!("${}", binds.len())));
    }
    if !query.category.is_empty() {
        // Categories are a JSON array of strings; match the quoted element.
        let quoted = serde_json::to_string(&query.category).unwrap_or_default();
        binds.push(like_pattern(&quoted));
        conditions.push(format!(
            "lower(a.categories) LIKE ${} ESCAPE '\\'",
            binds.len()
        ));
    }
    if !query.vendor.is_empty() {
        binds.push(query.vendor.clone());
        conditions.push(format!("v.slug = ${}", binds.len()));
    }
    (conditions.join(" AND "), binds)
}

#[cfg(test)]
mod tests {
    use super::search_words;

    #[test]
    fn search_words_are_letters_and_digits_only() {
        assert_eq!(search_words("Billing  analytics"), ["billing", "analytics"]);
        // Query syntax of either database is never passed through.
        assert_eq!(search_words("a\" OR 1:* & !b"), ["a", "or", "1", "b"]);
        assert_eq!(search_words("100%"), ["100"]);
        assert_eq!(search_words("Ünïcode"), ["ünïcode"]);
        assert!(search_words("%_ -").is_empty());
        assert_eq!(search_words(&"x ".repeat(40)).len(), 16);
    }
}
