//! Request bodies for `POST /{phone-number-id}/messages`, in the exact shapes of Meta's spec
//! (`shared/meta/business-messaging-api_v23.0.yaml`, "Send Message Template …").

use parley_domain::{ButtonSubType, HeaderFormat, RenderedHeader, RenderedTemplate};
use serde::Serialize;
use serde_json::{Value, json};

/// A free-form text message.
pub fn text_message_body(
    to: &str,
    body: &str,
    preview_url: bool,
    reply_to: Option<&str>,
    callback_data: Option<&str>,
) -> Value {
    serde_json::to_value(text_message(to, body, preview_url, reply_to, callback_data))
        .unwrap_or_default()
}

/// A template message with its parameters per component.
pub fn template_message_body(
    to: &str,
    template: &RenderedTemplate,
    reply_to: Option<&str>,
    callback_data: Option<&str>,
) -> Value {
    serde_json::to_value(template_message(to, template, reply_to, callback_data))
        .unwrap_or_default()
}

/// `text_message_body` as a typed value the sender serializes straight into the request
/// (no `Value` tree per send).
pub fn text_message<'a>(
    to: &'a str,
    body: &'a str,
    preview_url: bool,
    reply_to: Option<&'a str>,
    callback_data: Option<&'a str>,
) -> Outbound<'a> {
    Outbound {
        text: Some(TextBody { body, preview_url }),
        ..envelope(to, "text", reply_to, callback_data)
    }
}

/// `template_message_body` as a typed value the sender serializes straight into the request.
pub fn template_message<'a>(
    to: &'a str,
    template: &'a RenderedTemplate,
    reply_to: Option<&'a str>,
    callback_data: Option<&'a str>,
) -> Outbound<'a> {
    let mut components = Vec::with_capacity(2 + template.buttons.len());
    if let Some(header) = &template.header {
        let param = match header {
            RenderedHeader::Text {
                text,
                parameter_name,
            } => HeaderParam::Text(text_param(parameter_name.as_deref(), text)),
            RenderedHeader::Media { kind, link, id } => {
                let media = Media {
                    link: link.as_deref(),
                    id: id.as_deref(),
                };
                match kind {
                    HeaderFormat::Video => HeaderParam::Video {
                        kind: "video",
                        video: media,
                    },
                    HeaderFormat::Document => HeaderParam::Document {
                        kind: "document",
                        document: media,
                    },
                    _ => HeaderParam::Image {
                        kind: "image",
                        image: media,
                    },
                }
            }
            RenderedHeader::Location {
                latitude,
                longitude,
                name,
                address,
            } => HeaderParam::Location {
                kind: "location",
                location: Place {
                    latitude: *latitude,
                    longitude: *longitude,
                    name: name.as_deref(),
                    address: address.as_deref(),
                },
            },
        };
        components.push(Component::Header {
            parameters: vec![param],
        });
    }
    if !template.body.is_empty() {
        components.push(Component::Body {
            parameters: template
                .body
                .iter()
                .map(|p| text_param(p.parameter_name.as_deref(), &p.text))
                .collect(),
        });
    }
    for button in &template.buttons {
        let (sub_type, param) = match button.sub_type {
            ButtonSubType::Url => ("url", ButtonParam::Text(text_param(None, &button.text))),
            ButtonSubType::CopyCode => (
                "copy_code",
                ButtonParam::Coupon {
                    kind: "coupon_code",
                    coupon_code: &button.text,
                },
            ),
            ButtonSubType::QuickReply => (
                "quick_reply",
                ButtonParam::Payload {
                    kind: "payload",
                    payload: &button.text,
                },
            ),
        };
        components.push(Component::Button {
            sub_type,
            index: button.index.to_string(),
            parameters: vec![param],
        });
    }
    Outbound {
        template: Some(TemplateBody {
            name: &template.name,
            language: Language {
                code: &template.language,
            },
            components,
        }),
        ..envelope(to, "template", reply_to, callback_data)
    }
}

/// The smallest and largest time-to-live of a marketing template on the Marketing Messages
/// API: 12 h to 30 days (META_2026 §7).
pub const MARKETING_TTL_SECONDS: std::ops::RangeInclusive<i64> = 43_200..=2_592_000;

/// A `POST /{phone-number-id}/marketing_messages` body (META_2026 §7): the `/messages` body
/// (`to` or `recipient`, §3.3) with `product_policy` `CLOUD_API_FALLBACK` (Meta sends it
/// through the Cloud API while the WABA's onboarding is not complete; refused with 131063
/// when marketing is off there) and, when given, the template's `message_send_ttl_seconds`.
pub fn marketing_message_body(outbound: &Outbound<'_>, ttl_seconds: Option<i64>) -> Value {
    let mut v = serde_json::to_value(outbound).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("product_policy".into(), json!("CLOUD_API_FALLBACK"));
    }
    if let Some(ttl) = ttl_seconds
        && let Some(t) = v.get_mut("template").and_then(Value::as_object_mut)
    {
        t.insert("message_send_ttl_seconds".into(), json!(ttl));
    }
    v
}

/// Marks an inbound message as read (blue ticks).
pub fn mark_read_body(wamid: &str) -> Value {
    json!({"messaging_product": "whatsapp", "status": "read", "message_id": wamid})
}

/// Marks an inbound message as read and shows the typing indicator (META_2026 §8.1: one call;
/// the indicator goes when the business replies, or after 25 s).
pub fn typing_indicator_body(wamid: &str) -> Value {
    json!({"messaging_product": "whatsapp", "status": "read", "message_id": wamid,
           "typing_indicator": {"type": "text"}})
}

/// A `POST /{phone-number-id}/messages` body.
#[derive(Debug, Serialize)]
pub struct Outbound<'a> {
    messaging_product: &'static str,
    recipient_type: &'static str,
    /// The phone number; absent when the message goes to a BSUID.
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
    /// The BSUID (META_2026 §3.3), only when no phone is known (`to` would win at Meta).
    #[serde(skip_serializing_if = "Option::is_none")]
    recipient: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<Context<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    biz_opaque_callback_data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<TextBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    template: Option<TemplateBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<MediaBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    video: Option<MediaBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audio: Option<MediaBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<MediaBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sticker: Option<MediaBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reaction: Option<ReactionBody<'a>>,
}

/// A media object of a send: `id` (uploaded to `POST /{phone-number-id}/media`) or `link`,
/// with a caption (not for audio and stickers) and a file name (documents).
#[derive(Debug, Serialize)]
struct MediaBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    caption: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct ReactionBody<'a> {
    message_id: &'a str,
    emoji: &'a str,
}

/// An image, video, audio, document or sticker message (`kind`; anything else goes as a
/// document). `caption` is dropped for audio and stickers, `filename` kept for documents only.
#[allow(clippy::too_many_arguments)]
pub fn media_message<'a>(
    to: &'a str,
    kind: &str,
    id: Option<&'a str>,
    link: Option<&'a str>,
    caption: Option<&'a str>,
    filename: Option<&'a str>,
    reply_to: Option<&'a str>,
    callback_data: Option<&'a str>,
) -> Outbound<'a> {
    let kind: &'static str = match kind {
        "image" => "image",
        "video" => "video",
        "audio" => "audio",
        "sticker" => "sticker",
        _ => "document",
    };
    let body = MediaBody {
        id,
        link,
        caption: caption.filter(|_| !matches!(kind, "audio" | "sticker")),
        filename: filename.filter(|_| kind == "document"),
    };
    let mut out = envelope(to, kind, reply_to, callback_data);
    match kind {
        "image" => out.image = Some(body),
        "video" => out.video = Some(body),
        "audio" => out.audio = Some(body),
        "sticker" => out.sticker = Some(body),
        _ => out.document = Some(body),
    }
    out
}

/// A reaction to `message_id` (an empty emoji removes the reaction). No reply context.
pub fn reaction_message<'a>(
    to: &'a str,
    message_id: &'a str,
    emoji: &'a str,
    callback_data: Option<&'a str>,
) -> Outbound<'a> {
    Outbound {
        reaction: Some(ReactionBody { message_id, emoji }),
        ..envelope(to, "reaction", None, callback_data)
    }
}

#[derive(Debug, Serialize)]
struct Context<'a> {
    message_id: &'a str,
}

#[derive(Debug, Serialize)]
struct TextBody<'a> {
    body: &'a str,
    preview_url: bool,
}

#[derive(Debug, Serialize)]
struct TemplateBody<'a> {
    name: &'a str,
    language: Language<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    components: Vec<Component<'a>>,
}

#[derive(Debug, Serialize)]
struct Language<'a> {
    code: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Component<'a> {
    Header {
        parameters: Vec<HeaderParam<'a>>,
    },
    Body {
        parameters: Vec<TextParam<'a>>,
    },
    Button {
        sub_type: &'static str,
        index: String,
        parameters: Vec<ButtonParam<'a>>,
    },
}

#[derive(Debug, Serialize)]
struct TextParam<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameter_name: Option<&'a str>,
    text: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum HeaderParam<'a> {
    Text(TextParam<'a>),
    Image {
        #[serde(rename = "type")]
        kind: &'static str,
        image: Media<'a>,
    },
    Video {
        #[serde(rename = "type")]
        kind: &'static str,
        video: Media<'a>,
    },
    Document {
        #[serde(rename = "type")]
        kind: &'static str,
        document: Media<'a>,
    },
    Location {
        #[serde(rename = "type")]
        kind: &'static str,
        location: Place<'a>,
    },
}

#[derive(Debug, Serialize)]
struct Media<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct Place<'a> {
    latitude: f64,
    longitude: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<&'a str>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum ButtonParam<'a> {
    Text(TextParam<'a>),
    Coupon {
        #[serde(rename = "type")]
        kind: &'static str,
        coupon_code: &'a str,
    },
    Payload {
        #[serde(rename = "type")]
        kind: &'static str,
        payload: &'a str,
    },
}

fn text_param<'a>(parameter_name: Option<&'a str>, text: &'a str) -> TextParam<'a> {
    TextParam {
        kind: "text",
        parameter_name,
        text,
    }
}

/// `to` is the recipient's address: an E.164 phone goes as `to`, a business-scoped user id
/// (BSUID) as `recipient` (META_2026 §3.3).
fn envelope<'a>(
    to: &'a str,
    kind: &'static str,
    reply_to: Option<&'a str>,
    callback_data: Option<&'a str>,
) -> Outbound<'a> {
    Outbound {
        messaging_product: "whatsapp",
        recipient_type: "individual",
        to: (!parley_domain::is_bsuid_address(to)).then_some(to),
        recipient: parley_domain::is_bsuid_address(to).then_some(to),
        kind,
        context: reply_to.map(|message_id| Context { message_id }),
        biz_opaque_callback_data: callback_data,
        text: None,
        template: None,
        image: None,
        video: None,
        audio: None,
        document: None,
        sticker: None,
        reaction: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_domain::{RenderedButton, RenderedParam};

    #[test]
    fn a_bsuid_goes_as_recipient_and_a_phone_as_to() {
        let by_bsuid = text_message_body("US.13491208655302741918", "hi", false, None, None);
        assert_eq!(
            by_bsuid,
            json!({"messaging_product":"whatsapp","recipient_type":"individual",
                "recipient":"US.13491208655302741918","type":"text","text":{"body":"hi","preview_url":false}})
        );
        let by_phone = text_message_body("+4915112345678", "hi", false, None, None);
        assert_eq!(by_phone["to"], "+4915112345678");
        assert!(by_phone.get("recipient").is_none());
    }

    #[test]
    fn a_marketing_messages_body_adds_the_policy_and_the_template_ttl() {
        let t = RenderedTemplate {
            name: "spring_sale".into(),
            language: "en".into(),
            header: None,
            body: vec![],
            buttons: vec![],
        };
        let by_bsuid = template_message("US.13491208655302741918", &t, None, Some("msg_1"));
        let v = marketing_message_body(&by_bsuid, Some(86_400));
        assert_eq!(
            v,
            json!({"messaging_product":"whatsapp","recipient_type":"individual",
                "recipient":"US.13491208655302741918","type":"template",
                "biz_opaque_callback_data":"msg_1",
                "template":{"name":"spring_sale","language":{"code":"en"},"message_send_ttl_seconds":86400},
                "product_policy":"CLOUD_API_FALLBACK"})
        );
        let by_phone = template_message("+4915112345678", &t, None, None);
        let v = marketing_message_body(&by_phone, None);
        assert_eq!(v["to"], "+4915112345678");
        assert!(v["template"].get("message_send_ttl_seconds").is_none());
    }

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
    fn named_text_header_location_and_every_button_kind_match_meta_shape() {
        let named = |name: &str, text: &str| RenderedParam {
            parameter_name: Some(name.into()),
            text: text.into(),
        };
        let mut t = RenderedTemplate {
            name: "order".into(),
            language: "de".into(),
            header: Some(RenderedHeader::Text {
                text: "Anna".into(),
                parameter_name: Some("first_name".into()),
            }),
            body: vec![named("order_id", "A-1")],
            buttons: vec![
                RenderedButton {
                    index: 0,
                    sub_type: ButtonSubType::CopyCode,
                    text: "SAVE20".into(),
                },
                RenderedButton {
                    index: 1,
                    sub_type: ButtonSubType::QuickReply,
                    text: "stop".into(),
                },
            ],
        };
        let v = template_message_body("+4915112345678", &t, Some("wamid.Q"), None);
        assert_eq!(
            v,
            json!({
                "messaging_product": "whatsapp", "recipient_type": "individual",
                "to": "+4915112345678", "type": "template",
                "context": {"message_id": "wamid.Q"},
                "template": {"name": "order", "language": {"code": "de"}, "components": [
                    {"type": "header", "parameters": [{"type": "text", "parameter_name": "first_name", "text": "Anna"}]},
                    {"type": "body", "parameters": [{"type": "text", "parameter_name": "order_id", "text": "A-1"}]},
                    {"type": "button", "sub_type": "copy_code", "index": "0", "parameters": [{"type": "coupon_code", "coupon_code": "SAVE20"}]},
                    {"type": "button", "sub_type": "quick_reply", "index": "1", "parameters": [{"type": "payload", "payload": "stop"}]}
                ]}
            })
        );
        t.header = Some(RenderedHeader::Location {
            latitude: 52.5219,
            longitude: 13.4132,
            name: Some("Parley Shop".into()),
            address: None,
        });
        t.body.clear();
        t.buttons.clear();
        let v = template_message_body("+4915112345678", &t, None, None);
        assert_eq!(
            v["template"],
            json!({"name": "order", "language": {"code": "de"}, "components": [
                {"type": "header", "parameters": [{"type": "location", "location":
                    {"latitude": 52.5219, "longitude": 13.4132, "name": "Parley Shop"}}]}
            ]})
        );
        t.header = Some(RenderedHeader::Media {
            kind: HeaderFormat::Video,
            link: None,
            id: Some("4490".into()),
        });
        let v = template_message_body("+4915112345678", &t, None, None);
        assert_eq!(
            v["template"]["components"][0]["parameters"][0],
            json!({"type": "video", "video": {"id": "4490"}})
        );
        // No parameters at all: no `components`.
        t.header = None;
        let v = template_message_body("+4915112345678", &t, None, None);
        assert!(v["template"].get("components").is_none());
    }

    #[test]
    fn text_body_with_reply_context() {
        let v = text_message_body("+4915112345678", "hello", false, Some("wamid.X"), None);
        assert_eq!(v["context"]["message_id"], "wamid.X");
        assert_eq!(v["text"]["body"], "hello");
        assert!(v.get("biz_opaque_callback_data").is_none());
    }
}
