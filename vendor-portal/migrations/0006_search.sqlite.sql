-- Full-text search over the marketplace's listings (SQLite FTS5, external content): the index
-- follows the apps table through triggers, and holds only what is searched.
CREATE VIRTUAL TABLE apps_fts USING fts5(
    name, summary, description,
    content = 'apps', content_rowid = 'rowid',
    tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO apps_fts (rowid, name, summary, description)
    SELECT rowid, name, summary, description FROM apps;
CREATE TRIGGER apps_fts_insert AFTER INSERT ON apps BEGIN
    INSERT INTO apps_fts (rowid, name, summary, description)
        VALUES (new.rowid, new.name, new.summary, new.description);
END;
CREATE TRIGGER apps_fts_delete AFTER DELETE ON apps BEGIN
    INSERT INTO apps_fts (apps_fts, rowid, name, summary, description)
        VALUES ('delete', old.rowid, old.name, old.summary, old.description);
END;
CREATE TRIGGER apps_fts_update AFTER UPDATE OF name, summary, description ON apps BEGIN
    INSERT INTO apps_fts (apps_fts, rowid, name, summary, description)
        VALUES ('delete', old.rowid, old.name, old.summary, old.description);
    INSERT INTO apps_fts (rowid, name, summary, description)
        VALUES (new.rowid, new.name, new.summary, new.description);
END;
