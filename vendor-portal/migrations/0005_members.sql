-- Members an owner disabled: they cannot sign in, and no session or token of theirs
-- authenticates, until an owner enables them again.
ALTER TABLE members ADD COLUMN disabled_at BIGINT;
