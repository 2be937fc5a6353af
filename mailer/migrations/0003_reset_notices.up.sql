-- "Password Reset Error" for every refused request (issue 9):
--   reset_notice: the fixed reasons text to a typed address that is not the account's
--     verified one. The address is never stored in clear: recipient stays '' and
--     recipient_sealed holds it encrypted with the server key (opened at send time).
--   recipient_hash: keyed hash of the recipient of reset_error and reset_notice mails;
--     the intake counts them per recipient to cap them (skip_reason 'capped').
--   retry_at: reset_error mails say when the owner may ask again.
ALTER TABLE mail_deliveries DROP CONSTRAINT IF EXISTS mail_deliveries_kind_check;
ALTER TABLE mail_deliveries ADD CONSTRAINT mail_deliveries_kind_check
    CHECK (kind IN ('email_code', 'reset_token', 'reset_error', 'reset_notice', 'password_changed'));
ALTER TABLE mail_deliveries ADD COLUMN recipient_sealed bytea;
ALTER TABLE mail_deliveries ADD COLUMN recipient_hash text NOT NULL DEFAULT '';
ALTER TABLE mail_deliveries ADD COLUMN retry_at timestamptz;
ALTER TABLE mail_deliveries ADD CONSTRAINT mail_deliveries_notice_sealed_check
    CHECK (kind <> 'reset_notice' OR (recipient_sealed IS NOT NULL AND recipient_hash <> ''));

CREATE INDEX mail_deliveries_recipient_hash_idx ON mail_deliveries (recipient_hash, occurred_at)
    WHERE recipient_hash <> '';
