-- An account's operations, newest first (GET /v1/operations): without this index the list and its
-- total scanned and sorted every account's operations, a cost that grew with each create, action
-- and delete (issue 14, item 12).
CREATE INDEX operations_account ON operations(account_id, created_at, operation_id);
