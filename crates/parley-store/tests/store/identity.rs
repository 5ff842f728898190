//! People: the first owner (once per setup link), roles, sessions (server-side, ended by
//! logout and password changes, seen by every node), invites, the throttle's compare-and-swap
//! and the TOTP secret encrypted at rest.

use parley_domain::{AccountId, ApplicationId, Role, UserId};
use parley_store::identity::{
    InviteCaps, InviteRecord, InviteRefused, Invitee, LinkKind, NewOwner, NewSession,
    SessionRecord, ThrottleRecord, new_invite_id, new_session_id,
};

use crate::backend::Backend;
use crate::fixtures::T0;

crate::contract!(
    a_setup_link_creates_one_owner_once,
    sessions_carry_the_role_and_end_everywhere,
    invites_are_accepted_once_before_they_expire,
    the_throttle_swaps_only_what_it_read,
    totp_secrets_are_encrypted_at_rest,
    pruning_drops_only_what_is_over,
);

fn owner(email: &str) -> NewOwner {
    NewOwner {
        account_id: AccountId::new(),
        account_name: "Acme".into(),
        application_id: ApplicationId::new(),
        application_name: "Shop".into(),
        user_id: UserId::new(),
        email: email.into(),
        password_hash: "$argon2id$fake".into(),
        now: T0,
    }
}

fn setup_link(expires_at: i64) -> InviteRecord {
    InviteRecord {
        id: new_invite_id(),
        kind: LinkKind::Setup,
        application_id: None,
        email: None,
        role: None,
        invited_by: None,
        created_at: T0,
        expires_at,
        used_at: None,
    }
}

fn session(user: &UserId, app: Option<ApplicationId>, expires_at: i64) -> SessionRecord {
    SessionRecord {
        id: new_session_id(),
        user_id: user.clone(),
        application_id: app,
        second_factor: false,
        created_at: T0,
        last_seen_at: T0,
        expires_at,
        user_agent: Some("test".into()),
        address: Some("127.0.0.1".into()),
    }
}

async fn a_setup_link_creates_one_owner_once(b: &Backend) {
    assert_eq!(b.count_users().await.expect("count"), 0);
    b.create_link(&setup_link(T0 + 1_000), "setup-hash")
        .await
        .expect("link");
    let first = owner("a@acme.test");
    assert!(
        !b.create_owner(&first, Some("other-hash"))
            .await
            .expect("no such link")
    );
    assert!(
        b.create_owner(&first, Some("setup-hash"))
            .await
            .expect("setup")
    );
    assert!(
        !b.create_owner(&owner("b@acme.test"), Some("setup-hash"))
            .await
            .expect("used")
    );
    assert_eq!(b.count_users().await.expect("count"), 1);
    let apps = b
        .memberships(&first.user_id, None, 10)
        .await
        .expect("memberships");
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].0.name, "Shop");
    assert_eq!(apps[0].1, Role::Owner);
    // A fresh link on a database with a user creates nothing.
    b.create_link(&setup_link(T0 + 1_000), "second-hash")
        .await
        .expect("link");
    assert!(
        !b.create_owner(&owner("c@acme.test"), Some("second-hash"))
            .await
            .expect("users exist")
    );
    // Without a link (the CLI), another account and owner.
    assert!(
        b.create_owner(&owner("d@acme.test"), None)
            .await
            .expect("cli")
    );
    assert_eq!(b.count_users().await.expect("count"), 2);
    // An expired link does nothing either.
    b.delete_unused_setup_links().await.expect("delete");
    assert!(
        b.link_by_token_hash("second-hash")
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        b.link_by_token_hash("setup-hash")
            .await
            .expect("read")
            .is_some(),
        "used links stay"
    );
}

async fn sessions_carry_the_role_and_end_everywhere(b: &Backend) {
    let o = owner("a@acme.test");
    b.create_owner(&o, None).await.expect("owner");
    let s = session(&o.user_id, Some(o.application_id.clone()), T0 + 10_000);
    b.create_session(&NewSession {
        record: s.clone(),
        token_hash: "tok-1".into(),
    })
    .await
    .expect("session");
    let other = session(&o.user_id, Some(o.application_id.clone()), T0 + 10_000);
    b.create_session(&NewSession {
        record: other.clone(),
        token_hash: "tok-2".into(),
    })
    .await
    .expect("session");
    let view = b
        .session_by_token_hash("tok-1", T0)
        .await
        .expect("read")
        .expect("live");
    assert_eq!(view.session.id, s.id);
    assert_eq!(view.email, "a@acme.test");
    assert_eq!(view.role, Some(Role::Owner));
    assert!(
        b.session_by_token_hash("tok-1", T0 + 10_000)
            .await
            .expect("read")
            .is_none(),
        "expired"
    );
    // Another node reads the same session.
    let node = b.another_node(None).await;
    assert!(
        node.session_by_token_hash("tok-2", T0)
            .await
            .expect("read")
            .is_some()
    );
    // A password change ends the other sessions, on every node.
    b.set_password(&o.user_id, "$argon2id$new", Some(&s.id))
        .await
        .expect("password");
    assert!(
        node.session_by_token_hash("tok-2", T0)
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        node.session_by_token_hash("tok-1", T0)
            .await
            .expect("read")
            .is_some()
    );
    assert_eq!(
        b.user_sessions(&o.user_id, T0).await.expect("list").len(),
        1
    );
    // The role is read with the session: taking it away shows at once.
    assert!(
        b.remove_role(&o.user_id, &o.application_id)
            .await
            .expect("remove")
    );
    let view = b
        .session_by_token_hash("tok-1", T0)
        .await
        .expect("read")
        .expect("live");
    assert_eq!(view.role, None);
    b.set_role(&o.user_id, &o.application_id, Role::Viewer, T0)
        .await
        .expect("role");
    b.set_role(&o.user_id, &o.application_id, Role::Agent, T0)
        .await
        .expect("role again");
    assert_eq!(
        b.role(&o.user_id, &o.application_id).await.expect("role"),
        Some(Role::Agent)
    );
    // Logout deletes it.
    b.delete_session_by_token_hash("tok-1")
        .await
        .expect("logout");
    assert!(
        node.session_by_token_hash("tok-1", T0)
            .await
            .expect("read")
            .is_none()
    );
    // The second factor swaps the token.
    let mut pending = session(&o.user_id, None, T0 + 1_000);
    pending.second_factor = true;
    b.create_session(&NewSession {
        record: pending.clone(),
        token_hash: "pending".into(),
    })
    .await
    .expect("pending");
    assert!(
        b.complete_second_factor(&pending.id, "full", T0 + 50_000)
            .await
            .expect("done")
    );
    assert!(
        !b.complete_second_factor(&pending.id, "again", T0 + 50_000)
            .await
            .expect("once")
    );
    assert!(
        b.session_by_token_hash("pending", T0)
            .await
            .expect("read")
            .is_none()
    );
    let full = b
        .session_by_token_hash("full", T0)
        .await
        .expect("read")
        .expect("live");
    assert!(!full.session.second_factor);
    assert_eq!(b.end_user_sessions(&o.user_id).await.expect("end"), 1);
}

/// Caps of `open` open invites, and no bound on the people.
fn caps(open: u64) -> InviteCaps {
    InviteCaps {
        open,
        people: u64::MAX,
    }
}

async fn invites_are_accepted_once_before_they_expire(b: &Backend) {
    let o = owner("a@acme.test");
    b.create_owner(&o, None).await.expect("owner");
    let invite = |email: &str| InviteRecord {
        id: new_invite_id(),
        kind: LinkKind::Invite,
        application_id: Some(o.application_id.clone()),
        email: Some(email.into()),
        role: Some(Role::Agent),
        invited_by: Some(o.user_id.clone()),
        created_at: T0,
        expires_at: T0 + 1_000,
        used_at: None,
    };
    let a = invite("agent@acme.test");
    for (link, hash) in [(&a, "inv-a"), (&invite("late@acme.test"), "inv-late")] {
        assert_eq!(
            b.create_invite(link, hash, caps(3), T0)
                .await
                .expect("invite"),
            None
        );
    }
    let gone = invite("gone@acme.test");
    assert_eq!(
        b.create_invite(&gone, "inv-gone", caps(3), T0)
            .await
            .expect("invite"),
        None
    );
    // Three open invites: a fourth is past a cap of 3 and is not written; once they have
    // expired, they no longer count.
    let fourth = invite("fourth@acme.test");
    assert_eq!(
        b.create_invite(&fourth, "inv-4", caps(3), T0)
            .await
            .expect("capped"),
        Some(InviteRefused::OpenInvites)
    );
    // The owner and three open invites are four people: a people cap of 4 takes no more.
    let people = InviteCaps {
        open: 100,
        people: 4,
    };
    assert_eq!(
        b.create_invite(&fourth, "inv-4", people, T0)
            .await
            .expect("capped"),
        Some(InviteRefused::People)
    );
    assert!(b.link_by_token_hash("inv-4").await.expect("read").is_none());
    assert_eq!(
        b.pending_invites(&o.application_id, T0)
            .await
            .expect("list")
            .len(),
        3
    );
    assert!(
        b.revoke_invite(&o.application_id, &gone.id)
            .await
            .expect("revoke")
    );
    let new_user = |email: &str| Invitee::New {
        user_id: UserId::new(),
        account_id: o.account_id.clone(),
        email: email.into(),
        password_hash: "$argon2id$x".into(),
    };
    assert!(
        !b.accept_invite("inv-gone", &new_user("gone@acme.test"), T0)
            .await
            .expect("revoked")
    );
    assert!(
        b.accept_invite("inv-a", &new_user("agent@acme.test"), T0)
            .await
            .expect("accept")
    );
    assert!(
        !b.accept_invite("inv-a", &new_user("agent2@acme.test"), T0)
            .await
            .expect("once")
    );
    assert!(
        !b.accept_invite("inv-late", &new_user("late@acme.test"), T0 + 1_000)
            .await
            .expect("expired")
    );
    // Expired invites do not count; the owner and the agent who accepted do.
    assert_eq!(
        b.create_invite(&fourth, "inv-4", caps(1), T0 + 1_000)
            .await
            .expect("expired invites do not count"),
        None
    );
    let fifth = invite("fifth@acme.test");
    let people = InviteCaps {
        open: 100,
        people: 2,
    };
    assert_eq!(
        b.create_invite(&fifth, "inv-5", people, T0 + 1_000)
            .await
            .expect("two users, no open invite"),
        Some(InviteRefused::People)
    );
    assert!(
        b.user_by_email("late@acme.test")
            .await
            .expect("read")
            .is_none()
    );
    let members = b
        .members(&o.application_id, None, 10)
        .await
        .expect("members");
    let roles: Vec<(&str, Role)> = members.iter().map(|m| (m.email.as_str(), m.role)).collect();
    assert_eq!(
        roles,
        [
            ("a@acme.test", Role::Owner),
            ("agent@acme.test", Role::Agent)
        ]
    );
    // A page at a time, by email.
    let first = b.members(&o.application_id, None, 1).await.expect("page");
    assert_eq!(first.len(), 1);
    let next = b
        .members(&o.application_id, Some(&first[0].email), 1)
        .await
        .expect("page");
    assert_eq!(next[0].email, "agent@acme.test");
    assert!(
        b.members(&o.application_id, Some(&next[0].email), 1)
            .await
            .expect("page")
            .is_empty()
    );
    // A second application with the account's owner (its one owner, the agent is not); a
    // third is past a cap of 2 and is not written.
    assert_eq!(
        b.account_owners(&o.account_id).await.expect("owners"),
        std::slice::from_ref(&o.user_id)
    );
    let second = ApplicationId::new();
    assert!(
        b.create_application_with_members(
            &second,
            &o.account_id,
            "Second",
            &[(o.user_id.clone(), Role::Owner)],
            2,
            T0,
        )
        .await
        .expect("app")
    );
    assert!(
        !b.create_application_with_members(
            &ApplicationId::new(),
            &o.account_id,
            "Third",
            &[(o.user_id.clone(), Role::Owner)],
            2,
            T0,
        )
        .await
        .expect("capped")
    );
    assert_eq!(
        b.account_applications(&o.account_id)
            .await
            .expect("apps")
            .len(),
        2
    );
    // The user's applications a page at a time, by id; one membership by its key.
    let all = b.memberships(&o.user_id, None, 10).await.expect("m");
    assert_eq!(all.len(), 2);
    assert!(all[0].0.id < all[1].0.id);
    let first = b.memberships(&o.user_id, None, 1).await.expect("m");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0.id, all[0].0.id);
    let rest = b
        .memberships(&o.user_id, Some(&first[0].0.id), 1)
        .await
        .expect("m");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].0.id, all[1].0.id);
    assert!(
        b.memberships(&o.user_id, Some(&rest[0].0.id), 1)
            .await
            .expect("m")
            .is_empty()
    );
    let one = b
        .membership(&o.user_id, &all[1].0.id)
        .await
        .expect("m")
        .expect("a role there");
    assert_eq!(
        (one.0.name.as_str(), one.1),
        (all[1].0.name.as_str(), all[1].1)
    );
    assert!(
        b.membership(&o.user_id, &ApplicationId::new())
            .await
            .expect("m")
            .is_none()
    );
}

async fn the_throttle_swaps_only_what_it_read(b: &Backend) {
    assert!(b.throttle("email:x").await.expect("read").is_none());
    let one = ThrottleRecord {
        failures: 1,
        next_at: 0,
        updated_at: T0,
    };
    assert!(
        b.swap_throttle("email:x", None, &one)
            .await
            .expect("insert")
    );
    assert!(
        !b.swap_throttle("email:x", None, &one)
            .await
            .expect("raced insert")
    );
    let two = ThrottleRecord {
        failures: 2,
        next_at: T0 + 1_000,
        updated_at: T0 + 1,
    };
    assert!(
        b.swap_throttle("email:x", Some(&one), &two)
            .await
            .expect("swap")
    );
    assert!(
        !b.swap_throttle("email:x", Some(&one), &two)
            .await
            .expect("stale")
    );
    assert_eq!(b.throttle("email:x").await.expect("read"), Some(two));
    b.clear_throttle("email:x").await.expect("clear");
    assert!(b.throttle("email:x").await.expect("read").is_none());
}

async fn totp_secrets_are_encrypted_at_rest(b: &Backend) {
    let o = owner("a@acme.test");
    b.create_owner(&o, None).await.expect("owner");
    let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    b.set_totp_pending(&o.user_id, Some(secret))
        .await
        .expect("pending");
    assert_eq!(
        b.totp(&o.user_id).await.expect("read"),
        (None, Some(secret.into()))
    );
    assert!(
        !b.user(&o.user_id)
            .await
            .expect("user")
            .expect("some")
            .totp_enabled
    );
    b.confirm_totp(&o.user_id).await.expect("confirm");
    assert_eq!(
        b.totp(&o.user_id).await.expect("read"),
        (Some(secret.into()), None)
    );
    assert!(
        b.user(&o.user_id)
            .await
            .expect("user")
            .expect("some")
            .totp_enabled
    );
    let raw = b.raw_totp_secret(&o.user_id).await.expect("stored");
    assert!(
        !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the secret is stored encrypted"
    );
    // Another master key cannot read it.
    let other = b.another_node(Some([9; 32])).await;
    assert!(other.totp(&o.user_id).await.is_err());
    // A time step is accepted once, and only if newer than the last accepted one.
    assert!(b.accept_totp_step(&o.user_id, 100).await.expect("step"));
    assert!(!b.accept_totp_step(&o.user_id, 100).await.expect("replay"));
    assert!(!b.accept_totp_step(&o.user_id, 99).await.expect("older"));
    assert!(b.accept_totp_step(&o.user_id, 101).await.expect("newer"));
    // Two nodes accepting the same step at once: exactly one wins.
    let node = b.another_node(None).await;
    let (x, y) = tokio::join!(
        b.accept_totp_step(&o.user_id, 102),
        node.accept_totp_step(&o.user_id, 102)
    );
    assert_eq!(
        u8::from(x.expect("x")) + u8::from(y.expect("y")),
        1,
        "one of two concurrent acceptances of a step wins"
    );
    b.remove_totp(&o.user_id).await.expect("remove");
    assert_eq!(b.totp(&o.user_id).await.expect("read"), (None, None));
    // A new secret starts afresh.
    assert!(
        b.accept_totp_step(&o.user_id, 50)
            .await
            .expect("after removal")
    );
}

async fn pruning_drops_only_what_is_over(b: &Backend) {
    let o = owner("a@acme.test");
    b.create_owner(&o, None).await.expect("owner");
    for (hash, expires) in [("old", T0 + 10), ("live", T0 + 10_000)] {
        b.create_session(&NewSession {
            record: session(&o.user_id, None, expires),
            token_hash: hash.into(),
        })
        .await
        .expect("session");
    }
    let idle = ThrottleRecord {
        failures: 3,
        next_at: T0,
        updated_at: T0,
    };
    let waiting = ThrottleRecord {
        failures: 30,
        next_at: T0 + 1_000_000,
        updated_at: T0,
    };
    b.swap_throttle("email:idle", None, &idle)
        .await
        .expect("row");
    b.swap_throttle("email:waiting", None, &waiting)
        .await
        .expect("row");
    b.prune_identity(T0 + 100, T0 + 1).await.expect("prune");
    let node = b.another_node(None).await;
    assert!(
        node.session_by_token_hash("live", T0)
            .await
            .expect("read")
            .is_some()
    );
    assert_eq!(
        b.user_sessions(&o.user_id, T0).await.expect("list").len(),
        1
    );
    assert!(b.throttle("email:idle").await.expect("read").is_none());
    assert_eq!(
        b.throttle("email:waiting").await.expect("read"),
        Some(waiting)
    );
}
