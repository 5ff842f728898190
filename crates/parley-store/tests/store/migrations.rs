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

/// Migration 0045 (PostgreSQL) packs the statistics counters along time (`stat_blocks`: a row
/// per day of hours, per 32 days of days) and makes `stat_counters` a view of them: the
/// counters from before (kept ones and deltas not folded yet) read back the same, the recount
/// after the migration finds them equal to the rows they count, and the period's sums are
/// the same.
#[tokio::test]
async fn migration_0045_packs_the_postgres_counters_and_keeps_every_count() {
    use parley_store::stats::{StatQuery, StatSpan};
    use std::collections::BTreeMap;
    const DAY: i64 = 86_400_000;
    const HOUR: i64 = 3_600_000;
    // A block of days starts at a multiple of 32 days: T0 a few days before one, so the
    // messages cross it.
    const T0: i64 = 20_582 * DAY;
    let app = parley_domain::ApplicationId::new();
    let db = crate::pg::TestDb::create().await;
    let mut c = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let migrator = sqlx::migrate!("./migrations/postgres");
    migrator
        .run_to(44, &mut c)
        .await
        .expect("migrations up to 0044");
    for statement in [
        "INSERT INTO accounts (id, name, created_at) VALUES ('acc_1', 'A', 1)",
        "INSERT INTO applications (id, account_id, name, created_at) VALUES ('app_a', 'acc_1', 'A', 1), ('app_b', 'acc_1', 'B', 1)",
        "INSERT INTO contacts (id, application_id, phone, created_at, updated_at)
           VALUES ('ctc_1', 'app_a', '+4915230009001', 1, 1), ('ctc_2', 'app_a', '+4915230009002', 1, 1),
                  ('ctc_3', 'app_b', '+4915230009003', 1, 1)",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement.replace("app_a", app.as_str())))
            .execute(&mut c)
            .await
            .expect(statement);
    }
    // Inbound messages over 12 days (the triggers append deltas), some of them folded into
    // the counters as a read before 0045 did, the rest still pending.
    let old_fold = "WITH moved AS (DELETE FROM stat_deltas RETURNING *)
        INSERT INTO stat_counters (application_id, span, bucket, metric, campaign_id, template,
            phone_number_id, category, country, origin, detail, n)
        SELECT application_id, span, bucket, metric, campaign_id, template, phone_number_id,
            category, country, origin, detail, CAST(SUM(n) AS BIGINT)
        FROM moved GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
        ON CONFLICT (application_id, span, bucket, metric, campaign_id, template, phone_number_id,
            category, country, origin, detail) DO UPDATE SET n = stat_counters.n + excluded.n";
    let kinds = ["text", "reaction", "button", "image", "interactive"];
    for i in 0..60i64 {
        let (app, contact, phone) = match i % 3 {
            0 => (app.as_str(), "ctc_1", "+4915230009001"),
            1 => (app.as_str(), "ctc_2", "+4915230009002"),
            _ => ("app_b", "ctc_3", "+4915230009003"),
        };
        let at = T0 + (i * 4 + i % 5) * HOUR + i * 1_000;
        sqlx::query(
            "INSERT INTO inbound_messages (wamid, application_id, phone_number_id, contact_id, from_phone, kind, text, raw, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'x', '{}', $7)",
        )
        .bind(format!("wamid.m{i}"))
        .bind(app)
        .bind(if i % 2 == 0 { "111" } else { "222" })
        .bind(contact)
        .bind(phone)
        .bind(kinds[(i % 5) as usize])
        .bind(at)
        .execute(&mut c)
        .await
        .expect("inbound");
        if i == 40 {
            sqlx::query(old_fold).execute(&mut c).await.expect("fold");
        }
    }
    // A counter that summed to zero (kept as a row before, left out after).
    sqlx::query(
        "INSERT INTO stat_counters VALUES ($1, 'h', $2, 'inbound', '', '', '111', '', '', 'customer', 'text', 0)",
    )
    .bind(app.as_str())
    .bind(T0 - HOUR)
    .execute(&mut c)
    .await
    .expect("zero counter");
    let key_sums = "SELECT application_id, span, bucket, metric, campaign_id, template, phone_number_id,
            category, country, origin, detail, CAST(SUM(n) AS BIGINT) AS n FROM ({}) c
         GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 HAVING SUM(n) <> 0 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11";
    let read =
        |rows: Vec<sqlx::postgres::PgRow>| -> Vec<(String, String, i64, String, String, i64)> {
            rows.iter()
                .map(|r| {
                    (
                        r.get(0),
                        r.get(1),
                        r.get(2),
                        r.get(3),
                        format!(
                            "{}|{}|{}|{}",
                            r.get::<String, _>(6),
                            r.get::<String, _>(9),
                            r.get::<String, _>(10),
                            r.get::<String, _>(4)
                        ),
                        r.get(11),
                    )
                })
                .collect()
        };
    let before = read(
        sqlx::query(sqlx::AssertSqlSafe(key_sums.replace(
            "{}",
            "SELECT * FROM stat_counters UNION ALL SELECT * FROM stat_deltas",
        )))
        .fetch_all(&mut c)
        .await
        .expect("counters before"),
    );
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM stat_deltas")
        .fetch_one(&mut c)
        .await
        .expect("deltas");
    assert!(pending > 0, "some deltas are still to fold");
    assert!(before.iter().any(|r| r.1 == "h") && before.iter().any(|r| r.1 == "d"));

    migrator.run(&mut c).await.expect("migration 0045");
    let after = read(
        sqlx::query(sqlx::AssertSqlSafe(
            key_sums.replace("{}", "SELECT * FROM stat_counters"),
        ))
        .fetch_all(&mut c)
        .await
        .expect("counters after"),
    );
    assert_eq!(after, before);
    let blocks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM stat_blocks")
        .fetch_one(&mut c)
        .await
        .expect("blocks");
    assert!(
        blocks > 0 && blocks <= before.len() as i64,
        "{blocks} blocks for {} counters",
        before.len()
    );
    c.close().await.expect("close");

    let store = parley_store::open(&db.url, parley_store::SecretCipher::from_key(&[7; 32]))
        .await
        .expect("open");
    let diff = store.stat_recount(false).await.expect("recount");
    assert!(
        diff.is_empty(),
        "the counters from before 0045 equal the recount after it: {diff:?}"
    );
    // The period's hourly sums, read from the blocks, are the counters' from before.
    let (from, to) = (T0 + 5 * HOUR, T0 + 9 * DAY);
    let rows = store
        .stat_rows(&StatQuery {
            application: app.clone(),
            span: StatSpan::Hour,
            from,
            to,
            group_by: None,
            filters: vec![],
            starts: vec![],
        })
        .await
        .expect("stat rows")
        .to_rows();
    let mut expected: BTreeMap<(i64, String, String), i64> = BTreeMap::new();
    for (a, span, bucket, metric, rest, n) in &before {
        if a == app.as_str() && span == "h" && *bucket >= from && *bucket < to {
            let detail = rest.split('|').nth(2).unwrap_or_default().to_owned();
            *expected
                .entry((*bucket, metric.clone(), detail))
                .or_insert(0) += n;
        }
    }
    expected.retain(|_, n| *n != 0);
    let got: BTreeMap<(i64, String, String), i64> = rows
        .iter()
        .map(|r| ((r.bucket, r.metric.clone(), r.detail.clone()), r.n))
        .collect();
    assert!(!got.is_empty());
    assert_eq!(got, expected);
    drop(store);
    db.finish().await;
}
