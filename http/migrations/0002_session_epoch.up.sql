-- A session now remembers the user's session epoch (bumped by a password change, an admin
-- lock, a deactivation or a deletion), not only the password version: a lock followed by
-- an unlock must still end the sessions opened before it.
ALTER TABLE http_sessions RENAME COLUMN password_version TO session_epoch;
