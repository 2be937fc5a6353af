-- The admin user list's filters and sorts (issue 9) as keyset scans: every query of
-- http/users.go orders by one of these index prefixes after the equality columns, so a
-- page of 50 reads about 50 index entries however many users the provider has.
-- (provider, login) is the primary key; (provider, status) of 0002 is replaced by the
-- wider (provider, status, login).
DROP INDEX IF EXISTS readmodels.admin_users_status_idx;
CREATE INDEX admin_users_status_login_idx ON readmodels.admin_users (provider, status, login);
CREATE INDEX admin_users_name_idx ON readmodels.admin_users (provider, display_name, login);
CREATE INDEX admin_users_status_name_idx ON readmodels.admin_users (provider, status, display_name, login);
