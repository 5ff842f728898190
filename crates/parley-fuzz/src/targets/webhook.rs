//! The webhook envelope Meta POSTs, as the processor reads it: `WebhookPayload` from the raw
//! body, then `Change::parse` for every change, then the ids the engine parses at the edge.
//!
//! Properties: no panic; a typed change names the field it came from; an unknown field keeps
//! its value; the envelope re-serialized parses again into the same entries, fields and ids;
//! a typed value re-serialized reads back as the same type with the same ids.

use parley_domain::{MessageId, PhoneNumberId, WaId, Wamid};
use parley_meta::{WebhookChange, WebhookPayload};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::{Outcome, Target, message_shape, signature};

pub fn target() -> Target {
    Target {
        name: "webhook",
        dictionary: DICTIONARY,
        max_len: 16 * 1024,
        check,
    }
}

const DICTIONARY: &[&[u8]] = &[
    b"\"messages\"",
    b"\"statuses\"",
    b"\"contacts\"",
    b"\"metadata\"",
    b"\"errors\"",
    b"\"entry\"",
    b"\"changes\"",
    b"\"field\"",
    b"\"value\"",
    b"\"object\"",
    b"\"id\"",
    b"\"status\"",
    b"\"timestamp\"",
    b"\"from\"",
    b"\"type\"",
    b"\"text\"",
    b"\"body\"",
    b"\"button\"",
    b"\"interactive\"",
    b"\"button_reply\"",
    b"\"title\"",
    b"\"payload\"",
    b"\"context\"",
    b"\"code\"",
    b"\"error_data\"",
    b"\"details\"",
    b"\"biz_opaque_callback_data\"",
    b"\"recipient_id\"",
    b"\"pricing\"",
    b"\"conversation\"",
    b"\"phone_number_id\"",
    b"\"wa_id\"",
    b"\"event\"",
    b"\"message_template_id\"",
    b"\"message_template_name\"",
    b"\"message_template_language\"",
    b"\"reason\"",
    b"\"decision\"",
    b"\"waba_info\"",
    b"\"waba_id\"",
    b"\"restriction_info\"",
    b"\"expiration\"",
    b"\"ban_info\"",
    b"\"current_limit\"",
    b"\"max_daily_conversations_per_business\"",
    b"\"user_preferences\"",
    b"\"message_template_status_update\"",
    b"\"message_template_quality_update\"",
    b"\"template_category_update\"",
    b"\"message_template_components_update\"",
    b"\"phone_number_quality_update\"",
    b"\"phone_number_name_update\"",
    b"\"account_review_update\"",
    b"\"account_update\"",
    b"\"business_capability_update\"",
    b"\"sent\"",
    b"\"delivered\"",
    b"\"read\"",
    b"\"failed\"",
    b"\"TIER_2K\"",
    b"\"msg_0190f0a1b2c3d4e5f60718293a4b5c6d\"",
    b"\"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI\"",
    b"null",
    b"true",
    b"{}",
    b"[]",
    b"{\"\":{}}",
    b"[[[[[[[[[[[[[[[[",
    b"1750030073",
    b"2000",
];

/// The ids and names one change carries, as the engine would read them.
fn facts(change: &WebhookChange) -> Vec<String> {
    let mut out = vec![format!("field={}", change.field())];
    match change {
        WebhookChange::Messages(m) => {
            if let Some(meta) = &m.metadata {
                out.push(format!("pnid={:?}", meta.phone_number_id));
            }
            for c in &m.contacts {
                out.push(format!("contact={:?}", c.wa_id));
            }
            for msg in &m.messages {
                out.push(format!(
                    "in={} from={:?} kind={:?} text={:?}",
                    msg.id,
                    msg.from,
                    msg.kind,
                    msg.text()
                ));
            }
            for s in &m.statuses {
                out.push(format!(
                    "status={} {} cb={:?} t={:?} errors={:?}",
                    s.id,
                    s.status.as_str(),
                    s.biz_opaque_callback_data,
                    s.unix_time(),
                    s.errors
                        .iter()
                        .map(|e| (e.code, e.description()))
                        .collect::<Vec<_>>()
                ));
            }
        }
        WebhookChange::TemplateStatus(t) => {
            out.push(format!("tpl={:?} {:?}", t.template, t.event));
        }
        WebhookChange::TemplateQuality(t) => {
            out.push(format!("tpl={:?} {:?}", t.template, t.new_quality_score));
        }
        WebhookChange::TemplateCategory(t) => {
            out.push(format!("tpl={:?} {:?}", t.template, t.new_category));
        }
        WebhookChange::TemplateComponents(t) => {
            out.push(format!("tpl={:?}", t.template));
        }
        WebhookChange::PhoneNumberQuality(p) => {
            out.push(format!(
                "pnq={:?} {:?} {:?}",
                p.display_phone_number, p.event, p.max_daily_conversations_per_business
            ));
        }
        WebhookChange::PhoneNumberName(p) => {
            out.push(format!("pnn={:?} {:?}", p.display_phone_number, p.decision));
        }
        WebhookChange::AccountReview(r) => out.push(format!("review={:?}", r.decision)),
        WebhookChange::AccountUpdate(a) => {
            out.push(format!(
                "account={:?} waba={:?}",
                a.event,
                a.waba_info.as_ref().map(|w| &w.waba_id)
            ));
        }
        WebhookChange::CapabilityUpdate(c) => {
            out.push(format!(
                "capability={:?}",
                c.max_daily_conversations_per_business
            ));
        }
        WebhookChange::UserPreferences(u) => {
            for p in &u.user_preferences {
                out.push(format!("pref={:?} {:?}", p.wa_id, p.value));
            }
        }
        WebhookChange::History(h) => {
            for item in &h.history {
                out.push(format!(
                    "history meta={:?} errors={:?}",
                    item.metadata
                        .as_ref()
                        .map(|m| (m.phase, m.chunk_order, m.progress)),
                    item.errors.iter().map(|e| e.code).collect::<Vec<_>>()
                ));
                for thread in &item.threads {
                    for m in &thread.messages {
                        out.push(format!(
                            "thread={} msg={} from={:?} kind={:?} text={:?} ctx={:?}",
                            thread.id,
                            m.id,
                            m.from,
                            m.kind,
                            m.text(),
                            m.history_context.as_ref().map(|c| &c.status)
                        ));
                    }
                }
                for m in &item.messages {
                    out.push(format!("late={} kind={:?}", m.id, m.kind));
                }
            }
        }
        WebhookChange::StateSync(v) => {
            for item in &v.state_sync {
                out.push(format!(
                    "sync={:?} {:?} {:?}",
                    item.action,
                    item.contact.as_ref().map(|c| &c.phone_number),
                    item.contact.as_ref().map(|c| &c.full_name)
                ));
            }
        }
        WebhookChange::MessageEchoes(v) => {
            for m in &v.message_echoes {
                out.push(format!("echo={} to={:?} text={:?}", m.id, m.to, m.text()));
            }
        }
        WebhookChange::Unknown { error, .. } => {
            out.push(format!("unknown error={}", error.is_some()))
        }
    }
    out
}

/// The engine's parse-at-the-edge of the ids a change carries: must not panic.
fn edge_ids(change: &WebhookChange) {
    if let WebhookChange::Messages(m) = change {
        if let Some(pnid) = m
            .metadata
            .as_ref()
            .and_then(|m| m.phone_number_id.as_deref())
        {
            let _ = PhoneNumberId::parse(pnid);
        }
        for msg in &m.messages {
            let _ = Wamid::parse(&msg.id);
            if let Some(from) = &msg.from {
                let _ = WaId::parse(from);
            }
            let _ = msg.text();
            // The normalized body the engine stores: built and serialized without a panic.
            let _ = serde_json::to_value(msg.body());
        }
        for s in &m.statuses {
            let _ = Wamid::parse(&s.id);
            let _ = s.status.message_state();
            if let Some(cb) = &s.biz_opaque_callback_data {
                let _ = MessageId::parse(cb);
            }
        }
    }
}

/// A typed value written back to JSON and read again as its field.
fn value_round_trip(change: &WebhookChange) -> Result<(), String> {
    let json = match change {
        WebhookChange::Messages(v) => serde_json::to_string(v),
        WebhookChange::TemplateStatus(v) => serde_json::to_string(v),
        WebhookChange::TemplateQuality(v) => serde_json::to_string(v),
        WebhookChange::TemplateCategory(v) => serde_json::to_string(v),
        WebhookChange::TemplateComponents(v) => serde_json::to_string(v),
        WebhookChange::PhoneNumberQuality(v) => serde_json::to_string(v),
        WebhookChange::PhoneNumberName(v) => serde_json::to_string(v),
        WebhookChange::AccountReview(v) => serde_json::to_string(v),
        WebhookChange::AccountUpdate(v) => serde_json::to_string(v),
        WebhookChange::CapabilityUpdate(v) => serde_json::to_string(v),
        WebhookChange::UserPreferences(v) => serde_json::to_string(v),
        WebhookChange::History(v) => serde_json::to_string(v),
        WebhookChange::StateSync(v) => serde_json::to_string(v),
        WebhookChange::MessageEchoes(v) => serde_json::to_string(v),
        WebhookChange::Unknown { .. } => return Ok(()),
    }
    .map_err(|e| format!("a typed value does not serialize\n{}: {e}", change.field()))?;
    let raw = RawValue::from_string(json.clone())
        .map_err(|e| format!("a serialized value is no JSON\n{}: {e}", change.field()))?;
    let again = WebhookChange::parse(change.field(), Some(&raw));
    if let WebhookChange::Unknown { error, .. } = &again {
        return Err(format!(
            "a typed value, serialized, no longer reads\n{}: {error:?}\nserialized: {json}",
            change.field()
        ));
    }
    let (a, b) = (facts(change), facts(&again));
    if a != b {
        return Err(format!(
            "a typed value changed in a serialize/parse round trip\n{}\n{a:?}\n{b:?}",
            change.field()
        ));
    }
    Ok(())
}

fn check(data: &[u8]) -> Outcome {
    let payload: WebhookPayload = match serde_json::from_slice(data) {
        Ok(p) => p,
        Err(e) => {
            return Ok(signature(&[
                b"no envelope",
                format!("{:?}", e.classify()).as_bytes(),
            ]));
        }
    };
    let mut all_facts = Vec::new();
    let mut sig: Vec<Vec<u8>> = Vec::new();
    for entry in &payload.entry {
        all_facts.push(format!("entry={} time={:?}", entry.id, entry.time));
        for c in &entry.changes {
            let change = c.parse();
            if change.field() != c.field {
                return Err(format!(
                    "a change parsed as another field\n{:?} as {:?}",
                    c.field,
                    change.field()
                ));
            }
            if let WebhookChange::Unknown {
                value, error: None, ..
            } = &change
            {
                let raw: Value = c.value.as_deref().map_or(Value::Null, |raw| {
                    serde_json::from_str(raw.get()).unwrap_or(Value::Null)
                });
                if *value != raw {
                    return Err("an unknown field lost its value".into());
                }
            }
            edge_ids(&change);
            value_round_trip(&change)?;
            let f = facts(&change);
            sig.push(match &change {
                WebhookChange::Unknown { error: Some(e), .. } => message_shape(e),
                other => other.field().as_bytes().to_vec(),
            });
            all_facts.extend(f);
        }
    }
    // The envelope written back and read again keeps its entries, fields and ids.
    let text = serde_json::to_string(&payload)
        .map_err(|e| format!("a parsed envelope does not serialize\n{e}"))?;
    let again: WebhookPayload = serde_json::from_str(&text)
        .map_err(|e| format!("a re-serialized envelope does not parse\n{e}\n{text}"))?;
    let again_facts: Vec<String> = again
        .entry
        .iter()
        .flat_map(|entry| {
            std::iter::once(format!("entry={} time={:?}", entry.id, entry.time))
                .chain(entry.changes.iter().flat_map(|c| facts(&c.parse())))
        })
        .collect();
    if all_facts != again_facts {
        return Err(format!(
            "the envelope changed in a serialize/parse round trip\n{all_facts:?}\n{again_facts:?}"
        ));
    }
    let refs: Vec<&[u8]> = sig.iter().map(Vec::as_slice).collect();
    Ok(signature(&refs))
}
