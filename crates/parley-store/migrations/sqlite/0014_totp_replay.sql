-- TOTP replay (#12): the time step of the last code accepted for the user. A code whose step
-- is not newer is refused (RFC 6238 §5.2), so a code cannot be used twice in its window.
ALTER TABLE users ADD COLUMN totp_last_step INTEGER;
