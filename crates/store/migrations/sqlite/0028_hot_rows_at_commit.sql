-- PostgreSQL's migration 0028 moves the triggers that keep an account's counts and usage version
-- to commit time, so that concurrent transactions of one account do not queue on those rows. SQLite
-- has one writer at a time: there is nothing to queue on, and its triggers stay as they are. This
-- file keeps the two stores' migration numbers equal.
SELECT 1;
