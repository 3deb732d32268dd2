-- Full-text search over the marketplace's listings (PostgreSQL tsvector, kept by the database
-- itself as a generated column, with a GIN index). 'simple': no stemming, the same words in
-- every language.
ALTER TABLE apps ADD COLUMN search tsvector GENERATED ALWAYS AS (
    to_tsvector('simple', name || ' ' || summary || ' ' || description)
) STORED;
CREATE INDEX apps_search ON apps USING GIN (search);
