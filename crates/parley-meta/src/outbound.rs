//! Request bodies for `POST /{phone-number-id}/messages`, in the exact shapes of Meta's spec
//! (`shared/meta/business-messaging-api_v23.0.yaml`, "Send Message Template …").

use parley_domain::{ButtonSubType, HeaderFormat, RenderedHeader, RenderedTemplate};
use serde_json::{Map, Value, json};

/// A free-form text message.
pub fn text_message_body(
    to: &str,
    body: &str,
    preview_url: bool,
    reply_to: Option<&str>,
    callback_data: Option<&str>,
) -> Value {
    let mut v = envelope(to, "text", reply_to, callback_data);
    v.insert(
        "text".into(),
        json!({"body": body, "preview_url": preview_url}),
    );
    Value::Object(v)
}

/// A template message with its parameters per component.
pub fn template_message_body(
    to: &str,
    template: &RenderedTemplate,
    reply_to: Option<&str>,
    callback_data: Option<&str>,
) -> Value {
    let mut components = Vec::new();
    if let Some(header) = &template.header {
        let param = match header {
            RenderedHeader::Text {
                text,
                parameter_name,
            } => text_param(parameter_name.as_deref(), text),
            RenderedHeader::Media { kind, link, id } => {
                let key = match kind {
                    HeaderFormat::Video => "video",
                    HeaderFormat::Document => "document",
                    _ => "image",
                };
                let mut media = Map::new();
                if let Some(link) = link {
                    media.insert("link".into(), json!(link));
                }
                if let Some(id) = id {
                    media.insert("id".into(), json!(id));
                }
                json!({"type": key, key: Value::Object(media)})
            }
            RenderedHeader::Location {
                latitude,
                longitude,
                name,
                address,
            } => {
                let mut place = Map::new();
                place.insert("latitude".into(), json!(latitude));
                place.insert("longitude".into(), json!(longitude));
                if let Some(name) = name {
                    place.insert("name".into(), json!(name));
                }
                if let Some(address) = address {
                    place.insert("address".into(), json!(address));
                }
                json!({"type": "location", "location": Value::Object(place)})
            }
        };
        components.push(json!({"type": "header", "parameters": [param]}));
    }
    if !template.body.is_empty() {
        let params: Vec<Value> = template
            .body
            .iter()
            .map(|p| text_param(p.parameter_name.as_deref(), &p.text))
            .collect();
        components.push(json!({"type": "body", "parameters": params}));
    }
    for button in &template.buttons {
        let (sub_type, param) = match button.sub_type {
            ButtonSubType::Url => ("url", json!({"type": "text", "text": button.text})),
            ButtonSubType::CopyCode => (
                "copy_code",
                json!({"type": "coupon_code", "coupon_code": button.text}),
            ),
            ButtonSubType::QuickReply => (
                "quick_reply",
                json!({"type": "payload", "payload": button.text}),
            ),
        };
        components.push(json!({
            "type": "button",
            "sub_type": sub_type,
            "index": button.index.to_string(),
            "parameters": [param],
        }));
    }
    let mut template_obj = Map::new();
    template_obj.insert("name".into(), json!(template.name));
    template_obj.insert("language".into(), json!({"code": template.language}));
    if !components.is_empty() {
        template_obj.insert("components".into(), Value::Array(components));
    }
    let mut v = envelope(to, "template", reply_to, callback_data);
    v.insert("template".into(), Value::Object(template_obj));
    Value::Object(v)
}

/// Marks an inbound message as read (blue ticks).
pub fn mark_read_body(wamid: &str) -> Value {
    json!({"messaging_product": "whatsapp", "status": "read", "message_id": wamid})
}

fn text_param(parameter_name: Option<&str>, text: &str) -> Value {
    match parameter_name {
        Some(name) => json!({"type": "text", "parameter_name": name, "text": text}),
        None => json!({"type": "text", "text": text}),
    }
}

fn envelope(
    to: &str,
    kind: &str,
    reply_to: Option<&str>,
    callback_data: Option<&str>,
) -> Map<String, Value> {
    let mut v = Map::new();
    v.insert("messaging_product".into(), json!("whatsapp"));
    v.insert("recipient_type".into(), json!("individual"));
    v.insert("to".into(), json!(to));
    v.insert("type".into(), json!(kind));
    if let Some(wamid) = reply_to {
        v.insert("context".into(), json!({"message_id": wamid}));
    }
    if let Some(data) = callback_data {
        v.insert("biz_opaque_callback_data".into(), json!(data));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_domain::{RenderedButton, RenderedParam};

    #[test]
    fn template_body_matches_meta_shape() {
        let t = RenderedTemplate {
            name: "spring_sale".into(),
            language: "en".into(),
            header: Some(RenderedHeader::Media {
                kind: HeaderFormat::Image,
                link: Some("https://img.example.com/a.jpg".into()),
                id: None,
            }),
            body: vec![
                RenderedParam {
                    parameter_name: None,
                    text: "Anna".into(),
                },
                RenderedParam {
                    parameter_name: None,
                    text: "20%".into(),
                },
            ],
            buttons: vec![RenderedButton {
                index: 0,
                sub_type: ButtonSubType::Url,
                text: "anna".into(),
            }],
        };
        let v = template_message_body("+4915112345678", &t, None, Some("msg_1"));
        assert_eq!(
            v,
            json!({
                "messaging_product": "whatsapp", "recipient_type": "individual",
                "to": "+4915112345678", "type": "template",
                "biz_opaque_callback_data": "msg_1",
                "template": {"name": "spring_sale", "language": {"code": "en"}, "components": [
                    {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://img.example.com/a.jpg"}}]},
                    {"type": "body", "parameters": [{"type": "text", "text": "Anna"}, {"type": "text", "text": "20%"}]},
                    {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "anna"}]}
                ]}
            })
        );
    }

    #[test]
    fn text_body_with_reply_context() {
        let v = text_message_body("+4915112345678", "hello", false, Some("wamid.X"), None);
        assert_eq!(v["context"]["message_id"], "wamid.X");
        assert_eq!(v["text"]["body"], "hello");
        assert!(v.get("biz_opaque_callback_data").is_none());
    }
}
