//! Migrations that rewrite data, run against data written by the migrations before them.

use sqlx::{Connection, Row};

/// Migration 0017 keeps one live platform per WABA: the oldest keeps it, the younger
/// duplicates are disconnected (their numbers leave the sending set), and the partial unique
/// index then refuses a second live platform.
#[tokio::test]
async fn migration_0017_keeps_the_oldest_live_platform_of_each_waba() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
    let mut c = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    let migrator = sqlx::migrate!("./migrations/sqlite");
    migrator
        .run_to(14, &mut c)
        .await
        .expect("migrations up to 0014");
    for statement in [
        "INSERT INTO accounts (id, name, created_at) VALUES ('acc_1', 'A', 1)",
        "INSERT INTO applications (id, account_id, name, created_at) VALUES ('app_a', 'acc_1', 'A', 1), ('app_b', 'acc_1', 'B', 1), ('app_c', 'acc_1', 'C', 1)",
        // WABA 1: three live platforms (the race), the oldest is app_b's.
        "INSERT INTO platforms (id, application_id, business_id, waba_id, status, access_token, created_at, updated_at)
           VALUES ('plt_a', 'app_a', 'b', '1', 'active', x'00', 20, 20),
                  ('plt_b', 'app_b', 'b', '1', 'pending_review', x'00', 10, 10),
                  ('plt_c', 'app_c', 'b', '1', 'setting_up', x'00', 30, 30)",
        // WABA 2: one live and one disconnected platform: untouched.
        "INSERT INTO platforms (id, application_id, business_id, waba_id, status, access_token, created_at, updated_at)
           VALUES ('plt_d', 'app_a', 'b', '2', 'disconnected', x'00', 1, 1),
                  ('plt_e', 'app_b', 'b', '2', 'active', x'00', 2, 2)",
        "INSERT INTO phone_numbers (phone_number_id, platform_id, application_id, display_phone_number, throughput_mps, updated_at)
           VALUES ('111', 'plt_a', 'app_a', '+1 555', 80, 1), ('222', 'plt_b', 'app_b', '+1 556', 80, 1)",
    ] {
        sqlx::query(statement).execute(&mut c).await.expect(statement);
    }
    migrator.run(&mut c).await.expect("migration 0017");

    let rows = sqlx::query("SELECT id, status, status_reason FROM platforms ORDER BY id")
        .fetch_all(&mut c)
        .await
        .expect("platforms");
    let statuses: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.get::<String, _>("id"), r.get::<String, _>("status")))
        .collect();
    let expected = [
        ("plt_a", "disconnected"),
        ("plt_b", "pending_review"),
        ("plt_c", "disconnected"),
        ("plt_d", "disconnected"),
        ("plt_e", "active"),
    ];
    assert_eq!(
        statuses,
        expected
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect::<Vec<_>>()
    );
    let reason: Option<String> = rows[0].get("status_reason");
    assert!(reason.is_some_and(|r| r.contains("Disconnect it there")));
    let numbers: Vec<String> = sqlx::query_scalar("SELECT phone_number_id FROM phone_numbers")
        .fetch_all(&mut c)
        .await
        .expect("numbers");
    assert_eq!(
        numbers,
        ["222"],
        "the disconnected duplicate's number left the sending set"
    );

    // From now on the database refuses a second live platform for a WABA.
    let second = sqlx::query("UPDATE platforms SET status = 'active' WHERE id = 'plt_a'")
        .execute(&mut c)
        .await;
    assert!(second.is_err(), "{second:?}");
    sqlx::query("UPDATE platforms SET status = 'active' WHERE id = 'plt_d'")
        .execute(&mut c)
        .await
        .expect_err("WABA 2 is live in plt_e");
}

/// Migration 0038 notes each conversation's latest inbound message with a `referral` (a free
/// entry point): read from the normalized body, or from Meta's raw message for rows from
/// before bodies were kept; a conversation without one keeps none.
#[tokio::test]
async fn migration_0038_notes_the_latest_referral_of_each_conversation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
    let mut c = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    let migrator = sqlx::migrate!("./migrations/sqlite");
    migrator
        .run_to(34, &mut c)
        .await
        .expect("migrations up to 0034");
    for statement in [
        "INSERT INTO accounts (id, name, created_at) VALUES ('acc_1', 'A', 1)",
        "INSERT INTO applications (id, account_id, name, created_at) VALUES ('app_a', 'acc_1', 'A', 1)",
        "INSERT INTO contacts (id, application_id, phone, created_at, updated_at)
           VALUES ('ctc_ad', 'app_a', '+4915230009001', 1, 1), ('ctc_old', 'app_a', '+4915230009002', 1, 1),
                  ('ctc_plain', 'app_a', '+4915230009003', 1, 1)",
        // Two referrals (on two numbers) and a later plain message: the later referral counts.
        "INSERT INTO inbound_messages (wamid, application_id, phone_number_id, contact_id, from_phone, kind, text, raw, body, received_at)
           VALUES ('w1', 'app_a', '111', 'ctc_ad', '+4915230009001', 'text', 'a', '{}', '{\"kind\":\"text\",\"referral\":{\"source_type\":\"ad\"}}', 10),
                  ('w2', 'app_a', '222', 'ctc_ad', '+4915230009001', 'text', 'b', '{}', '{\"kind\":\"text\",\"referral\":{\"source_type\":\"post\"}}', 20),
                  ('w3', 'app_a', '222', 'ctc_ad', '+4915230009001', 'text', 'c', '{}', '{\"kind\":\"text\"}', 30),
                  ('w4', 'app_a', '111', 'ctc_old', '+4915230009002', 'text', 'd', '{\"type\":\"text\",\"referral\":{\"source_type\":\"ad\"}}', NULL, 40),
                  ('w5', 'app_a', '111', 'ctc_plain', '+4915230009003', 'text', 'e', '{\"type\":\"text\",\"text\":{\"body\":\"\\\"referral\\\"\"}}', '{\"kind\":\"text\",\"referral\":null}', 50)",
        "INSERT INTO conversations (application_id, contact_id, last_activity_at, last_direction, last_kind, read_until, updated_at)
           VALUES ('app_a', 'ctc_ad', 30, 'inbound', 'text', 0, 30), ('app_a', 'ctc_old', 40, 'inbound', 'text', 0, 40),
                  ('app_a', 'ctc_plain', 50, 'inbound', 'text', 0, 50)",
    ] {
        sqlx::query(statement).execute(&mut c).await.expect(statement);
    }
    migrator.run(&mut c).await.expect("migration 0038");
    let rows: Vec<(String, Option<i64>, Option<String>)> = sqlx::query(
        "SELECT contact_id, entry_point_at, entry_point_phone_number_id FROM conversations ORDER BY contact_id",
    )
    .fetch_all(&mut c)
    .await
    .expect("conversations")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect();
    assert_eq!(
        rows,
        vec![
            ("ctc_ad".to_owned(), Some(20), Some("222".to_owned())),
            ("ctc_old".to_owned(), Some(40), Some("111".to_owned())),
            ("ctc_plain".to_owned(), None, None),
        ]
    );
}
