-- The marketplace's ordered listing: listed apps by lower-case name, read in index order.
CREATE INDEX apps_listed_by_name ON apps (listed, lower(name));
