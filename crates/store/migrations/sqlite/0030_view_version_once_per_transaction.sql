-- PostgreSQL's migration 0030 moves an account's view version once per transaction instead of once
-- per changed row. SQLite's triggers run row by row inside its single writer, where the extra
-- updates of one row queue no one and cost little; they stay as they are. This file keeps the two
-- stores' migration numbers equal.
SELECT 1;
