-- Send windows: a campaign message carries its recipient's window, resolved at planning in the
-- contact's timezone (else the campaign's, else UTC), as `HH:MM-HH:MM@Zone`; NULL: no window.
-- The sender checks it just before the call; a message outside it waits with
-- hold_reason = 'window' and next_attempt_at = the next opening.
ALTER TABLE messages ADD COLUMN send_window TEXT;
