-- An instance's removal deletes its one-time console links (`remove_instance`); without an index
-- on `instance_id` that delete read every link of every account, a cost that grew with the
-- console's use on every instance delete (issue 14, item 12).
CREATE INDEX console_tokens_instance ON console_tokens(instance_id);
