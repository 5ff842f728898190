-- One live platform per WhatsApp Business Account. Two sign-ups of the same WABA in two
-- applications could both pass the engine's "held elsewhere" check and both create a platform
-- (check-then-write race); the partial unique index makes the second write fail (the engine
-- answers 409 `waba_taken`). Duplicates that already exist are resolved first: the oldest live
-- platform of a WABA keeps it, the others are disconnected (their numbers leave the sending
-- set, their sign-up sessions forget the business token), as a disconnect in the console does.
UPDATE platforms
   SET status = 'disconnected',
       status_reason = 'Disconnected by an upgrade: this WhatsApp Business Account was connected to another application of this Parley first. Disconnect it there, then sign up again here.',
       connected_at = NULL,
       disconnected_at = updated_at
 WHERE status <> 'disconnected'
   AND EXISTS (
       SELECT 1 FROM platforms AS older
        WHERE older.waba_id = platforms.waba_id
          AND older.status <> 'disconnected'
          AND (older.created_at < platforms.created_at
               OR (older.created_at = platforms.created_at AND older.id < platforms.id)));

DELETE FROM phone_numbers
 WHERE platform_id IN (SELECT id FROM platforms WHERE status = 'disconnected');

UPDATE onboarding_sessions SET access_token = NULL
 WHERE platform_id IN (SELECT id FROM platforms WHERE status = 'disconnected');

CREATE UNIQUE INDEX platforms_live_waba ON platforms (waba_id) WHERE status <> 'disconnected';
